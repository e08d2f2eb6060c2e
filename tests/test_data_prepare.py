"""alexnet prepare: the four source layouts, bad inputs, statistics, resume, the CLI.

Real photographs come from ../shared/data (read in place); the awkward files real ImageNet holds (CMYK,
a PNG named .JPEG, grayscale, very large, truncated, empty, not an image) are made from them in tmp dirs.
"""

from __future__ import annotations

import io
import json
import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from alexnet.cli.main import main
from alexnet.data import PreparedDataset, prepare_dataset, read_synsets
from alexnet.data import prepare as prepare_mod
from alexnet.data.format import META, PARTIAL
from alexnet.data.images import BadImage, preprocess
from alexnet.data.stats import IMAGENET_PCA_EIGVEC
from alexnet.errors import UserError

IMAGENETTE_INDICES = [0, 217, 482, 491, 497, 566, 569, 571, 574, 701]
# torchvision 0.29 deprecates its decoders (alexnet.data.jpeg silences this outside pytest)


# --------------------------------------------------------------------------- helpers / fixtures

@pytest.fixture(scope="module")
def samples(shared_data) -> dict[str, bytes]:
    """The 204 full-size ImageNet samples: {'<wnid>/<file>': JPEG bytes}, read from the shared tar."""
    out = {}
    with tarfile.open(shared_data / "imagenet-samples.tar.gz") as tf:
        for m in tf:
            if m.isreg():
                out[m.name.split("/", 1)[1]] = tf.extractfile(m).read()
    assert len(out) == 204
    return out


@pytest.fixture(scope="module")
def synsets(shared_data):
    return read_synsets(shared_data / "synset_words.txt")


@pytest.fixture(scope="module")
def prepared_samples(shared_data, tmp_path_factory) -> PreparedDataset:
    """imagenet-samples.tar.gz prepared as the issue's command does (tar.gz read in place, --classes)."""
    out = tmp_path_factory.mktemp("samples") / "jpeg"
    return prepare_dataset(shared_data / "imagenet-samples.tar.gz", out,
                           classes_file=shared_data / "synset_words.txt", workers=2, progress=False)


def write_folder(root, files: dict[str, bytes]):
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


def make_tar(path, files: dict[str, bytes], mode="w"):
    with tarfile.open(path, mode) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


# --------------------------------------------------------------------------- layout 4: tar.gz, statistics

def test_samples_tar_gz_counts_classes_and_labels(prepared_samples, samples, synsets):
    ds = prepared_samples
    assert len(ds) == ds.meta["count"] == ds.meta["found"] == 204 and ds.meta["skipped"] == []
    assert ds.classes == synsets and len(ds.classes) == 1000  # the synset file fixes classes and order
    wnid_index = {c["wnid"]: c["index"] for c in synsets}
    for i in range(len(ds)):
        key = ds.path_of(i)
        assert key in samples
        assert ds.labels[i] == wnid_index[key.split("/")[0]]  # the class folder's ImageNet index
    assert ds.labels.dtype == np.int64 and len(set(ds.labels.tolist())) == 204
    assert ds.meta["source"].endswith("imagenet-samples.tar.gz") and ds.meta["layout"] == "tar"
    assert ds.size == 256 and ds.format == "jpeg" and ds.meta["quality"] == 90


def test_samples_images_are_the_papers_preprocessing(prepared_samples, samples):
    ds = prepared_samples
    for i in (0, 57, 203):
        got = ds.get_uint8(i)
        assert got.shape == (256, 256, 3) and got.dtype == np.uint8
        want = preprocess(samples[ds.path_of(i)], 256)
        # stored as JPEG q90: a few levels of coding error, nothing more
        assert np.abs(got.astype(int) - want.astype(int)).mean() < 3.0


def test_samples_statistics(prepared_samples):
    ds = prepared_samples
    assert ds.mean_image.shape == (256, 256, 3) and ds.mean_image.dtype == np.float32
    assert (ds.path / "mean.npy").is_file()
    # mean_rgb is the mean of the mean image (of the stored, JPEG-coded pixels)
    np.testing.assert_allclose(ds.mean_rgb, ds.mean_image.reshape(-1, 3).mean(0), rtol=1e-5)
    assert np.all((ds.mean_rgb > 80) & (ds.mean_rgb < 160))
    ev, vec = ds.pca_eigval, ds.pca_eigvec
    assert ev.shape == (3,) and vec.shape == (3, 3)
    assert np.all(np.diff(ev) <= 0) and ev[-1] >= 0  # descending
    np.testing.assert_allclose(vec.T @ vec, np.eye(3), atol=1e-8)  # orthonormal columns
    # a sample of real ImageNet photos: close to the published ImageNet PCA (pixels in 0..1)
    assert 0.1 < ev[0] < 0.35 and ev[1] < 0.1 * ev[0] * 2
    assert abs(vec[:, 0] @ IMAGENET_PCA_EIGVEC[:, 0]) > 0.99
    # the covariance the PCA came from has trace = sum of the per-channel variances
    np.testing.assert_allclose(ev.sum(), ((ds.std_rgb / 255) ** 2).sum(), rtol=1e-6)
    for key in ("count", "classes", "source", "size", "format", "mean_rgb", "pca_eigval", "pca_eigvec",
                "skipped", "pca_units"):
        assert key in ds.meta


def test_raw_format_matches_jpeg_and_is_a_plain_npy(samples, tmp_path):
    src = write_folder(tmp_path / "src", dict(list(samples.items())[:12]))
    raw = prepare_dataset(src, tmp_path / "raw", format="raw", workers=1, progress=False)
    jpg = prepare_dataset(src, tmp_path / "jpg", format="jpeg", quality=95, workers=1, progress=False)
    shard = np.load(raw.path / raw.meta["shards"][0]["file"], mmap_mode="r")
    assert shard.dtype == np.uint8 and shard.shape == (12, 256, 256, 3)
    for i in range(12):
        a = raw.get_uint8(i)
        np.testing.assert_array_equal(a, preprocess(samples[raw.path_of(i)]))
        np.testing.assert_array_equal(a, shard[i])
        assert np.abs(a.astype(int) - jpg.get_uint8(i).astype(int)).mean() < 4.0
    np.testing.assert_array_equal(raw.labels, jpg.labels)
    assert sum(s["bytes"] for s in jpg.meta["shards"]) < sum(s["bytes"] for s in raw.meta["shards"]) / 4


# --------------------------------------------------------------------------- preprocessing geometry

def test_rescale_centre_crop_and_warp_geometry():
    # 900x300: left third red, middle third green, right third blue. Shorter side -> 256 gives 768x256;
    # its central 256 columns are exactly the green third. Warp squashes all three into 256 columns.
    a = np.zeros((300, 900, 3), np.uint8)
    a[:, :300, 0] = 255
    a[:, 300:600, 1] = 255
    a[:, 600:, 2] = 255
    png = io.BytesIO()
    Image.fromarray(a).save(png, "PNG")
    crop = preprocess(png.getvalue(), 256).astype(int)
    assert crop.shape == (256, 256, 3)
    assert (crop[:, 2:-2, 1] == 255).all() and crop[:, 2:-2, [0, 2]].max() == 0
    warp = preprocess(png.getvalue(), 256, warp=True).astype(int)
    assert (warp[:, 10:75, 0] == 255).all() and (warp[:, 95:160, 1] == 255).all()
    assert (warp[:, 180:246, 2] == 255).all()
    # a tall image: the centre rows are kept
    t = np.zeros((900, 300, 3), np.uint8)
    t[300:600] = 200
    tall = io.BytesIO()
    Image.fromarray(t).save(tall, "PNG")
    assert (preprocess(tall.getvalue(), 64)[2:-2] == 200).all()


def test_preprocess_agrees_with_torchvision_resize_and_center_crop(samples):
    import torch
    from torchvision.transforms import v2

    data = samples["n01440764/n01440764_tench.JPEG"]
    ours = preprocess(data, 256).astype(np.float32)
    img = Image.open(io.BytesIO(data)).convert("RGB")
    tv = v2.CenterCrop(256)(v2.Resize(256, antialias=True)(img))
    tv = np.asarray(tv).astype(np.float32)
    # same filter and geometry up to sub-pixel rounding of the crop offset and the reduced-scale decode
    assert np.abs(ours - tv).mean() < 4.0
    assert torch.corrcoef(torch.tensor(np.stack([ours.ravel(), tv.ravel()])))[0, 1] > 0.98


# --------------------------------------------------------------------------- bad input

def test_awkward_and_corrupt_files(samples, tmp_path):
    names = sorted(samples)
    photo = Image.open(io.BytesIO(samples[names[0]])).convert("RGB")
    big = photo.resize((4000, 3000))
    png = io.BytesIO()
    photo.save(png, "PNG")
    good = samples[names[1]]
    files = {
        "a/good1.JPEG": good,
        "a/good2.JPEG": samples[names[2]],
        "a/cmyk.JPEG": jpeg_bytes(photo.convert("CMYK"), quality=95),
        "a/png_named.JPEG": png.getvalue(),
        "b/gray.JPEG": jpeg_bytes(photo.convert("L")),
        "b/huge.JPEG": jpeg_bytes(big, quality=80),
        "b/truncated.JPEG": good[: len(good) // 3],
        "b/empty.JPEG": b"",
        "b/text.JPEG": b"this is not an image\n" * 20,
    }
    src = write_folder(tmp_path / "src", files)
    ds = prepare_dataset(src, tmp_path / "out", workers=1, progress=False)
    skipped = {s["path"]: s["reason"] for s in ds.meta["skipped"]}
    assert set(skipped) == {"b/truncated.JPEG", "b/empty.JPEG", "b/text.JPEG"}
    assert "truncated" in skipped["b/truncated.JPEG"]
    assert "empty" in skipped["b/empty.JPEG"]
    assert "not an image" in skipped["b/text.JPEG"]
    assert len(ds) + len(skipped) == ds.meta["found"] == len(files)
    kept = {ds.path_of(i): i for i in range(len(ds))}
    assert set(kept) == set(files) - set(skipped)
    assert [c["wnid"] for c in ds.classes] == ["a", "b"]
    ref = preprocess(jpeg_bytes(photo, quality=95)).astype(int)
    # CMYK and PNG-named-JPEG decode to the same picture; grayscale becomes 3 equal channels
    assert np.abs(ds.get_uint8(kept["a/cmyk.JPEG"]).astype(int) - ref).mean() < 6
    assert np.abs(ds.get_uint8(kept["a/png_named.JPEG"]).astype(int) - ref).mean() < 4
    g = ds.get_uint8(kept["b/gray.JPEG"]).astype(int)
    assert np.abs(g[..., 0] - g[..., 1]).max() <= 2 and np.abs(g[..., 0] - g[..., 2]).max() <= 2
    assert np.abs(ds.get_uint8(kept["b/huge.JPEG"]).astype(int) - ref).mean() < 8
    # the CLI summary line names both counts and lists the skipped files
    code, out, err = run_cli(["prepare", str(src), str(tmp_path / "out"), "--workers", "1"])
    assert code == 0
    assert "6 images, 3 skipped, 9 found" in out
    assert "skipped b/empty.JPEG: empty file" in err


def test_bad_image_reasons():
    with pytest.raises(BadImage, match="empty"):
        preprocess(b"")
    with pytest.raises(BadImage, match="not an image"):
        preprocess(b"GIF89 nope")


# --------------------------------------------------------------------------- layouts 1, 3, plain tar

def test_folder_layout_with_and_without_classes(samples, synsets, tmp_path):
    subset = dict(sorted(samples.items())[::20])  # 11 classes
    src = write_folder(tmp_path / "src", subset)
    plain = prepare_dataset(src, tmp_path / "plain", workers=2, progress=False)
    wnids = sorted({k.split("/")[0] for k in subset})
    assert [c["wnid"] for c in plain.classes] == wnids and plain.meta["layout"] == "folder"
    assert [plain.classes[label]["wnid"] for label in plain.labels] == [plain.path_of(i).split("/")[0]
                                                                          for i in range(len(plain))]
    write_synsets(tmp_path / "syn.txt", synsets)
    named = prepare_dataset(src, tmp_path / "named", classes_file=tmp_path / "syn.txt", workers=1,
                            progress=False)
    index = {c["wnid"]: c["index"] for c in synsets}
    assert len(named.classes) == 1000 and named.classes[index["n01440764"]]["name"].startswith("tench")
    assert [named.classes[label]["wnid"] for label in named.labels] == [plain.classes[label]["wnid"]
                                                                          for label in plain.labels]
    np.testing.assert_allclose(named.mean_image, plain.mean_image)


def write_synsets(path, synsets) -> None:
    path.write_text("".join(f"{c['wnid']} {c['name']}\n" for c in synsets))


def test_uncompressed_tar_and_subdir(samples, tmp_path):
    subset = dict(sorted(samples.items())[:6])
    files = {f"set/train/{k}": v for k, v in subset.items()}
    files.update({f"set/val/{k}": v for k, v in list(subset.items())[:2]})
    files["set/README.txt"] = b"not in a class folder"
    files["._junk"] = b"macOS resource fork"
    tar = make_tar(tmp_path / "set.tar", files)
    with pytest.raises(UserError, match="--subdir"):
        prepare_dataset(tar, tmp_path / "out", workers=1, progress=False)
    ds = prepare_dataset(tar, tmp_path / "out", subdir="set/train", workers=2, shard_size=2, progress=False)
    assert len(ds) == 6 and ds.meta["found"] == 6
    folder = prepare_dataset(write_folder(tmp_path / "f", subset), tmp_path / "fo", workers=1, progress=False)
    assert [ds.path_of(i) for i in range(6)] == [folder.path_of(i) for i in range(6)]
    np.testing.assert_array_equal(ds.labels, folder.labels)
    for i in range(6):
        np.testing.assert_array_equal(ds.get_uint8(i), folder.get_uint8(i))


def test_compressed_tar_is_read_in_archive_order(samples, tmp_path):
    from alexnet.data.sources import open_source

    subset = dict(sorted(samples.items())[:6][::-1])  # the archive holds the files in reverse order
    tar = make_tar(tmp_path / "r.tar.gz", {f"top/{k}": v for k, v in subset.items()}, mode="w:gz")
    src = open_source(tar)
    assert src.sequential and src.keys == list(subset)  # streamed front to back, shards fill in turn
    ds = prepare_dataset(tar, tmp_path / "out", workers=2, shard_size=2, progress=False)
    assert len(ds) == 6 and [c["wnid"] for c in ds.classes] == sorted(k.split("/")[0] for k in subset)
    for i in range(6):
        assert ds.classes[ds.labels[i]]["wnid"] == ds.path_of(i).split("/")[0]
        dist = {k: np.abs(ds.get_uint8(i).astype(int) - preprocess(v).astype(int)).mean()
                for k, v in subset.items()}
        assert min(dist, key=dist.get) == ds.path_of(i) and dist[ds.path_of(i)] < 8  # the right picture


def test_label_list_layout(samples, synsets, tmp_path):
    items = sorted(samples.items())[:5]
    src = tmp_path / "flat"
    src.mkdir()
    index = {c["wnid"]: c["index"] for c in synsets}
    lines = []
    for k, v in items:
        name = k.split("/")[1]
        (src / name).write_bytes(v)
        lines.append(f"{name} {index[k.split('/')[0]]}")
    lines.append("missing file.JPEG 3")  # listed but absent: skipped, with a space in the name
    (tmp_path / "val.txt").write_text("\n".join(lines) + "\n")
    write_synsets(tmp_path / "syn.txt", synsets)
    ds = prepare_dataset(src, tmp_path / "out", labels_file=tmp_path / "val.txt",
                         classes_file=tmp_path / "syn.txt", workers=1, progress=False)
    assert len(ds) == 5 and ds.meta["found"] == 6
    assert ds.meta["skipped"][0]["path"] == "missing file.JPEG"
    assert ds.labels.tolist() == [index[k.split("/")[0]] for k, _ in items]
    assert ds.meta["layout"] == "labels" and len(ds.classes) == 1000
    # without --classes: classes are the indices 0..max
    ds2 = prepare_dataset(src, tmp_path / "out2", labels_file=tmp_path / "val.txt", workers=1, progress=False)
    assert len(ds2.classes) == max(ds.labels) + 1


# --------------------------------------------------------------------------- layout 2: ILSVRC-2012

def _fake_ilsvrc(root, samples):
    """Tiny official-format files: devkit (meta.mat with a non-leaf synset, IDs not in wnid order,
    validation ground truth), a train tar of per-class tars, a flat val tar."""
    import scipy.io

    wnids = ["n01443537", "n01440764", "n01484850"]  # IDs 1, 2, 3: not the sorted order
    names = ["goldfish, Carassius auratus", "tench, Tinca tinca", "great white shark, white shark"]
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images"]
    rows = [(i + 1, wnids[i], names[i], "a fish", 0, np.zeros(0), 0, 2) for i in range(3)]
    rows.append((1001, "n00000001", "fish", "a parent synset", 3, np.array([1, 2, 3]), 1, 0))
    synsets = np.empty(len(rows), dtype=[(f, object) for f in fields])
    for i, r in enumerate(rows):
        synsets[i] = r
    mat = io.BytesIO()
    scipy.io.savemat(mat, {"synsets": synsets})
    pics = list(samples.values())
    val_ids = [2, 1, 3, 2]  # ground truth of val images 1..4 (sorted file names)
    make_tar(root / "ILSVRC2012_devkit_t12.tar.gz", {
        "ILSVRC2012_devkit_t12/data/meta.mat": mat.getvalue(),
        "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt":
            "".join(f"{i}\n" for i in val_ids).encode()}, mode="w:gz")
    inner = {}
    for c, w in enumerate(wnids):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            for j in range(2):
                data = pics[3 * c + j]
                info = tarfile.TarInfo(f"{w}_{j}.JPEG")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        inner[f"{w}.tar"] = buf.getvalue()
    make_tar(root / "ILSVRC2012_img_train.tar", inner)
    # val images listed out of order in the tar: labels follow the sorted names
    make_tar(root / "ILSVRC2012_img_val.tar", {f"ILSVRC2012_val_{i:08d}.JPEG": pics[20 + i] for i in (3, 1, 4, 2)})
    return wnids, val_ids


def test_ilsvrc2012_matches_torchvision_imagenet(samples, tmp_path, monkeypatch):
    pytest.importorskip("scipy")
    import shutil

    import torchvision.datasets.imagenet as tvi

    monkeypatch.setattr(tvi, "_verify_archive", lambda *a, **k: None)  # the MD5s are of the real files
    src = tmp_path / "ilsvrc"
    src.mkdir()
    _fake_ilsvrc(src, samples)
    train = prepare_dataset(src, tmp_path / "train", workers=2, progress=False)
    val = prepare_dataset(src / "ILSVRC2012_img_val.tar", tmp_path / "val", workers=1, progress=False)
    assert len(train) == 6 and len(val) == 4 and train.meta["layout"] == "ilsvrc2012"
    assert "val" in val.meta["source"]

    # torchvision's own ImageNet dataset on a copy of the same files (it extracts them)
    tv_root = tmp_path / "tv"
    shutil.copytree(src, tv_root)
    for split, ours in (("train", train), ("val", val)):
        tv = tvi.ImageNet(str(tv_root), split=split)
        assert [c["wnid"] for c in ours.classes] == tv.wnids
        assert [tuple(c["name"].split(", ")) for c in ours.classes] == tv.classes
        tv_labels = {os.path.relpath(p, tv_root / split).replace(os.sep, "/"): y for p, y in tv.samples}
        if split == "val":
            tv_labels = {k.split("/")[1]: y for k, y in tv_labels.items()}
        assert {ours.path_of(i): int(ours.labels[i]) for i in range(len(ours))} == tv_labels


# --------------------------------------------------------------------------- resume after interruption

def _interrupt_after_three_shards(monkeypatch):
    """Make prepare's shard writer raise KeyboardInterrupt (a Ctrl-C) at its fourth shard; returns the real
    writer (to put back) and the list of chunks written."""
    real = prepare_mod._write_shard
    calls = []

    def dies_after_three(task):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(task["chunk"])
        return real(task)

    monkeypatch.setattr(prepare_mod, "_write_shard", dies_after_three)
    return real, calls


def test_interrupted_prepare_resumes(samples, tmp_path, monkeypatch):
    src = write_folder(tmp_path / "src", dict(sorted(samples.items())[:10]))
    out = tmp_path / "out"
    real, calls = _interrupt_after_three_shards(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(src, out, shard_size=2, workers=1, progress=False)
    assert not (out / META).exists() and (out / PARTIAL).is_dir()
    with pytest.raises(UserError, match="unfinished"):
        PreparedDataset(out)
    done_mtime = {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("*.jpegs")}
    assert len(done_mtime) == 3
    calls.clear()
    monkeypatch.setattr(prepare_mod, "_write_shard", lambda task: calls.append(task["chunk"]) or real(task))
    ds = prepare_dataset(src, out, shard_size=2, workers=1, progress=False)
    assert sorted(calls) == [3, 4]  # only the missing shards were written
    assert {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("*.jpegs")
            if p.name in done_mtime} == done_mtime
    assert not (out / PARTIAL).exists() and len(ds) == 10
    fresh = prepare_dataset(src, tmp_path / "fresh", shard_size=2, workers=1, progress=False)
    np.testing.assert_array_equal(ds.labels, fresh.labels)
    np.testing.assert_array_equal(ds.mean_image, fresh.mean_image)
    assert ds.meta["pca_eigval"] == fresh.meta["pca_eigval"]
    # the same command once more: nothing to do; other settings: refused unless --overwrite
    calls.clear()
    prepare_dataset(src, out, shard_size=2, workers=1, progress=False)
    assert calls == []
    with pytest.raises(UserError, match="overwrite"):
        prepare_dataset(src, out, size=128, workers=1, progress=False)
    assert PreparedDataset(out).size == 256
    assert prepare_dataset(src, out, size=128, overwrite=True, workers=1, progress=False).size == 128


# --------------------------------------------------------------------------- errors and the CLI

def run_cli(argv, capsys=None):
    import contextlib
    import io as _io
    out, err = _io.StringIO(), _io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


def test_cli_errors_are_one_line(tmp_path, samples):
    flat = write_folder(tmp_path / "flat", {"x.JPEG": next(iter(samples.values()))})
    (tmp_path / "afile").write_text("x")
    (tmp_path / "empty").mkdir()
    cases = [
        (["prepare", str(tmp_path / "missing"), str(tmp_path / "o")], "SRC not found"),
        (["prepare", str(tmp_path / "afile"), str(tmp_path / "o")], "not a tar archive"),
        (["prepare", str(tmp_path / "empty"), str(tmp_path / "o")], "empty"),
        (["prepare", str(flat), str(tmp_path / "o")], "--labels"),
        (["prepare", str(flat.parent), str(tmp_path / "afile" / "out")], "not writable"),
        (["prepare", str(flat.parent), str(tmp_path / "o"), "--quality", "0"], "quality"),
        (["prepare", str(flat.parent), str(tmp_path / "o"), "--classes", str(tmp_path / "nope.txt")],
         "classes file not found"),
    ]
    for argv, message in cases:
        code, out, err = run_cli(argv)
        assert code == 2, argv
        assert err.count("\n") == 1 and err.startswith("alexnet prepare: error:") and message in err, err
        assert "Traceback" not in err


def test_unknown_class_folder_is_an_error(samples, synsets, tmp_path):
    src = write_folder(tmp_path / "src", {"not_a_wnid/x.JPEG": next(iter(samples.values()))})
    write_synsets(tmp_path / "syn.txt", synsets)
    with pytest.raises(UserError, match="not_a_wnid"):
        prepare_dataset(src, tmp_path / "out", classes_file=tmp_path / "syn.txt", progress=False)


def test_opening_what_is_not_a_dataset(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="not found"):
        PreparedDataset(tmp_path / "nothing")
    with pytest.raises(UserError, match="no meta.json"):
        PreparedDataset(tmp_path)
    # images given where a prepared dataset is expected: the prepare command for them, named after them
    photos = tmp_path / "my photos"
    photos.mkdir()
    with pytest.raises(UserError) as e:
        PreparedDataset(photos)
    assert str(e.value).endswith(f"make one with: alexnet prepare '{photos}' 'data/my photos' "
                                 "(then use 'data/my photos')"), str(e.value)
    archive = tmp_path / "imagenette-train.tar.gz"
    archive.write_bytes(b"")
    with pytest.raises(UserError, match=r"make one with: alexnet prepare \S+imagenette-train.tar.gz "
                                        r"data/imagenette-train \(then use data/imagenette-train\)$"):
        PreparedDataset(archive)
    other = tmp_path / "weights.pt"
    other.write_bytes(b"")
    with pytest.raises(UserError, match="make one with: alexnet prepare SRC OUT$"):
        PreparedDataset(other)
    # images already in data/NAME: the hint does not prepare them into their own folder
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "birds").mkdir(parents=True)
    with pytest.raises(UserError, match=r"alexnet prepare data/birds data/birds-prepared \(then use "
                                        r"data/birds-prepared\)$"):
        PreparedDataset("data/birds")
    # where the suggested OUT exists already: no OUT named (prepare would refuse it)
    (tmp_path / "data" / "birds-prepared").mkdir()
    with pytest.raises(UserError, match=r"make one with: alexnet prepare data/birds OUT$"):
        PreparedDataset("data/birds")
    # a training run's folder given as data: said so, not a prepare command for it
    run = tmp_path / "runs" / "demo"
    run.mkdir(parents=True)
    (run / "weights.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match=r"alexnet prepare SRC OUT; this folder is a training run's \(give it "
                                        r"to --weights, or to --resume to continue it\)$"):
        PreparedDataset(run)


def test_meta_json_is_plain_json(prepared_samples):
    meta = json.loads((prepared_samples.path / META).read_text())
    assert meta["classes"][0] == {"index": 0, "wnid": "n01440764", "name": "tench, Tinca tinca"}
    assert len(meta["pca_eigvec"]) == 3 and all(len(r) == 3 for r in meta["pca_eigvec"])


# --------------------------------------------------------------------------- Imagenette (the command)

@pytest.mark.slow
def test_imagenette_with_synset_classes(shared_data, tmp_path):
    code, out, err = run_cli(["prepare", str(shared_data / "imagenette-train.tar.gz"), str(tmp_path / "inet"),
                              "--classes", str(shared_data / "synset_words.txt"), "--no-progress"])
    assert code == 0, err
    assert "9469 images, 0 skipped, 9469 found" in out
    ds = PreparedDataset(tmp_path / "inet")
    assert len(ds) == 9469 and len(ds.classes) == 1000
    assert sorted(set(ds.labels.tolist())) == IMAGENETTE_INDICES
    counts = np.bincount(ds.labels, minlength=1000)[IMAGENETTE_INDICES]
    assert counts.sum() == 9469 and counts.min() > 800
    assert np.all(np.diff(ds.pca_eigval) <= 0) and abs(ds.pca_eigvec[:, 0] @ IMAGENET_PCA_EIGVEC[:, 0]) > 0.98


@pytest.mark.parametrize("size", ["99999999", "4097", "7"])
def test_a_size_out_of_bounds_is_refused_before_anything_is_written(tmp_path, size):
    """--size 99999999 once asked numpy for 213 PiB after making OUT/.partial and OUT/shards."""
    write_folder(tmp_path / "src", {"a/x.png": _png(20)})
    code, out, err = run_cli(["prepare", str(tmp_path / "src"), str(tmp_path / "out"), "--size", size,
                              "--no-progress"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "size must be an integer in 8..4096" in err, err
    assert not (tmp_path / "out").exists()
    with pytest.raises(UserError, match="size must be"):
        prepare_dataset(tmp_path / "src", tmp_path / "out", size=True, workers=1, progress=False)


def _png(side: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((side, side, 3), 90, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------- a user walkthrough's findings

def test_files_beside_the_class_folders_are_found_and_skipped(tmp_path):
    """They were ignored silently: neither in 'found' nor listed as skipped."""
    src = write_folder(tmp_path / "src", {"a/x.png": _png(20), "b/y.png": _png(20), "loose.png": _png(20),
                                          "README.txt": b"notes", ".hidden": b"not a file anyone means"})
    code, out, err = run_cli(["prepare", str(src), str(tmp_path / "out"), "--workers", "1", "--no-progress"])
    assert code == 0, err
    assert "2 images, 2 skipped, 4 found" in out
    code, out, err = run_cli(["prepare", str(src), str(tmp_path / "out2"), "--workers", "1"])
    assert "found 4 files in 2 classes" in out + err and "2 of them left out before decoding" in out + err
    assert "skipped README.txt: not in a class folder" in err and "skipped loose.png: not in a class folder" in err
    # the same tree in a tar: files directly in SUBDIR (or at the top, beside the class folders) likewise
    tar = make_tar(tmp_path / "s.tar.gz", {f"set/{k}": (src / k).read_bytes() for k in
                                           ("a/x.png", "b/y.png", "loose.png")}, mode="w:gz")
    ds = prepare_dataset(tar, tmp_path / "t", subdir="set", workers=1, progress=False)
    assert ds.meta["found"] == 3 and ds.meta["skipped"] == [{"path": "loose.png", "reason": "not in a class folder"}]
    top = make_tar(tmp_path / "top.tar", {k: (src / k).read_bytes() for k in ("a/x.png", "b/y.png", "loose.png")})
    assert prepare_dataset(top, tmp_path / "t2", workers=1, progress=False).meta["found"] == 3


def test_classes_file_of_names_tabs_and_a_bom(tmp_path):
    """Each of these failed with 'class folder(s) ... are not in the classes file'."""
    src = write_folder(tmp_path / "src", {"chain saw/x.png": _png(20), "tench/y.png": _png(20)})
    cases = {
        "names.txt": "chain saw\ntench\nEnglish springer\n",  # one class name per line, with spaces
        "tabs.txt": "n03000684\tchain saw\nn01440764\ttench\nn02102040\tEnglish springer\n",  # id<TAB>name
        "bom.txt": "\ufeffchain saw\ntench\nEnglish springer\n",  # a Windows editor's byte order mark
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        ds = prepare_dataset(src, tmp_path / name.replace(".", "_"), classes_file=tmp_path / name, workers=1,
                             progress=False)
        assert [c["name"] for c in ds.classes] == ["chain saw", "tench", "English springer"], name
        assert {ds.path_of(i): int(ds.labels[i]) for i in range(2)} == {"chain saw/x.png": 0, "tench/y.png": 1}
    assert [c["wnid"] for c in read_synsets(tmp_path / "tabs.txt")] == ["n03000684", "n01440764", "n02102040"]
    assert read_synsets(tmp_path / "bom.txt")[0]["wnid"] == "chain"  # the synset reading: id, then name
    # a mismatch shows what the file was read as
    (tmp_path / "other.txt").write_text("n01 goldfish\nn02 shark\n")
    with pytest.raises(UserError) as e:
        prepare_dataset(src, tmp_path / "o", classes_file=tmp_path / "other.txt", progress=False)
    assert "chain saw, tench" in str(e.value) and "id 'n01' name 'goldfish'" in str(e.value), str(e.value)
    assert not (tmp_path / "o").exists()


def test_classes_file_formats_that_worked_still_read_the_same(shared_data, tmp_path):
    syn = read_synsets(shared_data / "synset_words.txt")
    assert syn[0] == {"index": 0, "wnid": "n01440764", "name": "tench, Tinca tinca"} and len(syn) == 1000
    (tmp_path / "ids.txt").write_text("b\na\n")  # plain one id per line
    assert read_synsets(tmp_path / "ids.txt") == [{"index": 0, "wnid": "b", "name": "b"},
                                                   {"index": 1, "wnid": "a", "name": "a"}]
    src = write_folder(tmp_path / "src", {"a/x.png": _png(20), "b/y.png": _png(20)})
    ds = prepare_dataset(src, tmp_path / "out", classes_file=tmp_path / "ids.txt", workers=1, progress=False)
    assert [ds.classes[i]["wnid"] for i in ds.labels] == ["a", "b"]
    # a folder named by a synset's name matches that line (the id wins where both could); a name two
    # lines share matches neither: "crane" is a bird and a machine in synset_words.txt
    from alexnet.data.classes import read_class_file

    cf = read_class_file(shared_data / "synset_words.txt")
    classes, index = cf.match(["n01440764", "goldfish, Carassius auratus"], "src")
    assert classes == syn and index == {"n01440764": 0, "goldfish, Carassius auratus": 1}
    with pytest.raises(UserError, match="both match line 1"):   # two folders of one class: not merged silently
        cf.match(["n01440764", "tench, Tinca tinca"], "src")
    with pytest.raises(UserError, match="crane"):
        cf.match(["crane"], "src")
    (tmp_path / "dup.txt").write_text("n01 a\nn01 b\n")
    with pytest.raises(UserError, match="already listed on line 1"):
        read_synsets(tmp_path / "dup.txt")


def test_a_resumed_prepare_says_what_this_run_did(tmp_path, monkeypatch):
    """It printed the whole dataset's count and the workers asked for: 'wrote 9469 images in 3.1s
    (13 shards, 2 workers)' after 24 of 37 shards were kept; '(1 shards, 1000 workers)'."""
    src = write_folder(tmp_path / "src", {f"{c}/{i}.png": _png(20) for c in "ab" for i in range(5)})
    real, calls = _interrupt_after_three_shards(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(src, tmp_path / "out", size=16, shard_size=2, workers=1, progress=False)
    monkeypatch.setattr(prepare_mod, "_write_shard", real)
    said = []
    prepare_dataset(src, tmp_path / "out", size=16, shard_size=2, workers=1000, progress=False, log=said.append)
    assert said[-1].startswith("wrote 4 images (2 shards) in ") and said[-1].endswith(
        " with 2 workers; kept 6 images (3 shards) from before"), said
    said.clear()
    prepare_dataset(src, tmp_path / "one", size=16, workers=1000, progress=False, log=said.append)
    assert said[-1].startswith("wrote 10 images (1 shard) in ") and said[-1].endswith(" in this process"), said


def test_a_failed_prepare_leaves_nothing_it_made(tmp_path, capsys):
    """A missing SRC, a bad --classes file or images that all fail to decode left an empty OUT (or
    OUT/.partial and OUT/shards) behind."""
    src = write_folder(tmp_path / "src", {"a/x.png": b"not an image", "b/y.png": b""})
    good = write_folder(tmp_path / "good", {"a/x.png": _png(20)})
    (tmp_path / "bad.txt").write_text("a\n\nb\n")
    cases = [
        ([str(tmp_path / "missing"), str(tmp_path / "new" / "out")], "SRC not found"),
        ([str(good), str(tmp_path / "new" / "out"), "--classes", str(tmp_path / "bad.txt")], "empty line"),
        ([str(good), str(tmp_path / "new" / "out"), "--classes", str(tmp_path / "nope.txt")], "not found"),
        ([str(src), str(tmp_path / "new" / "out")], "none of the 2 files found could be decoded"),
    ]
    for argv, needle in cases:
        code, out, err = run_cli(["prepare", *argv, "--workers", "1", "--no-progress"])
        assert code == 2 and needle in err, err
        assert not (tmp_path / "new").exists(), argv
    # an OUT that was there stays, with what it held; only what the prepare made goes
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    code, out, err = run_cli(["prepare", str(src), str(tmp_path / "mine"), "--workers", "1", "--no-progress"])
    assert code == 2 and sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


def test_an_empty_src_and_a_split_that_does_not_apply_are_refused(tmp_path, monkeypatch):
    src = write_folder(tmp_path / "src", {"a/x.png": _png(20)})
    (tmp_path / "ILSVRC2012_img_val.tar").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    cases = [
        (["", "out"], "SRC must name a folder or an archive, got an empty path"),
        ([str(src), "out", "--split", "val"], "--split applies only to the ILSVRC-2012 files"),
        ([str(tmp_path / "ILSVRC2012_img_val.tar"), "out", "--split", "train"], "contradicts"),
    ]
    for argv, needle in cases:
        code, out, err = run_cli(["prepare", *argv, "--no-progress"])
        assert code == 2 and len(err.splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "out").exists()


def test_an_interrupted_prepare_says_how_to_resume(tmp_path, monkeypatch):
    src = write_folder(tmp_path / "src", {f"a/{i}.png": _png(20) for i in range(6)})
    real = prepare_mod._write_shard
    calls = []

    def dies_after_one(task):
        if calls:
            raise KeyboardInterrupt
        calls.append(task["chunk"])
        return real(task)

    monkeypatch.setattr(prepare_mod, "_write_shard", dies_after_one)
    argv = ["prepare", str(src), str(tmp_path / "out"), "--shard-size", "2", "--workers", "1", "--no-progress"]
    code, out, err = run_cli(argv)
    assert code == 130
    assert err.strip() == (f"alexnet prepare: interrupted (SIGINT); 1 finished shard kept in {tmp_path / 'out'}; "
                           "run the same command again to resume (it writes only the rest)"), err
    calls.clear()
    monkeypatch.setattr(prepare_mod, "_write_shard", lambda task: (_ for _ in ()).throw(KeyboardInterrupt))
    code, out, err = run_cli(["prepare", str(src), str(tmp_path / "o2"), "--workers", "1", "--no-progress"])
    assert code == 130 and "nothing kept" in err and "run the same command again" in err, err
    assert not (tmp_path / "o2").exists()
    # SIGTERM (a scheduler's stop) says the same, with its own exit code (it printed nothing)
    from alexnet.cli.common import Terminated

    monkeypatch.setattr(prepare_mod, "_write_shard", lambda task: (_ for _ in ()).throw(Terminated()))
    code, out, err = run_cli(["prepare", str(src), str(tmp_path / "o3"), "--workers", "1", "--no-progress"])
    assert code == 143 and "interrupted (SIGTERM)" in err and "run the same command again" in err, err


def test_a_failure_after_the_dataset_is_finished_keeps_it(tmp_path):
    """The review: a Ctrl-C (or a broken pipe) in the last log line of a fresh prepare deleted the finished
    dataset's shards, leaving a meta.json that a re-run took for done."""
    src = write_folder(tmp_path / "src", {f"{c}/{i}.png": _png(20) for c in "ab" for i in range(3)})

    def log(msg):
        if msg.startswith("wrote"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(src, tmp_path / "out", size=16, workers=1, progress=False, log=log)
    ds = PreparedDataset(tmp_path / "out")
    assert len(ds) == 6 and ds.get_uint8(5).shape == (16, 16, 3)


def test_files_not_read_do_not_change_the_datasets_settings(tmp_path):
    """A dataset prepared before loose files were listed as skipped stays 'this dataset' on a re-run."""
    src = write_folder(tmp_path / "src", {f"{c}/{i}.png": _png(20) for c in "ab" for i in range(3)})
    first = prepare_dataset(src, tmp_path / "out", size=16, workers=1, progress=False)
    (src / "README.txt").write_text("notes")                    # a loose file: listed, not read
    said = []
    again = prepare_dataset(src, tmp_path / "out", size=16, workers=1, progress=False, log=said.append)
    assert len(again) == len(first) and any("nothing to do" in m for m in said), said


def test_classes_file_never_merges_two_folders_and_reads_single_word_names(tmp_path):
    """The review: 'id<TAB>name' lines with folders 001, cat, 002 put 001 and cat into one class; a file of
    names 'tiger shark', 'shark', 'tiger' was refused as a duplicate id 'tiger'."""
    from alexnet.data.classes import read_class_file

    ids = tmp_path / "ids.txt"
    ids.write_text("001\tcat\n002\tdog\n")
    with pytest.raises(UserError, match="'001' and 'cat' in SRC both match line 1"):
        read_class_file(ids).match(["001", "cat", "002"], "SRC")
    names = tmp_path / "names.txt"
    names.write_text("tiger shark\nshark\ntiger\n")
    classes, mapping = read_class_file(names).match(["shark", "tiger"], "SRC")
    assert (mapping["shark"], mapping["tiger"]) == (1, 2) and [c["name"] for c in classes][0] == "tiger shark"


def test_a_tar_of_a_folder_reads_as_the_folder(tmp_path):
    """A walkthrough: `tar czf mine.tar.gz mine` of a folder `prepare` read fine (a file beside the class
    folders, a nested folder in a class) was refused ("class folders in more than one place"), and a
    nested folder's files would have become a class of their own."""
    files = {"tench fish/a.png": _png(20), "tench fish/b.png": _png(21), "golf ball/c.png": _png(22),
             "golf ball/nested/d.png": _png(23), "golf ball/nested/deeper/e.png": _png(24), "beside.png": _png(25)}
    folder = prepare_dataset(write_folder(tmp_path / "mine", files), tmp_path / "f", size=16, workers=1,
                             progress=False)
    for name, members in (("wrapped", {f"mine/{k}": v for k, v in files.items()}),
                          ("deeper", {f"home/me/mine/{k}": v for k, v in files.items()}),
                          ("flat", dict(files))):
        ds = prepare_dataset(make_tar(tmp_path / f"{name}.tar.gz", members, mode="w:gz"), tmp_path / name, size=16,
                             workers=1, progress=False)
        assert [c["name"] for c in ds.classes] == [c["name"] for c in folder.classes] == ["golf ball", "tench fish"]
        def items(d):  # (a compressed archive is stored in its own order)
            return sorted((d.path_of(i), int(d.labels[i]), d.get_uint8(i).tobytes()) for i in range(len(d)))

        assert items(ds) == items(folder)
        assert ds.meta["found"] == folder.meta["found"] == 6 and len(ds.meta["skipped"]) == 1
        assert ds.meta["skipped"][0]["path"].endswith("beside.png")
    # one folder of images in a wrapper: that folder is the class (as a folder SRC holding it)
    one = prepare_dataset(make_tar(tmp_path / "one.tar", {"set/cats/a.png": _png(20), "set/cats/b.png": _png(21)}),
                          tmp_path / "one", size=16, workers=1, progress=False)
    assert [c["name"] for c in one.classes] == ["cats"] and len(one) == 2
    # splits are still refused, naming a folder to pick
    splits = {"set/train/a/x.png": _png(20), "set/train/b/y.png": _png(20), "set/val/a/z.png": _png(20)}
    with pytest.raises(UserError, match=r"more than one place .* --subdir \(e.g. --subdir set/train\)"):
        prepare_dataset(make_tar(tmp_path / "splits.tar", splits), tmp_path / "s", workers=1, progress=False)
