"""Evaluation: exact top-1/top-5 counts with 1 and 10 crops, class mapping, per-class CSV, JSON, sharding
(manual and under torchrun with 2 gloo processes)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import alexnet
from alexnet.cli.main import main
from alexnet.errors import UserError
from alexnet.evaluation import EvalResult, evaluate
from alexnet.models import ModelMeta
from alexnet.weights import Preprocess, save_weights

# --- an oracle model on synthetic images, so that the right counts are known -------------------------

S, C, K = 32, 24, 12  # stored size, crop, classes
CENTRES = torch.arange(K, dtype=torch.float64) * 20 + 10  # class k "is" red value 20k + 10


class RedNet(nn.Module):
    """Logits from the crop's mean red value: -(r - centre_k)^2 / 60 (nearest centre = top-1)."""

    num_classes = K

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))  # so that the model has a device
        self.meta = ModelMeta(classes=[{"index": k, "wnid": None, "name": f"c{k}"} for k in range(K)],
                              preprocess=Preprocess(resize=S, crop_size=C, mean_rgb=(0.0, 0.0, 0.0)))

    def forward(self, x):
        r = x[:, 0].double().mean((1, 2))
        return (-(r[:, None] - CENTRES[None]) ** 2 / 60).float() + self.dummy


class FakeDataset:
    """Images whose red channel ramps left to right, so that the ten crops see different means."""

    def __init__(self, n: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.size = S
        self.classes = [{"index": k, "wnid": None, "name": f"c{k}"} for k in range(K)]
        self.labels = rng.integers(0, K, n)
        self.base = rng.uniform(0, 20 * K, n)
        self.slope = rng.uniform(-8, 8, n)

    def __len__(self):
        return len(self.labels)

    def get_uint8(self, i):
        red = np.clip(self.base[i] + self.slope[i] * (np.arange(S) - S / 2), 0, 255)
        img = np.zeros((S, S, 3), np.uint8)
        img[:, :, 0] = red.round().astype(np.uint8)[None, :]
        return img


def expected_counts(ds: FakeDataset, crops: int):
    """Top-1/top-5 hits per image, computed here with numpy from the definitions."""
    e = S - C
    offsets = [((e // 2), (e // 2))] + ([(0, 0), (0, e), (e, 0), (e, e)] if crops == 10 else [])
    hit1, hit5 = [], []
    for i in range(len(ds)):
        img = ds.get_uint8(i).astype(np.float64)
        probs = []
        for top, left in offsets:
            crop = img[top:top + C, left:left + C, 0]
            for c in ([crop, crop[:, ::-1]] if crops == 10 else [crop]):
                logits = -(c.mean() - CENTRES.numpy()) ** 2 / 60
                p = np.exp(logits - logits.max())
                probs.append(p / p.sum())
        p = np.mean(probs, 0)
        order = np.argsort(-p, kind="stable")
        hit1.append(order[0] == ds.labels[i])
        hit5.append(ds.labels[i] in order[:5])
    return np.array(hit1), np.array(hit5)


@pytest.mark.parametrize("crops", [1, 10])
def test_counts_match_independent_computation(crops):
    ds = FakeDataset(57)
    hit1, hit5 = expected_counts(ds, crops)
    assert 0 < hit1.sum() < hit5.sum() < len(ds)  # the case is not degenerate
    r = evaluate(RedNet(), ds, crops=crops, batch_size=8, progress=False)
    assert (r.images, r.top1_correct, r.top5_correct) == (57, int(hit1.sum()), int(hit5.sum()))
    assert r.top1_error == pytest.approx(1 - hit1.mean())
    per = {row["index"]: row for row in r.per_class}
    for k in range(K):
        mask = ds.labels == k
        assert per[k]["images"] == mask.sum() and per[k]["top1_correct"] == hit1[mask].sum()


def test_ten_crops_differ_from_centre_crop():
    ds = FakeDataset(57)
    one, ten = (evaluate(RedNet(), ds, crops=c, progress=False) for c in (1, 10))
    assert (one.top1_correct, one.top5_correct) != (ten.top1_correct, ten.top5_correct)


def test_manual_shards_cover_every_image_once():
    ds = FakeDataset(23)
    whole = evaluate(RedNet(), ds, progress=False)
    parts = [evaluate(RedNet(), ds, rank=r, world_size=3, progress=False, batch_size=4) for r in range(3)]
    assert [p.images for p in parts] == [7, 8, 8]
    assert sum(p.top1_correct for p in parts) == whole.top1_correct
    assert sum(p.top5_correct for p in parts) == whole.top5_correct


def test_summary_and_per_class_csv(tmp_path):
    ds = FakeDataset(30)
    r = evaluate(RedNet(), ds, progress=False)
    s = r.summary()
    assert {"top1_error", "top5_error", "top1_accuracy", "top5_accuracy", "images"} <= set(s)
    assert s["top1_error"] + s["top1_accuracy"] == pytest.approx(1)  # fractions, like the attributes
    path = r.write_per_class_csv(tmp_path / "per_class.csv")
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == sum(1 for p in r.per_class if p["images"]) and sum(int(x["images"]) for x in rows) == 30
    for x in rows:
        if int(x["images"]):
            assert float(x["top1_accuracy"]) == pytest.approx(int(x["top1_correct"]) / int(x["images"]))


def test_summary_holds_the_attributes_fractions():
    r = EvalResult(images=10000, crops=1, top1_correct=7266, top5_correct=9000, topk=5)
    s = r.summary()
    assert (s["top1_error"], s["top5_error"], s["top1_accuracy"], s["top5_accuracy"]) == \
        (r.top1_error, r.top5_error, r.top1_accuracy, r.top5_accuracy) == (0.2734, 0.1, 0.7266, 0.9)
    assert '"top1_error": 0.2734' in json.dumps(s)  # counted, not 1 - accuracy: no 0.27340000000000003


def test_mismatched_classes_are_a_clear_error():
    ds = FakeDataset(5)
    ds.classes = [{"index": k, "wnid": None, "name": f"other{k}"} for k in range(K)]
    with pytest.raises(UserError, match="do not match"):
        evaluate(RedNet(), ds, progress=False)
    ds.classes = ds.classes[:3]  # fewer classes, not a subset by name
    with pytest.raises(UserError, match="do not match"):
        evaluate(RedNet(), ds, progress=False)


# --- real prepared datasets ---------------------------------------------------------------------------

def _extract(tar_path: Path, out: Path, per_class: int, prefix: str) -> Path:
    counts: dict[str, int] = {}
    with tarfile.open(tar_path) as tar:
        for m in tar:
            if not m.isfile() or not m.name.startswith(prefix):
                continue
            cls = m.name.split("/")[-2]
            if counts.get(cls, 0) >= per_class:
                continue
            counts[cls] = counts.get(cls, 0) + 1
            dest = out / cls / m.name.rsplit("/", 1)[-1]
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(tar.extractfile(m).read())
    return out


@pytest.fixture(scope="module")
def imagenette(shared_data, tmp_path_factory):
    from alexnet.data import prepare_dataset

    root = tmp_path_factory.mktemp("nette")
    src = _extract(shared_data / "imagenette-train.tar.gz", root / "src", 2, "imagenette/train/")
    return prepare_dataset(src, root / "prepared", workers=1, progress=False)


@pytest.fixture(scope="module")
def owt_weights(tmp_path_factory):
    torch.manual_seed(0)
    model = alexnet.create_model("alexnet_owt")
    path = tmp_path_factory.mktemp("w") / "owt.safetensors"
    from alexnet.weights.torchfile import default_preprocess

    save_weights(path, model, classes=alexnet.weights.imagenet_classes(), preprocess=default_preprocess("alexnet_owt"))
    return path


def test_imagenette_is_mapped_into_imagenet_classes(imagenette, owt_weights, tmp_path, capsys):
    csv_path = tmp_path / "pc.csv"
    code = main(["evaluate", "--weights", str(owt_weights), "--data", str(imagenette.path), "--json",
                 "--per-class", str(csv_path), "--batch-size", "8"])
    assert code == 0
    s = json.loads(capsys.readouterr().out)
    assert s["images"] == len(imagenette) == 20 and s["crops"] == 1
    rows = list(csv.DictReader(csv_path.open()))
    assert [int(x["model_index"]) for x in rows] == [0, 217, 482, 491, 497, 566, 569, 571, 574, 701]
    # the same numbers as classifying each stored image by hand over all 1000 classes
    model = alexnet.load(owt_weights)
    squares = torch.from_numpy(np.stack([imagenette.get_uint8(i) for i in range(len(imagenette))]))
    probs = alexnet.evaluation.class_probabilities(model, squares)
    mapped = torch.tensor([0, 217, 482, 491, 497, 566, 569, 571, 574, 701])[torch.from_numpy(imagenette.labels)]
    top5 = probs.topk(5, -1).indices
    assert s["top5_correct"] == int((top5 == mapped[:, None]).any(-1).sum())
    assert s["top1_correct"] == int((top5[:, 0] == mapped).sum())


def test_dataset_not_in_model_classes_exits_with_one_line(imagenette, tmp_path, capsys):
    model = alexnet.create_model("cifar_4layer")
    path = save_weights(tmp_path / "cifar.safetensors", model,
                        classes=[{"index": i, "wnid": n, "name": n} for i, n in enumerate("abcdefghij")],
                        preprocess={"resize": 32, "crop_size": 32, "mean_rgb": [120, 120, 120]})
    assert main(["evaluate", "--weights", str(path), "--data", str(imagenette.path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "do not match" in err[0]


@pytest.fixture(scope="module")
def cifar(shared_data, tmp_path_factory):
    from alexnet.data import prepare_dataset

    root = tmp_path_factory.mktemp("cifar")
    src = _extract(shared_data / "cifar10-train.tar.gz", root / "src", 5, "cifar10/train/")
    next((src / "truck").iterdir()).unlink()  # 49 images: shards of unequal size
    ds = prepare_dataset(src, root / "prepared", size=32, workers=1, progress=False)
    torch.manual_seed(1)
    model = alexnet.create_model("cifar_4layer")
    weights = save_weights(root / "cifar.safetensors", model, classes=ds.classes,
                           preprocess={"resize": 32, "crop_size": 32, "mean_rgb": ds.mean_rgb.tolist(),
                                       "mean": "image"}, mean_image=ds.mean_image)
    return ds, weights


@pytest.mark.slow  # ~15 s: two Python processes start and import torch
def test_torchrun_two_processes_count_every_image_once(cifar, tmp_path):
    ds, weights = cifar
    single = evaluate(alexnet.load(weights), ds, progress=False)
    out = tmp_path / "eval.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "alexnet", "evaluate", "--weights", str(weights), "--data", str(ds.path), "--json",
           "--batch-size", "8", "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    keys = ("rror", "alexnet", "abort", "terminate", "what()", "Signal")
    assert proc.returncode == 0, "\n".join(line for line in proc.stderr.splitlines()
                                           if any(k in line for k in keys))[-3000:]
    out.write_text(proc.stdout)
    s = json.loads(proc.stdout)  # rank 0 alone prints
    assert s["processes"] == 2 and s["images"] == len(ds) == 49
    assert (s["top1_correct"], s["top5_correct"]) == (single.top1_correct, single.top5_correct)


def test_printed_percent_and_json_fractions_agree_with_the_api(cifar, capsys):
    """One unit each: the API and --json hold fractions, the text shows the same numbers in percent."""
    ds, weights = cifar
    r = evaluate(alexnet.load(weights), ds, progress=False)
    args = ["evaluate", "--weights", str(weights), "--data", str(ds.path), "--device", "cpu"]
    assert main([*args, "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["top1_error"], s["top5_error"], s["top1_accuracy"], s["top5_accuracy"]) == \
        (r.top1_error, r.top5_error, r.top1_accuracy, r.top5_accuracy)
    assert 0 <= r.top1_error <= 1 and r.top1_error + r.top1_accuracy == pytest.approx(1)
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1:] == [f"top-1 error {100 * r.top1_error:.2f}%  (accuracy {100 * r.top1_accuracy:.2f}%)",
                       f"top-5 error {100 * r.top5_error:.2f}%  (accuracy {100 * r.top5_accuracy:.2f}%)"]


def test_per_class_csv_lists_the_classes_that_have_images(tmp_path):
    ds = FakeDataset(30)
    ds.labels = np.zeros_like(np.asarray(ds.labels))  # every image of class 0
    r = evaluate(RedNet(), ds, progress=False)
    rows = list(csv.DictReader(r.write_per_class_csv(tmp_path / "a.csv").open()))
    assert [int(x["index"]) for x in rows] == [0] and int(rows[0]["images"]) == 30
    every = list(csv.DictReader(r.write_per_class_csv(tmp_path / "b.csv", include_empty=True).open()))
    assert len(every) == K


@pytest.mark.parametrize("ten_crop", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fixed_batch_gives_the_same_tally_in_one_shape(ten_crop, channels_last):
    """fixed_batch (the trainer's, when compiled): the model sees one batch shape only (a last partial
    batch padded, ten crops in chunks), and the counts, loss and errors are those of the plain loop."""
    from alexnet.evaluation import evaluate_batches

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    shapes = []
    model.register_forward_pre_hook(lambda m, args: shapes.append(tuple(args[0].shape)))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    batches = []
    for n in (6, 6, 4):  # a last partial batch
        x = torch.randn(n, 10, 3, 8, 8) if ten_crop else torch.randn(n, 3, 8, 8).contiguous(memory_format=fmt)
        batches.append((x, torch.randint(0, 5, (n,))))
    plain = evaluate_batches(model, batches, num_classes=5, ten_crop=ten_crop, channels_last=channels_last)
    shapes.clear()
    fixed = evaluate_batches(model, batches, num_classes=5, ten_crop=ten_crop, channels_last=channels_last,
                             fixed_batch=6)
    assert set(shapes) == {(6, 3, 8, 8)}
    assert len(shapes) == (10 + 10 + 7 if ten_crop else 3)  # 60, 60 and 40 crops in chunks of 6
    a, b = plain.summary(), fixed.summary()
    assert a["images"] == b["images"] == 16 and a["top1_err"] == b["top1_err"] and a["top5_err"] == b["top5_err"]
    assert b["loss"] == pytest.approx(a["loss"], rel=1e-6)


@pytest.fixture(scope="module")
def tiny_damageable(tmp_path_factory):
    """6 random 32x32 images of 2 classes, prepared as jpeg and as raw, and cifar_4layer weights for them."""
    from alexnet.data import prepare_dataset
    from conftest import random_image_folder

    root = tmp_path_factory.mktemp("damage")
    random_image_folder(root, 3, 32)
    ds = {fmt: prepare_dataset(root / "src", root / fmt, size=32, format=fmt, workers=1, progress=False)
          for fmt in ("jpeg", "raw")}
    torch.manual_seed(0)
    weights = save_weights(root / "w.safetensors", alexnet.create_model("cifar_4layer", num_classes=2),
                           classes=ds["jpeg"].classes,
                           preprocess={"resize": 32, "crop_size": 32, "mean_rgb": [120, 120, 120]})
    return root, weights


def _damage(root, tmp_path, kind):
    import shutil

    fmt = "raw" if kind == "empty raw shard" else "jpeg"
    bad = tmp_path / "bad"
    shutil.copytree(root / fmt, bad)
    meta = json.loads((bad / "meta.json").read_text())
    shard = bad / meta["shards"][0]["file"]
    if kind == "zeroed jpeg":
        with np.load(bad / "index.npz") as z:
            off, length = int(z["offset"][3]), int(z["length"][3])
        data = bytearray(shard.read_bytes())
        data[off:off + length] = bytes(length)
        shard.write_bytes(bytes(data))
    elif kind == "truncated index":
        data = (bad / "index.npz").read_bytes()
        (bad / "index.npz").write_bytes(data[:len(data) // 2])
    elif kind == "empty raw shard":
        shard.write_bytes(b"")
    elif kind == "num_classes 0":
        meta["num_classes"] = 0
        (bad / "meta.json").write_text(json.dumps(meta))
    return bad


@pytest.mark.parametrize("command", ["evaluate", "features"])
@pytest.mark.parametrize("kind, needle", [
    ("zeroed jpeg", r"bad: image 3 \(shard 0\) is damaged \(.+\); the prepared dataset's files changed after it "
                    r"was written: prepare it again$"),
    ("truncated index", r"bad: prepared dataset is damaged \(.*zip.*\)$"),
    ("empty raw shard", r"bad: prepared dataset is damaged \(cannot read shard shards/00000.npy: .+\)"),
    ("num_classes 0", r"bad: prepared dataset is damaged \(num_classes must equal the 2 classes listed, got 0\)$"),
])
def test_a_damaged_prepared_dataset_is_one_line_for_evaluate_and_features(tiny_damageable, tmp_path, capsys,
                                                                          command, kind, needle):
    import re

    root, weights = tiny_damageable
    bad = _damage(root, tmp_path, kind)
    argv = [command, "--weights", str(weights), "--data", str(bad), "--threads", "1"]
    if command == "features":
        argv += ["--out", str(tmp_path / "f.npz")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0] and re.search(needle, err[0]), err
    assert not (tmp_path / "f.npz").exists()


def test_evaluate_takes_a_path_and_refuses_a_bad_batch_size(tiny_damageable):
    """The API walkthrough: evaluate(m, "prepared") raised AttributeError, batch_size=0 a ValueError of range()."""
    root, weights = tiny_damageable
    model = alexnet.load(weights)
    by_path = evaluate(model, root / "raw", progress=False)
    by_object = evaluate(model, alexnet.data.PreparedDataset(root / "raw"), progress=False)
    assert by_path.images == 6 and by_path.top1_error == by_object.top1_error
    assert evaluate(model, root / "raw", batch_size=np.int64(4), progress=False).images == 6  # numpy ints too
    for bad in (0, -1, 2.5, True):
        with pytest.raises(UserError, match="batch_size must be a positive integer"):
            evaluate(model, root / "raw", batch_size=bad, progress=False)


def test_non_finite_outputs_are_refused_not_scored():
    """A hostile-input audit: weights whose channel mean was 1e300 gave NaN logits, and evaluate reported
    top-1 error 100% / top-5 87.5% with exit 0."""
    net = RedNet()
    with torch.no_grad():
        net.dummy.fill_(float("nan"))
    with pytest.raises(UserError, match="outputs are not finite numbers"):
        evaluate(net, FakeDataset(9), crops=1, batch_size=4, progress=False)
