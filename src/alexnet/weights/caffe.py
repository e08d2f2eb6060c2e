"""Caffe's AlexNets (``bvlc_alexnet``, ``bvlc_reference_caffenet``) read without Caffe installed.

A ``.caffemodel`` is a serialised ``caffe.NetParameter`` (caffe/src/caffe/proto/caffe.proto):

    NetParameter      name = 1, layers = 2 (V1LayerParameter, old files), layer = 100 (LayerParameter)
    LayerParameter    name = 1, type = 2 (string), blobs = 7
    V1LayerParameter  name = 4, type = 5 (enum), blobs = 6, layer = 1 (V0LayerParameter: name = 1, blobs = 50)
    BlobProto         num = 1, channels = 2, height = 3, width = 4 (legacy 4-D shape), data = 5 (packed
                      float), shape = 7 (BlobShape: dim = 1, packed int64), double_data = 8

What conversion to our ``alexnet_caffe`` / ``caffenet`` handles:
- Layer names conv1..conv5, fc6, fc7, fc8 are ours (``features.convN``, ``fc.fc6``/``fc.fc7``, ``fc8``).
- Grouped convolutions: Caffe stores conv2/4/5 (group: 2) as (out, in/groups, kh, kw), PyTorch's layout for
  ``groups=2`` too, so the blobs are copied after checking their shapes (256x48x5x5 etc.).
- Legacy 4-D shapes: fc weights come as (1, 1, out, in) and biases as (1, 1, 1, out); leading 1s go.
- BGR: Caffe's nets read images in OpenCV's BGR order. The input channels of conv1 are reversed so that
  the converted model takes RGB like every other model here; the mean is reversed with them.
- Mean: Caffe subtracts a 256x256 mean image (``imagenet_mean.binaryproto``, BGR) under each crop. Give it
  with ``mean=``; without it the per-channel ImageNet mean Caffe documents, [104, 117, 123] BGR, is used.
- Input: 227x227 crops of images *warped* (not shorter-side resized) to 256x256, pixels 0..255, no std.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from alexnet.errors import UserError
from alexnet.weights import protobuf as pb
from alexnet.weights.classes import default_classes
from alexnet.weights.file import WeightsFile

# Caffe's documented ImageNet mean (models/bvlc_alexnet, python/caffe/imagenet/ilsvrc_2012_mean.npy
# averaged): B, G, R in 0..255.
CAFFE_MEAN_BGR = (104.0, 117.0, 123.0)

_OUR_NAMES = {
    "conv1": "features.conv1", "conv2": "features.conv2", "conv3": "features.conv3",
    "conv4": "features.conv4", "conv5": "features.conv5", "fc6": "fc.fc6", "fc7": "fc.fc7", "fc8": "fc8",
}


@dataclass
class CaffeLayer:
    name: str
    type: str
    blobs: list[np.ndarray] = field(default_factory=list)


@dataclass
class CaffeNet:
    name: str
    layers: list[CaffeLayer]

    def layer(self, name: str) -> CaffeLayer | None:
        return next((layer for layer in self.layers if layer.name == name), None)


# V1LayerParameter.LayerType values of the layers an AlexNet has (the rest are reported by number).
_V1_TYPES = {4: "Convolution", 5: "Data", 6: "Dropout", 14: "InnerProduct", 15: "LRN", 17: "Pooling",
             18: "ReLU", 20: "Softmax", 21: "SoftmaxWithLoss", 1: "Accuracy", 12: "ImageData"}


def parse_blob(buf) -> np.ndarray:
    """A BlobProto as a float32 array of its shape (``shape`` if present, else num/channels/height/width)."""
    f = pb.fields(buf)
    data = pb.as_floats(f.get(5, []))
    if data.size == 0 and 8 in f:
        data = pb.as_doubles(f[8]).astype(np.float32)
    if 7 in f:
        shape = tuple(pb.as_varints(pb.fields(f[7][-1][1]).get(1, [])))
    elif any(k in f for k in (1, 2, 3, 4)):  # legacy num, channels, height, width
        shape = tuple(pb.as_varints(f[k])[-1] if k in f else 1 for k in (1, 2, 3, 4))
    else:
        shape = (data.size,)
    if int(np.prod(shape)) != data.size:
        raise pb.WireError(f"blob of shape {shape} holds {data.size} values")
    return data.reshape(shape)


def _parse_layer(buf, v1: bool) -> CaffeLayer:
    f = pb.fields(buf)
    if v1:
        if 1 in f and 4 not in f:  # V0LayerParameter nested in a V1 layer (Caffe's oldest files)
            v0 = pb.fields(f[1][-1][1])
            return CaffeLayer(pb.as_string(v0.get(1, [])) or "", pb.as_string(v0.get(2, [])) or "",
                              [parse_blob(b) for _, b in v0.get(50, [])])
        kind = f.get(5, [(0, 0)])[-1][1]
        return CaffeLayer(pb.as_string(f.get(4, [])) or "", _V1_TYPES.get(kind, f"V1 type {kind}"),
                          [parse_blob(b) for _, b in f.get(6, [])])
    return CaffeLayer(pb.as_string(f.get(1, [])) or "", pb.as_string(f.get(2, [])) or "",
                      [parse_blob(b) for _, b in f.get(7, [])])


def read_caffemodel(path: str | os.PathLike) -> CaffeNet:
    """Parse a ``.caffemodel`` (binary NetParameter); a file that is not one is a UserError."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        f = pb.fields(data)
        layers = [_parse_layer(v, v1=False) for _, v in f.get(100, [])]
        layers += [_parse_layer(v, v1=True) for _, v in f.get(2, [])]
        name = pb.as_string(f.get(1, [])) or ""
    except (pb.WireError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"{path}: not a Caffe model (NetParameter) file: {e}") from None
    if not any(layer.blobs for layer in layers):
        raise UserError(f"{path}: not a Caffe model with weights (no layer has blobs)")
    return CaffeNet(name, layers)


def read_mean_binaryproto(path: str | os.PathLike) -> np.ndarray:
    """Caffe's mean file (a BlobProto, 1x3xHxW, BGR) as an (H, W, 3) float32 RGB image."""
    path = Path(path)
    try:
        blob = parse_blob(path.read_bytes())
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    except (pb.WireError, ValueError) as e:
        raise UserError(f"{path}: not a Caffe mean file (BlobProto): {e}") from None
    blob = blob.reshape(blob.shape[-3:]) if blob.ndim >= 3 else blob
    if blob.ndim != 3 or blob.shape[0] != 3:
        raise UserError(f"{path}: expected a 3xHxW mean blob, got shape {blob.shape}")
    return np.ascontiguousarray(blob[::-1].transpose(1, 2, 0)).astype(np.float32)  # BGR CHW -> RGB HWC


def detect_arch(net: CaffeNet) -> str:
    """``caffenet`` when pooling comes before LRN (CaffeNet's order), else ``alexnet_caffe``."""
    names = [layer.name for layer in net.layers]
    if "caffenet" in net.name.lower():
        return "caffenet"
    if "pool1" in names and "norm1" in names and names.index("pool1") < names.index("norm1"):
        return "caffenet"
    return "alexnet_caffe"


def _fit(blob: np.ndarray, shape: torch.Size, what: str) -> torch.Tensor:
    b = blob
    while b.ndim > len(shape) and b.shape[0] == 1:  # legacy (1, 1, out, in) / (1, 1, 1, out)
        b = b.reshape(b.shape[1:])
    if tuple(b.shape) != tuple(shape):
        raise UserError(f"Caffe blob {what} has shape {tuple(blob.shape)}, expected {tuple(shape)}"
                        + (" (a grouped convolution with 2 groups)" if what.startswith(("conv2", "conv4", "conv5")) else ""))
    return torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32))


def caffe_to_weights(net: CaffeNet, *, arch: str | None = None, mean_image: np.ndarray | None = None,
                     classes: list[dict] | None = None, source: str = "") -> WeightsFile:
    """Our weights from a parsed Caffe AlexNet (see the module docstring for what is converted how)."""
    from alexnet.models import create_model

    arch = arch or detect_arch(net)
    if arch not in ("alexnet_caffe", "caffenet"):
        raise UserError(f"Caffe weights convert to alexnet_caffe or caffenet, not {arch!r}")
    fc8 = net.layer("fc8")
    if fc8 is None or not fc8.blobs:  # a fine-tuned net may rename its last layer: take the last with blobs
        fc8 = [layer for layer in net.layers if layer.blobs][-1]
    num_classes = int(fc8.blobs[-1].size)
    with torch.device("meta"):
        expected = create_model(arch, num_classes=num_classes).state_dict()
    state = {}
    for caffe_name, ours in _OUR_NAMES.items():
        layer = fc8 if caffe_name == "fc8" else net.layer(caffe_name)
        if layer is None or len(layer.blobs) < 2:
            have = ", ".join(x.name for x in net.layers if x.blobs)
            raise UserError(f"Caffe net {net.name or '?'} has no layer {caffe_name} with weight and bias "
                            f"(layers with weights: {have}); is it an AlexNet?")
        state[f"{ours}.weight"] = _fit(layer.blobs[0], expected[f"{ours}.weight"].shape, f"{caffe_name} weight")
        state[f"{ours}.bias"] = _fit(layer.blobs[1], expected[f"{ours}.bias"].shape, f"{caffe_name} bias")
    # BGR -> RGB: conv1 reads channel 0 as blue in Caffe; reverse its input channels.
    state["features.conv1.weight"] = state["features.conv1.weight"].flip(1).contiguous()
    if mean_image is None:
        preprocess = {"mean_rgb": list(CAFFE_MEAN_BGR[::-1]), "mean": "channel"}
    else:
        preprocess = {"mean_rgb": np.asarray(mean_image, np.float64).reshape(-1, 3).mean(0).tolist(),
                      "mean": "image"}
    preprocess.update({"resize": 256, "crop_size": 227, "std_rgb": None, "warp": True})
    return WeightsFile(
        arch=arch, state_dict=state, num_classes=num_classes, model_options={},
        classes=classes or default_classes(num_classes), preprocess=preprocess,
        mean_image=None if mean_image is None else np.asarray(mean_image, np.float32),
        extra={"converted_from": "caffe", "source": source, "caffe_net": net.name})
