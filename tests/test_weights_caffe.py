"""Caffe .caffemodel conversion, checked against a forward pass computed here from the same blobs.

The Caffe file is written in this test with a hand-written protobuf encoder (NetParameter with the real
layer names and blob shapes of bvlc_alexnet / CaffeNet); the reference forward pass below uses Caffe's
semantics directly (BGR input, grouped convs as explicit halves, Caffe's LRN formula, ceil pooling) and
shares no code with the package.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import alexnet
from alexnet.cli.main import main
from alexnet.errors import UserError
from alexnet.weights import protobuf as pb
from alexnet.weights.caffe import read_caffemodel, read_mean_binaryproto

# --- a minimal protobuf writer (independent of the package's reader) ---------------------------------


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def tag(field: int, wire: int) -> bytes:
    return varint(field << 3 | wire)


def ld(field: int, payload: bytes) -> bytes:
    return tag(field, 2) + varint(len(payload)) + payload


def blob_proto(a: np.ndarray, legacy: bool = False) -> bytes:
    a = np.asarray(a, dtype="<f4")
    if legacy:  # num/channels/height/width, 4-D padded with leading 1s as old Caffe wrote them
        dims = (1,) * (4 - a.ndim) + a.shape
        head = b"".join(tag(f, 0) + varint(d) for f, d in zip((1, 2, 3, 4), dims, strict=True))
    else:
        head = ld(7, ld(1, b"".join(varint(d) for d in a.shape)))
    return head + ld(5, a.tobytes())


def layer(name: str, kind: str, blobs=(), v1: bool = False, legacy: bool = False) -> bytes:
    if v1:
        v1_types = {"Convolution": 4, "InnerProduct": 14, "ReLU": 18, "LRN": 15, "Pooling": 17,
                    "Dropout": 6, "Data": 5, "Softmax": 20}
        body = ld(4, name.encode()) + tag(5, 0) + varint(v1_types[kind])
        body += b"".join(ld(6, blob_proto(b, legacy)) for b in blobs)
        return ld(2, body)
    body = ld(1, name.encode()) + ld(2, kind.encode()) + b"".join(ld(7, blob_proto(b, legacy)) for b in blobs)
    return ld(100, body)


SHAPES = {"conv1": (96, 3, 11, 11), "conv2": (256, 48, 5, 5), "conv3": (384, 256, 3, 3),
          "conv4": (384, 192, 3, 3), "conv5": (256, 192, 3, 3), "fc6": (4096, 9216), "fc7": (4096, 4096),
          "fc8": (1000, 4096)}


def make_blobs(seed: int, num_classes: int = 1000) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    blobs = {}
    for name, shape in SHAPES.items():
        if name == "fc8":
            shape = (num_classes, 4096)
        fan_in = int(np.prod(shape[1:]))
        w = ((rng.random(shape, dtype=np.float32) - 0.5) * (2 * np.sqrt(3.0 / fan_in))).astype(np.float32)
        b = (rng.random(shape[0], dtype=np.float32) * 0.2).astype(np.float32)
        blobs[name] = [w, b]
    return blobs


def net_bytes(blobs, *, caffenet: bool, v1: bool = False, legacy: bool = False, name: str | None = None) -> bytes:
    order = ["data", "conv1", "relu1", "pool1", "norm1"] if caffenet else ["data", "conv1", "relu1", "norm1", "pool1"]
    order += ["conv2", "relu2"] + (["pool2", "norm2"] if caffenet else ["norm2", "pool2"])
    order += ["conv3", "relu3", "conv4", "relu4", "conv5", "relu5", "pool5", "fc6", "relu6", "drop6",
              "fc7", "relu7", "drop7", "fc8", "prob"]
    kinds = {"data": "Data", "relu": "ReLU", "norm": "LRN", "pool": "Pooling", "drop": "Dropout", "conv": "Convolution",
             "fc": "InnerProduct", "prob": "Softmax"}
    parts = [ld(1, (name or ("CaffeNet" if caffenet else "AlexNet")).encode())]
    for n in order:
        kind = next(v for k, v in kinds.items() if n.startswith(k))
        parts.append(layer(n, kind, blobs.get(n, ()), v1=v1, legacy=legacy))
    return b"".join(parts)


# --- Caffe's forward pass, written from Caffe's definitions -----------------------------------------


def caffe_lrn(x: torch.Tensor) -> torch.Tensor:
    # Caffe LRN ACROSS_CHANNELS: scale = k + alpha/n * sum over the n-window of x^2; k=1, n=5, alpha=1e-4
    sq = F.pad(x * x, (0, 0, 0, 0, 2, 2))  # pad the channel dimension by 2 on each side
    s = sum(sq[:, i:i + x.shape[1]] for i in range(5))
    return x / (1.0 + 1e-4 / 5 * s) ** 0.75


def caffe_conv(x, w, b, stride=1, pad=0, group=1):
    w, b = torch.from_numpy(w).double(), torch.from_numpy(b).double()
    xs, ws, bs = x.chunk(group, 1), w.chunk(group, 0), b.chunk(group, 0)
    return torch.cat([F.conv2d(xi, wi, bi, stride=stride, padding=pad) for xi, wi, bi in zip(xs, ws, bs, strict=True)], 1)


def caffe_forward(blobs, x_bgr: torch.Tensor, caffenet: bool) -> torch.Tensor:
    def pool(t):
        return F.max_pool2d(t, 3, 2, ceil_mode=True)  # Caffe rounds pooled sizes up

    def block(t):
        return caffe_lrn(pool(t)) if caffenet else pool(caffe_lrn(t))

    x = x_bgr.double()
    x = block(F.relu(caffe_conv(x, *blobs["conv1"], stride=4)))  # (B, 96, 27, 27)
    x = block(F.relu(caffe_conv(x, *blobs["conv2"], pad=2, group=2)))  # (B, 256, 13, 13)
    x = F.relu(caffe_conv(x, *blobs["conv3"], pad=1))
    x = F.relu(caffe_conv(x, *blobs["conv4"], pad=1, group=2))
    x = pool(F.relu(caffe_conv(x, *blobs["conv5"], pad=1, group=2)))  # (B, 256, 6, 6)
    x = x.flatten(1)
    for name in ("fc6", "fc7"):
        w, b = (torch.from_numpy(a).double() for a in blobs[name])
        x = F.relu(x @ w.T + b)
    w, b = (torch.from_numpy(a).double() for a in blobs["fc8"])
    return x @ w.T + b


def caffe_input(path, mean_bgr: np.ndarray) -> torch.Tensor:
    """Caffe's test-time input: warp to 256x256, centre 227 crop, BGR, minus the mean under the crop."""
    img = np.asarray(Image.open(path).convert("RGB").resize((256, 256), Image.BILINEAR), dtype=np.float64)
    bgr = img[:, :, ::-1] - mean_bgr  # mean_bgr: (3,) or (256, 256, 3)
    crop = bgr[14:241, 14:241]
    return torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1)))[None]


@pytest.fixture(scope="session")
def sample_images(shared_data, tmp_path_factory):
    """Two real ImageNet photos (small enough that JPEG draft decoding is not used)."""
    import tarfile

    out = tmp_path_factory.mktemp("caffe_imgs")
    names = []
    with tarfile.open(shared_data / "imagenet-samples.tar.gz") as tar:
        for m in tar.getmembers():
            if m.isfile() and m.name.endswith(".JPEG"):
                f = tar.extractfile(m)
                p = out / m.name.rsplit("/", 1)[-1]
                p.write_bytes(f.read())
                with Image.open(p) as im:
                    if min(im.size) < 500 and im.mode == "RGB":
                        names.append(p)
            if len(names) == 2:
                break
    return names


@pytest.fixture(scope="session")
def alexnet_caffemodel(tmp_path_factory):
    blobs = make_blobs(0)
    path = tmp_path_factory.mktemp("caffe") / "bvlc_alexnet.caffemodel"
    path.write_bytes(net_bytes(blobs, caffenet=False))
    return path, blobs


def test_protobuf_reader_handles_packed_unpacked_and_negative():
    msg = tag(1, 0) + varint(300) + tag(2, 5) + struct.pack("<f", 1.5) + tag(2, 5) + struct.pack("<f", -2.0)
    msg += ld(3, b"".join(varint(v) for v in (5, -1))) + ld(4, struct.pack("<3f", 1, 2, 3))
    f = pb.fields(msg)
    assert f[1][0][1] == 300
    assert pb.as_floats(f[2]).tolist() == [1.5, -2.0]
    assert pb.as_varints(f[3]) == [5, -1]
    assert pb.as_floats(f[4]).tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(pb.WireError):
        pb.fields(tag(1, 2) + varint(10) + b"abc")  # length past the end


def test_caffemodel_converts_and_matches_independent_forward(alexnet_caffemodel, sample_images):
    path, blobs = alexnet_caffemodel
    net = read_caffemodel(path)
    assert net.name == "AlexNet" and [x.name for x in net.layers if x.blobs] == list(SHAPES)
    model = alexnet.load(path)
    assert model.meta.arch == "alexnet_caffe"
    assert model.num_classes == 1000 and model.meta.classes[0]["wnid"] == "n01440764"
    pre = model.meta.preprocess
    assert (pre.crop_size, pre.resize, pre.warp, pre.std_rgb) == (227, 256, True, None)
    assert pre.mean_rgb == (123.0, 117.0, 104.0)  # Caffe's [104, 117, 123] BGR, as RGB
    x = torch.stack([pre(p) for p in sample_images])  # our RGB preprocessing
    ref_in = torch.cat([caffe_input(p, np.array([104.0, 117.0, 123.0])) for p in sample_images])
    # same pixels, channels reversed: conv1 was converted to read RGB
    assert torch.allclose(x.flip(1).double(), ref_in, atol=1e-3)
    with torch.no_grad():
        ours = model(x).double()
    ref = caffe_forward(blobs, ref_in, caffenet=False)
    assert ref.abs().max() > 1.0  # the check below is not vacuous
    assert torch.allclose(ours, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


def test_caffenet_v1_legacy_shapes_and_mean_file(tmp_path, sample_images):
    blobs = make_blobs(1, num_classes=10)
    path = tmp_path / "caffenet.caffemodel"
    path.write_bytes(net_bytes(blobs, caffenet=True, v1=True, legacy=True, name="CaffeNet"))
    rng = np.random.default_rng(2)
    mean_bgr = (rng.random((256, 256, 3)) * 40 + np.array([100.0, 115.0, 120.0])).astype(np.float32)
    mean_path = tmp_path / "mean.binaryproto"
    mean_path.write_bytes(blob_proto(mean_bgr.transpose(2, 0, 1)[None], legacy=True))
    assert np.allclose(read_mean_binaryproto(mean_path), mean_bgr[:, :, ::-1])
    model = alexnet.load(path, mean=mean_path)
    assert model.meta.arch == "caffenet" and model.num_classes == 10
    assert model.meta.preprocess.uses_mean_image
    x = torch.stack([model.meta.preprocess(p) for p in sample_images])
    ref_in = torch.cat([caffe_input(p, mean_bgr.astype(np.float64)) for p in sample_images])
    assert torch.allclose(x.flip(1).double(), ref_in, atol=1e-3)
    with torch.no_grad():
        ours = model(x).double()
    ref = caffe_forward(blobs, ref_in, caffenet=True)
    assert torch.allclose(ours, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


def test_convert_cli_writes_our_weights(alexnet_caffemodel, tmp_path, capsys):
    path, blobs = alexnet_caffemodel
    out = tmp_path / "w.safetensors"
    assert main(["convert", str(path), "--out", str(out)]) == 0
    wf = alexnet.weights.read_weights(out)
    assert wf.arch == "alexnet_caffe" and wf.preprocess["crop_size"] == 227 and wf.preprocess["warp"] is True
    # conv1 reversed to RGB; conv2 copied in its grouped layout
    assert np.array_equal(wf.state_dict["features.conv1.weight"].numpy(), blobs["conv1"][0][:, ::-1])
    assert np.array_equal(wf.state_dict["features.conv2.weight"].numpy(), blobs["conv2"][0])
    assert np.array_equal(wf.state_dict["fc.fc6.weight"].numpy(), blobs["fc6"][0])
    assert len(wf.classes) == 1000


def test_ungrouped_conv2_blob_is_a_clear_error(tmp_path):
    blobs = {"conv1": [np.zeros((96, 3, 11, 11), np.float32), np.zeros(96, np.float32)],
             "conv2": [np.zeros((256, 96, 5, 5), np.float32), np.zeros(256, np.float32)]}
    path = tmp_path / "bad.caffemodel"
    path.write_bytes(ld(1, b"AlexNet") + layer("conv1", "Convolution", blobs["conv1"])
                     + layer("conv2", "Convolution", blobs["conv2"]))
    with pytest.raises(UserError, match="conv2 weight .*grouped"):
        alexnet.load(path)


def test_not_a_caffemodel(tmp_path, capsys):
    path = tmp_path / "x.caffemodel"
    path.write_bytes(b"\xff\xff\xff garbage")
    assert main(["convert", str(path), "--out", str(tmp_path / "o.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "not a Caffe model" in err and len(err.strip().splitlines()) == 1
