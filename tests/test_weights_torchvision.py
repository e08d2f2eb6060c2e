"""torchvision weights: conversion, the published record (downloaded from a local file:// URL, never the
network), torchvision-identical preprocessing, and refusing pickled code."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tarfile

import pytest
import torch
import torchvision
from PIL import Image

import alexnet
from alexnet.cli.main import main
from alexnet.errors import UserError
from alexnet.weights import records
from alexnet.weights.torchfile import UnsafeFileError


@pytest.fixture(scope="module")
def tv_model():
    torch.manual_seed(0)
    return torchvision.models.alexnet().eval()  # random init: no download


@pytest.fixture(scope="module")
def tv_pth(tv_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("tv") / "alexnet_tv.pth"
    torch.save(tv_model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def photos(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("photos")
    paths = []
    with tarfile.open(shared_data / "imagenet-samples.tar.gz") as tar:
        for m in tar.getmembers():
            if m.isfile() and m.name.endswith(".JPEG") and len(paths) < 6:
                p = out / m.name.rsplit("/", 1)[-1]
                p.write_bytes(tar.extractfile(m).read())
                paths.append(p)
    return paths


def test_converted_torchvision_model_gives_torchvisions_outputs(tv_model, tv_pth, tmp_path, capsys):
    out = tmp_path / "owt.safetensors"
    assert main(["convert", str(tv_pth), "--out", str(out)]) == 0
    model = alexnet.load(out)
    assert model.meta.arch == "alexnet_owt" and len(model.meta.classes) == 1000
    assert model.meta.preprocess.std_rgb is not None  # torchvision divides by the std
    x = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(model(x), tv_model(x), atol=1e-5)


def test_preprocessing_equals_torchvision_transforms(photos):
    tv = torchvision.models.AlexNet_Weights.IMAGENET1K_V1.transforms()  # transforms only: no download
    ours = records.TORCHVISION.transforms()
    for p in photos:
        with Image.open(p) as im:
            expected = tv(im.convert("RGB"))
        assert torch.allclose(ours(p), expected, atol=1e-4), p.name


def test_record_is_declared_like_torchvisions():
    r = records.get_record("torchvision")
    assert r.arch == "alexnet_owt" and r.url.endswith("alexnet-owt-7be5be79.pth")
    assert r.meta["metrics"]["ImageNet-1K"] == {"acc@1": 56.522, "acc@5": 79.066}
    assert len(r.categories) == 1000 and r.categories[0] == "tench"
    tv_meta = torchvision.models.AlexNet_Weights.IMAGENET1K_V1.meta
    assert r.meta["num_params"] == tv_meta["num_params"]
    assert r.url == torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url
    with pytest.raises(UserError, match="unknown weights"):
        records.get_record("imagenet22k")


@pytest.fixture
def local_record(tv_model, tmp_path, monkeypatch):
    """The torchvision record pointed at a local file:// URL with a valid hash-prefixed name."""
    staging = tmp_path / "staging"
    staging.mkdir()
    tmp = staging / "w.pth"
    torch.save(tv_model.state_dict(), tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    served = staging / f"alexnet-owt-{digest}.pth"
    tmp.rename(served)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    record = dataclasses.replace(records.TORCHVISION, url=served.as_uri(), sha256_prefix=digest)
    monkeypatch.setitem(records.RECORDS, "torchvision", record)
    return record, served


def test_create_model_with_torchvision_weights(local_record, tv_model, tmp_path):
    model = alexnet.create_model("alexnet_owt", weights="torchvision")
    assert not model.training and model.meta.classes[1]["name"] == "goldfish"
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(model(x), tv_model(x), atol=1e-5)
    cached = list((tmp_path / "torch_home").rglob("alexnet-owt-*.pth"))
    assert len(cached) == 1  # went through torch.hub's cache
    with pytest.raises(UserError, match="alexnet_owt, not alexnet"):
        alexnet.create_model("alexnet", weights="torchvision")


def test_the_download_note_goes_to_stderr_not_stdout(local_record, capfd):
    """stdout stays the answer alone (``alexnet predict --json``): torch.hub's "Downloading" goes to stderr."""
    record, _ = local_record
    record.get_state_dict(progress=False)
    out, err = capfd.readouterr()
    assert out == "" and "Downloading" in err


def test_download_with_wrong_hash_is_refused(local_record, monkeypatch):
    record, served = local_record
    bad = served.with_name("alexnet-owt-00000000.pth")
    served.rename(bad)
    monkeypatch.setitem(records.RECORDS, "torchvision", dataclasses.replace(record, url=bad.as_uri()))
    with pytest.raises(UserError, match="not the published file"):
        alexnet.load("torchvision")


class _RunsCode:
    """Unpickling this would run ``touch <marker>``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pth_holding_code_is_refused_and_never_run(tmp_path, capsys, tv_model):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"model": tv_model.state_dict(), "payload": _RunsCode(marker)}, evil)
    with pytest.raises(UnsafeFileError, match="refusing to load"):
        alexnet.load(evil)
    assert main(["predict", "--weights", str(evil), str(evil)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refusing to load" in err[0] and "Traceback" not in err[0]
    assert not marker.exists()


def test_a_pickled_whole_model_is_refused_with_advice_a_user_can_follow(tmp_path, capsys, tv_model):
    """torch.save(model) instead of its state dict: refused (never unpickled), and the one line says how to
    re-save it, not torch's advice to allowlist the class, which a CLI user cannot act on."""
    whole = tmp_path / "whole.pth"
    torch.save(tv_model, whole)
    assert main(["convert", str(whole), "--out", str(tmp_path / "w.safetensors")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert "refusing to load a pickled torchvision.models.alexnet.AlexNet" in err[0]
    assert 'torch.save(model.state_dict(), "weights.pth")' in err[0]
    for torch_advice in ("add_safe_globals", "safe_globals", "weights_only"):
        assert torch_advice not in err[0]
    assert not (tmp_path / "w.safetensors").exists()


def test_a_safetensors_file_named_pt_is_named_as_such(tmp_path):
    from safetensors.torch import save_file

    from alexnet.errors import UserError
    from alexnet.weights.torchfile import torch_load_safe

    path = tmp_path / "w.pt"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(UserError, match=r"w.pt is a safetensors file, not a PyTorch file: name it .safetensors$"):
        torch_load_safe(path)
    torch.save({"w": torch.zeros(2)}, tmp_path / "real.pt")  # a real one still loads
    assert torch.equal(torch_load_safe(tmp_path / "real.pt")["w"], torch.zeros(2))


def test_bare_safetensors_state_dict_and_arch_checks(tv_model, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "hub.safetensors"
    save_file({k: v.contiguous() for k, v in tv_model.state_dict().items()}, str(path))
    model = alexnet.load(path)  # no metadata: the model is recognised from its tensor names
    assert model.meta.arch == "alexnet_owt"
    with pytest.raises(UserError, match="not a state dict of alexnet"):
        alexnet.load(path, arch="alexnet")
