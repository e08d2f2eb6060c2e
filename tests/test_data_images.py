"""One image path and one crop rule: ``prepare`` and ``predict`` give the same pixels for the same file
(EXIF-rotated, RGBA, 16-bit, CMYK, palette, grayscale), and the Loader and ``Preprocess`` the same crops
in the same order."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet.data import ArrayDataset, Loader, PreparedDataset, prepare_dataset
from alexnet.data.crops import center_offset, ten_crop_offsets
from alexnet.data.images import open_rgb, preprocess, square
from alexnet.experiments.images import _decode as experiment_decode
from alexnet.weights.preprocess import Preprocess, load_image

SIZE = 64


@pytest.fixture(scope="module")
def photo(shared_data) -> Image.Image:
    with tarfile.open(shared_data / "imagenet-samples.tar.gz") as tf:
        m = next(m for m in tf if m.isreg() and m.name.endswith(".JPEG"))
        return Image.open(io.BytesIO(tf.extractfile(m).read())).convert("RGB")


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def awkward(photo, tmp_path_factory) -> dict[str, bytes]:
    """The same photo in the forms that the readers used to treat differently."""
    w, h = photo.size
    rgba = photo.convert("RGBA")
    alpha = np.full((h, w), 255, np.uint8)
    alpha[:, : w // 2] = 0  # left half transparent: white after compositing
    rgba.putalpha(Image.fromarray(alpha))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    gray16 = Image.fromarray((np.asarray(photo.convert("L"), np.uint16) * 257).astype(np.uint16))
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    palette.info["transparency"] = 0
    return {
        "plain.jpg": _save(photo, "JPEG", quality=95),
        "rotated.jpg": _save(photo, "JPEG", quality=95, exif=exif),
        "rgba.png": _save(rgba, "PNG"),
        "gray16.png": _save(gray16, "PNG"),
        "cmyk.jpg": _save(photo.convert("CMYK"), "JPEG", quality=95),
        "palette.png": _save(palette, "PNG", transparency=0),
        "gray.jpg": _save(photo.convert("L"), "JPEG", quality=95),
    }


def test_prepare_predict_and_experiments_give_the_same_pixels(awkward, tmp_path):
    src = tmp_path / "src" / "things"
    src.mkdir(parents=True)
    for name, data in awkward.items():
        (src / name).write_bytes(data)
    ds = PreparedDataset(prepare_dataset(tmp_path / "src", tmp_path / "ds", format="raw", size=SIZE,
                                         workers=1, progress=False).path)
    stored = {ds.path_of(i).rsplit("/", 1)[-1]: ds.get_uint8(i) for i in range(len(ds))}
    assert sorted(stored) == sorted(awkward)
    pre = Preprocess(resize=SIZE, crop_size=SIZE - 8)
    for name in awkward:
        predicted = pre.square(src / name)
        assert np.array_equal(predicted, stored[name]), name
        assert np.array_equal(experiment_decode(awkward[name], SIZE, name), stored[name]), name
        assert np.array_equal(preprocess(awkward[name], SIZE), stored[name]), name


def test_the_rules(awkward, photo):
    plain = open_rgb(awkward["plain.jpg"])
    rotated = open_rgb(awkward["rotated.jpg"])
    assert rotated.size == plain.size[::-1]  # EXIF orientation applied: upright
    assert np.abs(np.asarray(rotated, int) - np.asarray(plain.transpose(Image.Transpose.ROTATE_270), int)).max() <= 2
    rgba = np.asarray(open_rgb(awkward["rgba.png"]))
    assert (rgba[:, : photo.size[0] // 2] == 255).all()  # transparent: composited on white
    assert np.array_equal(rgba[:, photo.size[0] // 2:], np.asarray(photo)[:, photo.size[0] // 2:])
    gray16 = np.asarray(open_rgb(awkward["gray16.png"]))
    assert np.array_equal(gray16[..., 0], np.asarray(photo.convert("L")))  # 16 bits scaled, not clipped
    assert np.array_equal(gray16[..., 0], gray16[..., 2])
    cmyk = np.asarray(open_rgb(awkward["cmyk.jpg"]), int)
    assert np.abs(cmyk - np.asarray(plain, int)).mean() < 6  # converted to RGB, not read as garbage


def test_square_is_torchvisions_resize_and_center_crop(photo):
    from torchvision.transforms import v2

    for size in (SIZE, 227, 256):
        expected = np.asarray(v2.CenterCrop(size)(v2.Resize(size, antialias=True)(photo)))
        assert np.array_equal(square(photo, size), expected), size


def test_load_image_accepts_arrays_and_pil_images(photo):
    arr = np.asarray(photo)
    assert np.array_equal(np.asarray(load_image(arr)), arr)
    assert np.array_equal(np.asarray(load_image(photo)), arr)


@pytest.mark.parametrize("size,crop", [(256, 224), (256, 227), (256, 225), (24, 16)])
def test_the_loader_and_preprocess_crop_the_same_patches_in_the_same_order(size, crop):
    assert center_offset(size, crop) == int(round((size - crop) / 2))
    assert ten_crop_offsets(size, crop)[-1] == (center_offset(size, crop),) * 2  # corners first, as FiveCrop
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, size, size, 3), dtype=np.uint8)

    ds = ArrayDataset(images, [0, 1, 2])
    pre = Preprocess(resize=size, crop_size=crop, mean_image=ds.mean_image)
    for ten in (False, True):
        (x, _), = list(Loader(ds, 3, train=False, crop_size=crop, ten_crop=ten, workers=1))
        expected = pre.crops(torch.from_numpy(images), ten_crop=ten)
        assert x.shape == expected.shape and torch.allclose(x, expected, atol=1e-4), (ten, size, crop)


def test_warped_squares_are_the_same_in_prepare_and_predict(photo, tmp_path):
    """Caffe's squash (``--warp``): predict decodes a large JPEG at the same reduced scale as prepare. A
    257x256 JPEG squashed to 64 is the case where the shorter-side rule would decode it at full size."""
    src = tmp_path / "src" / "things"
    src.mkdir(parents=True)
    (src / "odd.jpg").write_bytes(_save(photo.resize((257, 256)), "JPEG", quality=95))
    ds = PreparedDataset(prepare_dataset(tmp_path / "src", tmp_path / "ds", format="raw", size=SIZE, warp=True,
                                         workers=1, progress=False).path)
    predicted = Preprocess(resize=SIZE, crop_size=SIZE - 8, warp=True).square(src / "odd.jpg")
    assert np.array_equal(predicted, ds.get_uint8(0))


def test_a_bad_pixel_limit_in_the_environment_is_one_line(monkeypatch, capsys):
    """ALEXNET_MAX_IMAGE_PIXELS=abc was ignored (the default kept), =-5 made every image 'too large'."""
    from alexnet.cli.main import main
    from alexnet.data.images import max_image_pixels

    for value in ("abc", "-5", "0", "1.5"):
        monkeypatch.setenv("ALEXNET_MAX_IMAGE_PIXELS", value)
        assert main(["models"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"ALEXNET_MAX_IMAGE_PIXELS must be a whole number of pixels >= 1, got {value!r}" \
            in err[0], err
    monkeypatch.setenv("ALEXNET_MAX_IMAGE_PIXELS", "1_000_000")
    assert max_image_pixels() == 1_000_000
