"""ONNX export with a dynamic batch: onnxruntime's outputs equal PyTorch's (skipped without the extra)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import alexnet
from alexnet.cli.main import main
from alexnet.weights import save_weights

ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install 'alexnet[onnx]'")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")


def test_export_small_model_dynamic_batch(tmp_path):
    from alexnet.weights.onnx import export_onnx

    torch.manual_seed(0)
    model = alexnet.create_model("cifar_4layer").eval()
    out = export_onnx(model, tmp_path / "c.onnx")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        x = torch.randn(batch, 3, 32, 32) * 50
        (got,) = session.run(None, {"image": x.numpy()})
        with torch.no_grad():
            assert np.allclose(got, model(x).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # ~10-20 s: exporting and running the 61M-parameter net
def test_export_cli_dynamic_batch_matches_pytorch(tmp_path, capsys):
    torch.manual_seed(0)
    model = alexnet.create_model("alexnet").eval()  # the paper's net: LRN, groups, ceil padding
    weights = save_weights(tmp_path / "w.safetensors", model,
                           classes=[{"index": i, "wnid": None, "name": f"c{i}"} for i in range(1000)])
    out = tmp_path / "m.onnx"
    assert main(["export", "--weights", str(weights), "--format", "onnx", "--out", str(out)]) == 0
    assert capsys.readouterr().out == ""  # the exporter's chatter stays out of stdout
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    assert inp.name == "image" and isinstance(inp.shape[0], str) and inp.shape[1:] == [3, 224, 224]
    for batch in (1, 3):  # neither is the batch size used while exporting (2)
        x = torch.randn(batch, 3, 224, 224) * 50
        (got,) = session.run(None, {"image": x.numpy()})
        with torch.no_grad():
            expected = model(x).numpy()
        assert got.shape == (batch, 1000)
        assert np.allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    meta = {p.key: p.value for p in onnx.load(str(out), load_external_data=False).metadata_props}
    assert meta["alexnet.arch"] == "alexnet"
    assert json.loads(meta["alexnet.preprocess"])["crop_size"] == 224
    assert json.loads(meta["alexnet.classes"])[3]["name"] == "c3"


def test_unsupported_opset_is_refused_and_nothing_is_written(tmp_path, capsys):
    torch.manual_seed(0)
    weights = save_weights(tmp_path / "w.safetensors", alexnet.create_model("cifar_4layer").eval(),
                           classes=[{"index": i, "wnid": None, "name": f"c{i}"} for i in range(10)])
    out = tmp_path / "m.onnx"
    assert main(["export", "--weights", str(weights), "--out", str(out), "--opset", "999"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--opset must be 18.." in err[0], err
    assert not out.exists()


def test_a_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    from alexnet.errors import UserError
    from alexnet.weights import onnx as ours
    from alexnet.weights.onnx import export_onnx

    def disk_full(proto, path):
        with open(path, "wb") as f:
            f.write(b"half a model")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ours, "_write_proto", disk_full)
    out = tmp_path / "c.onnx"
    with pytest.raises(UserError, match="No space left"):
        export_onnx(alexnet.create_model("cifar_4layer").eval(), out)
    assert list(tmp_path.iterdir()) == []  # neither the file asked for nor a temporary one
