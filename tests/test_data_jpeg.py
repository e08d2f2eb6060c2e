"""JPEG decoding: TorchCodec where it works, torchvision.io as the fallback; both give the same pixels."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet.data import Loader, PreparedDataset, jpeg, prepare_dataset
from alexnet.errors import BadOptionError, UserError

# the fallback is tested here on purpose: torchvision's "deprecated, use TorchCodec" is expected
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")

HAS_TORCHCODEC = jpeg._works("torchcodec", torch.device("cpu"))
needs_torchcodec = pytest.mark.skipif(not HAS_TORCHCODEC, reason="TorchCodec is not installed (or does not work)")


@pytest.fixture(autouse=True)
def automatic_choice(monkeypatch):
    monkeypatch.delenv("ALEXNET_JPEG_DECODER", raising=False)
    jpeg.use(None)
    yield
    jpeg.use(None)


@pytest.fixture(scope="module")
def prepared(shared_data, tmp_path_factory):
    """12 real ImageNet photos prepared as 256x256 JPEGs (quality 90)."""
    root = tmp_path_factory.mktemp("jpeg")
    with tarfile.open(shared_data / "imagenet-samples.tar.gz") as tf:
        for m in [m for m in tf if m.isreg()][:12]:
            p = root / "src" / m.name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(tf.extractfile(m).read())
    src = next((root / "src").iterdir())
    return PreparedDataset(prepare_dataset(src, root / "ds", format="jpeg", workers=1, progress=False).path)


def test_the_choice_is_torchcodec_where_it_works_else_torchvision():
    assert jpeg.decoder("cpu") == ("torchcodec" if HAS_TORCHCODEC else "torchvision")


def test_a_torchcodec_that_fails_falls_back(monkeypatch):
    def broken(data, device):
        raise OSError("libtorchcodec_core9.so: undefined symbol")  # e.g. built for another torch

    monkeypatch.setitem(jpeg._IMPL, "torchcodec", broken)
    jpeg.use(None)
    assert jpeg.decoder("cpu") == "torchvision"
    img = jpeg.decode_rgb(jpeg._probe_jpeg())
    assert img.shape == (3, 8, 16) and img.dtype == torch.uint8


def test_the_decoder_can_be_forced(monkeypatch):
    monkeypatch.setenv("ALEXNET_JPEG_DECODER", "torchvision")
    jpeg.use(None)
    assert jpeg.decoder() == "torchvision"
    monkeypatch.setenv("ALEXNET_JPEG_DECODER", "libjpeg")
    jpeg.use(None)
    with pytest.raises(BadOptionError, match="ALEXNET_JPEG_DECODER must be one of torchcodec, torchvision"):
        jpeg.decoder()
    with pytest.raises(BadOptionError, match="must be one of"):
        jpeg.use("pillow")


@needs_torchcodec
def test_both_decoders_give_the_same_pixels(prepared):
    data = [prepared.jpeg(i) for i in range(len(prepared))]
    out = {}
    for name in jpeg.DECODERS:
        jpeg.use(name)
        assert jpeg.decoder() == name
        out[name] = jpeg.decode_rgb(data)
    for a, b in zip(out["torchcodec"], out["torchvision"], strict=True):
        assert a.shape == (3, 256, 256) and torch.equal(a, b)
    # and what Pillow decodes from the same bytes (the reference the rest of the project uses)
    pil = np.asarray(Image.open(io.BytesIO(data[0].numpy().tobytes())).convert("RGB"))
    assert np.abs(pil.astype(int) - out["torchcodec"][0].permute(1, 2, 0).numpy().astype(int)).max() <= 2


@pytest.mark.parametrize("name", jpeg.DECODERS)
def test_the_loader_gives_the_same_batches_with_either_decoder(prepared, name):
    if name == "torchcodec" and not HAS_TORCHCODEC:
        pytest.skip("TorchCodec is not installed (or does not work)")
    jpeg.use(name)
    batches = [(x.clone(), y) for x, y in Loader(prepared, 4, train=False, crop_size=224, workers=2)]
    jpeg.use("torchvision")
    ref = [(x.clone(), y) for x, y in Loader(prepared, 4, train=False, crop_size=224, workers=2)]
    for (a, ya), (b, yb) in zip(batches, ref, strict=True):
        assert torch.equal(a, b) and torch.equal(ya, yb)


@pytest.mark.parametrize("name", jpeg.DECODERS)
def test_a_damaged_jpeg_is_one_line_with_either_decoder(prepared, name):
    if name == "torchcodec" and not HAS_TORCHCODEC:
        pytest.skip("TorchCodec is not installed (or does not work)")
    jpeg.use(name)
    good = prepared.jpeg(0).clone()
    cut = good.clone()
    cut[len(cut) // 2:] = 0
    with pytest.raises(RuntimeError):
        jpeg.decode_rgb(torch.zeros(100, dtype=torch.uint8))
    loader = Loader(prepared, 4, train=False, crop_size=224, workers=1)
    loader.dataset = type("Damaged", (), {"jpeg": lambda self, i: cut, "path": "ds"})()
    with pytest.raises(UserError, match=r"ds: image 0 is damaged") as e:
        loader._decode([0])
    assert "\n" not in str(e.value)


def test_a_bad_decoder_setting_stops_train_before_it_writes(prepared, tmp_path, monkeypatch, capsys):
    """ALEXNET_JPEG_DECODER is checked before the run directory is made: one line, exit 2, nothing left."""
    from alexnet.cli.main import main

    monkeypatch.setenv("ALEXNET_JPEG_DECODER", "libjpeg")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    code = main(["train", "--data", str(prepared.path), "--out", str(tmp_path / "run"), "--arch", "cifar_4layer",
                 "--crop-size", "32", "--epochs", "1", "--batch-size", "4", "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "ALEXNET_JPEG_DECODER must be one of" in err[0], err
    assert not (tmp_path / "run").exists()
