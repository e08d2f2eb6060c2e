"""``alexnet.load``: our weights file, checkpoints, run directories, class lists, and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import alexnet
from alexnet.cli.main import main
from alexnet.errors import UserError
from alexnet.weights import read_weights, save_loaded, save_weights


@pytest.fixture(scope="module")
def small_paper_net():
    torch.manual_seed(0)
    return alexnet.create_model("alexnet", num_classes=10, towers=1).eval()


CLASSES = [{"index": i, "wnid": f"n0000000{i}", "name": f"thing {i}"} for i in range(10)]


def test_our_file_round_trip_keeps_classes_mean_image_and_options(small_paper_net, tmp_path):
    mean = np.random.default_rng(0).uniform(80, 160, (256, 256, 3)).astype(np.float32)
    path = save_weights(tmp_path / "w.safetensors", small_paper_net, model_options={"towers": 1}, classes=CLASSES,
                        preprocess={"resize": 256, "crop_size": 224, "mean": "image"}, mean_image=mean)
    model = alexnet.load(path)
    assert model.meta.arch == "alexnet" and model.meta.options == {"towers": 1}
    assert model.meta.classes == CLASSES and not model.training
    pre = model.meta.preprocess
    assert pre.uses_mean_image and pre.std_rgb is None
    assert np.allclose(pre.mean_rgb, mean.reshape(-1, 3).mean(0), atol=1e-3)
    # the mean image is subtracted under the crop: a square equal to the mean gives zeros
    x = pre.crops(torch.from_numpy(mean.round().astype(np.uint8))[None], ten_crop=True)
    assert x.shape == (1, 10, 3, 224, 224) and x.abs().max() <= 0.5
    y = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(model(y), small_paper_net(y))
    resaved = save_loaded(model, tmp_path / "again.safetensors")
    wf = read_weights(resaved)
    assert wf.classes == CLASSES and wf.mean_image is not None and wf.model_options == {"towers": 1}


def test_checkpoint_and_run_directory(small_paper_net, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    sd = {f"module.{k}": v for k, v in small_paper_net.state_dict().items()}  # as saved from DDP
    torch.save({"model": sd, "optimizer": {"state": {}}, "epoch": 3,
                "config": {"model": {"arch": "alexnet", "options": {"towers": 1}, "num_classes": 10}},
                "classes": CLASSES}, run / "last.pt")
    model = alexnet.load(run)  # no .safetensors yet: the checkpoint
    assert model.meta.arch == "alexnet" and model.meta.classes == CLASSES
    y = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(model(y), small_paper_net(y))
    save_weights(run / "weights.safetensors", small_paper_net, model_options={"towers": 1}, classes=CLASSES)
    assert alexnet.load(run).meta.source == str(run)
    empty = tmp_path / "empty_run"
    empty.mkdir()
    with pytest.raises(UserError, match="without weights"):
        alexnet.load(empty)


def test_plain_state_dict_guesses_the_one_tower_net(small_paper_net, tmp_path):
    path = tmp_path / "sd.pth"
    torch.save(small_paper_net.state_dict(), path)
    model = alexnet.load(path)
    assert model.meta.options == {"towers": 1} and model.num_classes == 10
    assert model.meta.classes[0]["name"] == "class_0"  # no names in the file


def test_classes_option_overrides_and_must_fit(small_paper_net, tmp_path):
    path = save_weights(tmp_path / "w.safetensors", small_paper_net, model_options={"towers": 1})
    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"n1000000{i} label {i}, alias" for i in range(10)) + "\n")
    model = alexnet.load(path, classes=names)
    assert model.meta.classes[4] == {"index": 4, "wnid": "n10000004", "name": "label 4"}
    names.write_text("a\nb\n")
    with pytest.raises(UserError, match="2 class names given for a model with 10 outputs"):
        alexnet.load(path, classes=names)


def test_clear_errors(small_paper_net, tmp_path, capsys):
    path = save_weights(tmp_path / "w.safetensors", small_paper_net, model_options={"towers": 1})
    with pytest.raises(UserError, match="for alexnet, not alexnet_owt"):
        alexnet.load(path, arch="alexnet_owt")
    with pytest.raises(UserError, match="not num_classes=5"):
        alexnet.create_model("alexnet", num_classes=5, weights=path)
    odd = tmp_path / "w.onnx"
    odd.write_bytes(b"x")
    with pytest.raises(UserError, match="unknown weights format"):
        alexnet.load(odd)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a zip or pickle")
    assert main(["kernels", "--weights", str(junk), "--out", str(tmp_path / "k.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a readable PyTorch file" in err[0]
    junk_st = tmp_path / "junk.safetensors"
    junk_st.write_bytes(b"\x00" * 16)
    with pytest.raises(UserError, match="not a readable safetensors file"):
        alexnet.load(junk_st)
    with pytest.raises(UserError, match="weights not found"):
        alexnet.load(tmp_path / "missing.safetensors")


def test_training_checkpoint_takes_its_mean_from_the_prepared_dataset(shared_data, tmp_path):
    """A checkpoint as ``alexnet train`` writes it (alexnet.training.checkpoint, Trainer.state_dict's keys)."""
    import tarfile

    from alexnet.data import prepare_dataset

    ckpt = pytest.importorskip("alexnet.training.checkpoint")
    src = tmp_path / "src"
    with tarfile.open(shared_data / "imagenet-samples.tar.gz") as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".JPEG")][:4]
        for m in members:
            dest = src / m.name.split("/")[-2] / m.name.rsplit("/", 1)[-1]
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(tar.extractfile(m).read())
    ds = prepare_dataset(src, tmp_path / "prepared", size=40, workers=1, progress=False)
    torch.manual_seed(0)
    net = alexnet.create_model("cifar_4layer", num_classes=4)
    config = {"arch": "cifar_4layer", "model_options": {}, "data": str(ds.path), "crop_size": 32, "mean": "image"}
    ckpt.save_checkpoint({"config": config, "model": net.state_dict(), "optimizer": {}, "position": {"epoch": 1},
                          "arch": "cifar_4layer", "model_options": {}, "classes": ds.classes},
                         tmp_path / "run" / "last.pt")
    model = alexnet.load(tmp_path / "run")
    assert model.meta.arch == "cifar_4layer" and model.meta.classes == ds.classes
    pre = model.meta.preprocess
    assert (pre.resize, pre.crop_size) == (40, 32) and pre.uses_mean_image
    assert np.allclose(pre.mean_image, ds.mean_image)
    result = alexnet.evaluation.evaluate(model, ds, progress=False)  # classes equal: no mapping needed
    assert result.images == 4


def test_mean_image_of_any_memory_layout_is_saved(small_paper_net, tmp_path):
    chw = np.random.default_rng(1).uniform(0, 255, (3, 256, 256)).astype(np.float32)
    hwc = chw.transpose(1, 2, 0)  # a non-contiguous view, as from tensor.permute(...).numpy()
    path = save_weights(tmp_path / "w.safetensors", small_paper_net, mean_image=hwc)
    assert np.array_equal(read_weights(path).mean_image, hwc)


def _with_metadata(src, dst, change):
    """A copy of weights file ``src`` whose alexnet metadata went through ``change`` (or is ``change``)."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(src), framework="pt") as f:
        meta = json.loads(f.metadata()["alexnet"])
    if not isinstance(change, str):
        change(meta)
    raw = change if isinstance(change, str) else json.dumps(meta)
    save_file(load_file(str(src)), str(dst), metadata={"alexnet": raw})
    return dst


@pytest.fixture(scope="module")
def good_weights(small_paper_net, tmp_path_factory):
    """One valid weights file (200 MB) that the bad-metadata cases copy and damage."""
    return save_weights(tmp_path_factory.mktemp("good") / "w.safetensors", small_paper_net,
                        model_options={"towers": 1}, classes=CLASSES,
                        preprocess={"resize": 256, "crop_size": 224, "mean": "channel"})


@pytest.mark.parametrize("change,needle", [
    ("[1, 2]", "not a JSON object"),
    ("{not json", "bad alexnet metadata"),
    (lambda m: m.pop("arch"), "arch must be"),
    (lambda m: m.update(num_classes="abc"), "num_classes must be"),
    (lambda m: m.update(num_classes=10**9), "num_classes must be"),
    (lambda m: m.update(classes="x"), "classes must be"),
    (lambda m: m.update(model_options=[1]), "model_options must be"),
    (lambda m: m["preprocess"].update(resize=100_000), "resize must be an integer in 8..4096"),
    (lambda m: m["preprocess"].update(resize=-5), "resize must be"),
    (lambda m: m["preprocess"].update(crop_size=300), "crop_size must be"),
    (lambda m: m["preprocess"].update(std_rgb=[0, 1, 1]), "std_rgb must be"),
    (lambda m: m["preprocess"].update(mean="both"), "mean must be"),
    (lambda m: m.update(format_version=99), "format version 99: this alexnet reads versions 1..1"),
    (lambda m: m.update(classes=m["classes"][:2]), "2 classes named for"),
    # a hostile-input audit: each loaded, then gave nan% predictions, 100% error with exit 0, raw terminal
    # escapes, or a TypeError
    (lambda m: m["preprocess"].update(std_rgb=[1e-300] * 3), "std_rgb must be 3 numbers in 0.001..10000"),
    (lambda m: m["preprocess"].update(mean_rgb=[1e300] * 3), "mean_rgb must be 3 numbers in -1000..1000"),
    (lambda m: m["classes"][0].update(name=["x"]), "classes must be a list of objects with a name"),
    (lambda m: m["classes"][0].update(wnid=["n0"]), "a wnid or null"),
    (lambda m: m["model_options"].update(num_classes=5), "model_options must not hold num_classes"),
])
def test_bad_weights_metadata_is_refused_in_one_line(good_weights, tmp_path, capsys, change, needle):
    bad = _with_metadata(good_weights, tmp_path / "bad.safetensors", change)
    with pytest.raises(UserError, match=needle):
        alexnet.load(bad)
    img = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(img)
    assert main(["predict", "--weights", str(bad), str(img)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err


@pytest.mark.parametrize("damage, needle", [
    (lambda t: t.fill_(float("nan")), "holds NaN or infinite values"),
    (lambda t: t.fill_(float("inf")), "holds NaN or infinite values"),
    ("int64", "holds int64 values, not floating-point weights"),
])
def test_weights_that_are_not_finite_numbers_are_refused(good_weights, tmp_path, damage, needle):
    """A diverged run's NaNs (every prediction NaN) and integer tensors (cast into the model silently)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(good_weights), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(good_weights))
    name = next(k for k in tensors if k.endswith("fc8.weight") or k.endswith("classifier.6.weight") or "fc" in k)
    if damage == "int64":
        tensors[name] = tensors[name].long()
    else:
        damage(tensors[name])
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    with pytest.raises(UserError, match=f"tensor {name} {needle}"):
        alexnet.load(bad)


def test_a_mean_image_that_does_not_fit_the_resize_is_refused(small_paper_net, tmp_path):
    path = save_weights(tmp_path / "w.safetensors", small_paper_net, model_options={"towers": 1}, classes=CLASSES,
                        preprocess={"resize": 256, "crop_size": 224, "mean": "image"},
                        mean_image=np.zeros((64, 64, 3), np.float32))
    with pytest.raises(UserError, match="mean image must be 256x256x3"):
        alexnet.load(path)


def test_weights_files_follow_the_umask(small_paper_net, tmp_path):
    import os

    old = os.umask(0o022)
    try:
        path = save_weights(tmp_path / "w.safetensors", small_paper_net, model_options={"towers": 1})
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o644


def test_a_checkpoints_training_record_keeps_only_plain_numbers(small_paper_net, tmp_path):
    """What `alexnet info` shows of a checkpoint: epochs, steps, the last epoch's errors; the file is
    untrusted, so values of the wrong type or out of range are left out, not printed or failed on."""
    from alexnet.weights.load import resolve_weights
    from alexnet.weights.torchfile import training_record

    ckpt = {"format": "alexnet-train-checkpoint", "model": small_paper_net.state_dict(),
            "config": {"arch": "alexnet"}, "model_options": {"towers": 1},
            "position": {"epoch": 4, "batch": 7, "step": 131}, "best": {"val_top1_err": 0.61, "epoch": 3},
            "history": [{"epoch": 4, "train_top1_err": 0.65, "val_top1_err": None, "val_top5_err": 7.0,
                         "train_top5_err": True, "lr": 0.01}]}
    torch.save(ckpt, tmp_path / "last.pt")
    extra = resolve_weights(tmp_path / "last.pt").extra
    assert {k: v for k, v in extra.items() if k not in ("converted_from", "source")} == {
        "trained_by": "alexnet train (checkpoint)", "epochs": 4, "steps": 131, "batches_into_epoch": 7,
        "train_top1_err": 0.65, "best_val_top1_err": 0.61}
    junk = {"position": {"epoch": "4", "step": -1, "batch": True}, "history": "no", "best": [1], "epoch": 2.5}
    assert training_record(junk) == {}
    assert training_record({"epoch": 3}) == {"epochs": 3}  # another tool's checkpoint


def test_save_weights_keeps_the_models_own_options_classes_and_preprocessing(tmp_path):
    """The API walkthrough: save_weights(path, model) recorded model_options {} for a model built with
    lrn=False, activation=tanh: alexnet.load then built another network (outputs off by up to 1.6)."""
    torch.manual_seed(0)
    m = alexnet.create_model("alexnet", num_classes=10, lrn=False, activation="tanh", overlap_pool=False).eval()
    back = alexnet.load(save_weights(tmp_path / "w.safetensors", m))
    assert back.meta.options == {"lrn": False, "activation": "tanh", "overlap_pool": False}
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(back(x), m(x))
    # a loaded model saved again keeps its classes and preprocessing without being told
    back.meta.classes = CLASSES
    again = read_weights(save_weights(tmp_path / "again.safetensors", back))
    assert again.classes == CLASSES and again.model_options == back.meta.options
    assert again.preprocess == back.meta.preprocess.to_metadata()


@pytest.mark.parametrize("classes, needle", [([{"name": "a"}], "1 classes named for 10 outputs"),
                                             (["a"] * 10, "classes must be a list of objects with a name")])
def test_save_weights_refuses_what_load_would_refuse(small_paper_net, tmp_path, classes, needle):
    from alexnet.errors import BadOptionError

    with pytest.raises(BadOptionError, match=f"save_weights: {needle}"):
        save_weights(tmp_path / "w.safetensors", small_paper_net, classes=classes)
    with pytest.raises(BadOptionError, match="needs arch="):
        save_weights(tmp_path / "w.safetensors", torch.nn.Linear(2, 2))
    headless = alexnet.create_model("cifar_4layer")
    headless.reset_classifier(0)
    with pytest.raises(BadOptionError, match="has no classifier"):
        save_weights(tmp_path / "w.safetensors", headless)
    assert list(tmp_path.iterdir()) == []


def test_a_tiny_file_declaring_a_huge_model_is_refused_before_it_is_built(good_weights, tmp_path, monkeypatch):
    """A 252-byte file with num_classes 1,000,000 (or tensors that do not fit) made load allocate 16 GB."""
    from safetensors.torch import save_file

    from alexnet.weights.file import WeightsFile

    monkeypatch.setattr(WeightsFile, "build_model", lambda self: pytest.fail("the model was built"))
    for classes, needle in ((1_000_000, "num_classes must be an integer in 1..100000"),
                            (50_000, "the weights do not fit alexnet_owt with 50000 classes: no layer of them has")):
        path = tmp_path / f"huge{classes}.safetensors"
        meta = {"arch": "alexnet_owt", "num_classes": classes}
        save_file({"classifier.6.bias": torch.zeros(1)}, str(path), metadata={"alexnet": json.dumps(meta)})
        with pytest.raises(UserError, match=needle):
            alexnet.load(path)
    # a .pth of one stored value expanded to 50,000 x 4096 (5 KB of file)
    sd = alexnet.create_model("alexnet_owt", num_classes=2).state_dict()
    sd["classifier.6.weight"] = torch.zeros(1).expand(50_000, 4096)
    sd["classifier.6.bias"] = torch.zeros(1).expand(50_000)
    torch.save(sd, tmp_path / "expanded.pth")
    with pytest.raises(UserError, match="classifier.6.weight repeats one stored value .*stride 0"):
        alexnet.load(tmp_path / "expanded.pth", arch="alexnet_owt")


def test_load_takes_class_names_and_refuses_a_device_in_one_line(small_paper_net, tmp_path):
    path = save_weights(tmp_path / "w.safetensors", small_paper_net)
    names = [f"kind {i}" for i in range(10)]
    assert [c["name"] for c in alexnet.load(path, classes=names).meta.classes] == names  # was a TypeError
    for device, needle in (("gpu", "not a device"), ("cuda:7", "cuda:7")):
        with pytest.raises(UserError, match=needle):                                    # was a RuntimeError
            alexnet.load(path, device=device)


def test_preprocess_and_model_meta_compare_by_value_mean_image_included():
    import copy

    from alexnet.weights.preprocess import Preprocess

    image = np.full((256, 256, 3), 100.0, np.float32)
    a = Preprocess(mean_image=image)
    assert a == Preprocess(mean_image=image.copy()) and not a != Preprocess(mean_image=image.copy())
    assert a != Preprocess() and a != Preprocess(mean_image=image + 1) and a != Preprocess(mean_image=image, warp=True)
    model = alexnet.create_model("cifar_4layer")
    model.meta.preprocess = a
    twin = copy.deepcopy(model)
    assert twin.meta == model.meta  # was: ValueError, the truth value of an array is ambiguous
    twin.meta.preprocess.mean_image[0, 0, 0] = 0
    assert twin.meta != model.meta


def test_class_names_that_are_not_printable_are_shown_with_question_marks(good_weights, tmp_path, capsys):
    """A hostile-input audit: a class name holding an escape sequence reached the terminal as it was."""
    bad = _with_metadata(good_weights, tmp_path / "esc.safetensors",
                         lambda m: m["classes"][0].update(name="\x1b[31mred\nline"))
    model = alexnet.load(bad)
    assert model.meta.classes[0]["name"] == "?[31mred?line"
    assert alexnet.load(good_weights).meta.classes[1] == model.meta.classes[1]
