"""ONNX export with a dynamic batch: onnxruntime's outputs equal PyTorch's (skipped without the extra).

The ``.onnx`` file must be enough on its own: the tests that feed it raw pixels normalise them with
:func:`normalise_as_the_metadata_says`, which reads nothing but the file's metadata (as an ONNX user would).
"""

from __future__ import annotations

import base64
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


def normalise_as_the_metadata_says(meta: dict[str, str], crops: np.ndarray, top: int, left: int) -> np.ndarray:
    """What docs/WEIGHTS.md tells an ONNX user to do, from the file's metadata only: uint8 (N, C, C, 3) crops
    taken at (top, left) of the resize x resize square -> the graph's float32 (N, 3, C, C) ``image``."""
    pre = json.loads(meta["alexnet.preprocess"])
    c = pre["crop_size"]
    x = crops.astype(np.float32).transpose(0, 3, 1, 2)
    if pre["mean"] == "image":
        m = json.loads(meta["alexnet.mean_image"])
        mean = np.frombuffer(base64.b64decode(m["data"]), "<f4").reshape(m["shape"])  # (S, S, 3)
        x = x - mean[top:top + c, left:left + c].transpose(2, 0, 1)
    else:
        x = x - np.asarray(pre["mean_rgb"], np.float32)[:, None, None]
    if pre["std_rgb"] is not None:
        x = x / np.asarray(pre["std_rgb"], np.float32)[:, None, None]
    return x


def small_weights(path, mean: str, rng: np.random.Generator):
    """cifar_4layer weights for 36x36 squares and 32x32 crops, trained (so to speak) with the paper's
    per-pixel mean image (``mean="image"``) or with a per-channel mean and std (torchvision's way)."""
    torch.manual_seed(0)
    model = alexnet.create_model("cifar_4layer").eval()
    classes = [{"index": i, "wnid": None, "name": f"c{i}"} for i in range(10)]
    if mean == "image":
        # Far from constant, so that a crop of the mean at the wrong place changes the logits.
        mean_image = rng.uniform(0, 255, (36, 36, 3)).astype(np.float32)
        pre = {"resize": 36, "crop_size": 32, "mean_rgb": mean_image.reshape(-1, 3).mean(0).tolist(),
               "std_rgb": None, "mean": "image", "warp": False}
        return save_weights(path, model, classes=classes, preprocess=pre, mean_image=mean_image)
    pre = {"resize": 36, "crop_size": 32, "mean_rgb": [120.0, 110.5, 100.25], "std_rgb": [60.0, 55.0, 50.0],
           "mean": "channel", "warp": False}
    return save_weights(path, model, classes=classes, preprocess=pre)


@pytest.mark.parametrize("mean", ["image", "channel"])
def test_the_onnx_file_alone_reproduces_pytorch_from_raw_pixels(tmp_path, capsys, mean):
    rng = np.random.default_rng(0)
    weights = small_weights(tmp_path / "w.safetensors", mean, rng)
    out = tmp_path / "m.onnx"
    assert main(["export", "--weights", str(weights), "--out", str(out)]) == 0
    assert ("mean image (in its metadata)" in capsys.readouterr().err) == (mean == "image")
    model = alexnet.load(weights)  # only for the expected logits: PyTorch's own preprocessing (predict's)
    pre = model.meta.preprocess
    assert pre.uses_mean_image == (mean == "image")

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert ("alexnet.mean_image" in meta) == (mean == "image")
    if mean == "image":
        stored = json.loads(meta["alexnet.mean_image"])
        assert stored["center_crop"] == {"top": 2, "left": 2, "size": 32}
        decoded = np.frombuffer(base64.b64decode(stored["data"]), "<f4").reshape(stored["shape"])
        assert np.array_equal(decoded, pre.mean_image)  # bit for bit
        assert "mean_image[2:34, 2:34]" in meta["alexnet.input"]
    else:
        assert "mean_rgb [120.0, 110.5, 100.25]" in meta["alexnet.input"]
        assert "std_rgb [60.0, 55.0, 50.0]" in meta["alexnet.input"]

    squares = rng.integers(0, 256, (3, 36, 36, 3), dtype=np.uint8)  # what resize + central square give
    with torch.no_grad():
        ten = pre.crops(torch.from_numpy(squares), ten_crop=True)  # (3, 10, 3, 32, 32)
        expected = {k: model(ten[:, k]).numpy() for k in (0, 3, 4)}  # top-left, bottom-right, centre
    # The centre crop (the one alexnet.input describes), and two of the paper's corner crops: each
    # subtracts the mean image under it, which only a file holding the whole mean image allows.
    for k, (top, left) in ((4, (2, 2)), (0, (0, 0)), (3, (4, 4))):
        crops = squares[:, top:top + 32, left:left + 32]
        (got,) = session.run(None, {"image": normalise_as_the_metadata_says(meta, crops, top, left)})
        assert np.allclose(got, expected[k], rtol=1e-4, atol=1e-4 * np.abs(expected[k]).max()), (k, top, left)
    if mean == "image":  # and the check can fail: the centre's mean under a corner crop is wrong
        crops = squares[:, :32, :32]
        (wrong,) = session.run(None, {"image": normalise_as_the_metadata_says(meta, crops, 2, 2)})
        assert not np.allclose(wrong, expected[0], rtol=1e-4, atol=1e-4 * np.abs(expected[0]).max())


def test_a_mean_image_of_the_wrong_size_is_refused_before_exporting(tmp_path):
    from alexnet.errors import UserError
    from alexnet.weights.onnx import export_onnx
    from alexnet.weights.preprocess import Preprocess

    model = alexnet.create_model("cifar_4layer").eval()
    # A hand-built Preprocess: squares of 36, but a 40x40 mean image, which the file could not describe.
    model.meta.preprocess = Preprocess(resize=36, crop_size=32, mean_image=np.zeros((40, 40, 3), np.float32))
    out = tmp_path / "m.onnx"
    with pytest.raises(UserError, match="mean image must be 36x36x3"):
        export_onnx(model, out)
    assert list(tmp_path.iterdir()) == []


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
    mean_image = np.random.default_rng(0).uniform(0, 255, (256, 256, 3)).astype(np.float32)
    weights = save_weights(tmp_path / "w.safetensors", model,
                           classes=[{"index": i, "wnid": None, "name": f"c{i}"} for i in range(1000)],
                           preprocess={"resize": 256, "crop_size": 224, "mean": "image"}, mean_image=mean_image)
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
    # The paper's 256x256 mean image travels in the file (1 MiB of metadata, read through onnxruntime),
    # and its centre 224x224 crop is the one subtracted from the centre crop.
    square = np.random.default_rng(1).integers(0, 256, (1, 256, 256, 3), dtype=np.uint8)
    x = normalise_as_the_metadata_says(session.get_modelmeta().custom_metadata_map, square[:, 16:240, 16:240],
                                       16, 16)
    with torch.no_grad():
        expected = model(alexnet.load(weights).meta.preprocess.crops(torch.from_numpy(square))).numpy()
    (got,) = session.run(None, {"image": x})
    assert np.allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


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
