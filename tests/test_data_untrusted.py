"""A prepared dataset is user input: a damaged or hostile meta.json, index or labels file is refused in one
line before anything is read through it (issue 12: "Untrusted metadata and datasets")."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from alexnet.cli.main import main
from alexnet.data import PreparedDataset, prepare_dataset
from alexnet.errors import UserError


@pytest.fixture(scope="module", params=["jpeg", "raw"])
def good(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"untrusted-{request.param}")
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / "src" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(root / "src" / c / f"{i}.jpg")
    prepare_dataset(root / "src", root / "ok", size=32, format=request.param, workers=1, progress=False)
    return root / "ok"


def _copy(good, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    return bad


def _edit_meta(path, change):
    meta = json.loads((path / "meta.json").read_text())
    change(meta)
    (path / "meta.json").write_text(json.dumps(meta))


def _refused(path, needle):
    with pytest.raises(UserError) as e:
        PreparedDataset(path)
    message = str(e.value)
    assert "\n" not in message and "damaged" in message and needle in message, message
    return message


def test_the_good_dataset_opens(good):
    ds = PreparedDataset(good)
    assert len(ds) == 6 and ds.get_uint8(5).shape == (32, 32, 3)


@pytest.mark.parametrize("change,needle", [
    (lambda m: m.pop("classes"), "classes"),
    (lambda m: m.update(classes=[]), "classes"),
    (lambda m: m.update(classes=["a", "b"]), "classes"),
    (lambda m: m.update(size="abc"), "size"),
    (lambda m: m.update(size=10**9), "size"),
    (lambda m: m.update(count=-1), "count"),
    (lambda m: m.update(count=10**12), "count"),
    (lambda m: m.update(format="png"), "format"),
    (lambda m: m.update(shards=[]), "add up"),
    (lambda m: m.update(shards="x"), "shards"),
    (lambda m: m.update(mean_rgb=[1, 2]), "mean_rgb"),
    (lambda m: m.update(pca_eigvec=[[1, 2, 3]] * 3 + [[0, 0, float("nan")]]), "pca_eigvec"),
    (lambda m: m.update(num_classes=0), "num_classes"),
    (lambda m: m.update(num_classes="2"), "num_classes"),
    (lambda m: m.update(num_classes=3), "num_classes"),
    (lambda m: m.update(std_rgb=[-1, 1, 1]), "std_rgb must lie in 0..255"),
    (lambda m: m.update(pca_eigval=[-1e300, 1e300, 0]), "pca_eigval must lie in"),
    (lambda m: m.update(mean_rgb=[300, 0, 0]), "mean_rgb must lie in 0..255"),
    (lambda m: m["classes"][0].update(wnid=["x"]), "wnid must be text or null"),
])
def test_bad_meta_fields_are_refused_in_one_line(good, tmp_path, change, needle):
    bad = _copy(good, tmp_path)
    _edit_meta(bad, change)
    _refused(bad, needle)


def test_a_format_version_of_true_is_not_version_1(good, tmp_path):
    bad = _copy(good, tmp_path)
    _edit_meta(bad, lambda m: m.update(format_version=True))  # True == 1 in Python
    with pytest.raises(UserError, match="dataset format version True is not supported"):
        PreparedDataset(bad)


def test_meta_json_that_is_not_a_mapping(good, tmp_path):
    bad = _copy(good, tmp_path)
    (bad / "meta.json").write_text("[]")
    _refused(bad, "not a mapping")


@pytest.mark.parametrize("target", ["../../../../../../etc/passwd", "/etc/passwd", "."])
def test_a_shard_outside_the_dataset_is_never_opened(good, tmp_path, target):
    bad = _copy(good, tmp_path)

    def point_outside(meta):
        meta["shards"][0]["file"] = target

    _edit_meta(bad, point_outside)
    _refused(bad, "outside the dataset directory")


def test_labels_out_of_range_are_refused(good, tmp_path):
    bad = _copy(good, tmp_path)
    labels = np.load(bad / "labels.npy")
    labels[0] = 7  # two classes
    np.save(bad / "labels.npy", labels)
    _refused(bad, "labels must lie in 0..1")


def test_an_index_past_the_end_of_its_shard_is_refused(good, tmp_path):
    bad = _copy(good, tmp_path)
    with np.load(bad / "index.npz") as z:
        index = {k: z[k].copy() for k in z.files}
    if "offset" in index:
        index["offset"][-1] += 10**6
    else:
        index["local"][-1] += 10
    np.savez(bad / "index.npz", **index)
    _refused(bad, "past the end of a shard")


def test_train_on_a_hostile_dataset_is_one_line_and_exit_1(good, tmp_path, capsys):
    bad = _copy(good, tmp_path)
    _edit_meta(bad, lambda m: m["shards"][0].update(file="../../../../etc/passwd"))
    assert main(["train", "--data", str(bad), "--out", str(tmp_path / "run")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "outside the dataset directory" in err[0] and "Traceback" not in err[0], err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args,needle", [
    (["OUT_EMPTY"], "OUT must name a folder"),
    (["--workers", "-1"], "workers must be an integer >= 1"),
    (["--workers", "0"], "workers must be an integer >= 1"),
])
def test_prepare_refuses_an_empty_out_and_bad_worker_counts(tmp_path, capsys, monkeypatch, args, needle):
    src = tmp_path / "src" / "a"
    src.mkdir(parents=True)
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(src / "x.jpg")
    monkeypatch.chdir(tmp_path)
    out = "" if args == ["OUT_EMPTY"] else str(tmp_path / "out")
    rest = [] if args == ["OUT_EMPTY"] else args
    assert main(["prepare", str(tmp_path / "src"), out, *rest]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # nothing written anywhere


def _children(pid: int) -> list[int]:
    from pathlib import Path

    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    from pathlib import Path

    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status  # a zombie has exited


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="Linux: /proc and prctl")
def test_prepare_workers_die_with_a_killed_parent(shared_data, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    workers: list[int] = []
    proc = subprocess.Popen([sys.executable, "-m", "alexnet", "prepare", str(shared_data / "imagenette-train.tar.gz"),
                             str(tmp_path / "out"), "--workers", "2", "--format", "raw", "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and len(workers) < 2 and proc.poll() is None:
            workers = _children(proc.pid)
            time.sleep(0.2)
        assert len(workers) >= 2, "the workers never started"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 15
        while time.time() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.2)
        assert not any(_alive(w) for w in workers), "workers outlived their parent"
    finally:
        if proc.poll() is None:
            proc.kill()
        for w in workers:  # a worker that outlived its parent is no longer the parent's child
            try:
                os.kill(w, signal.SIGKILL)
            except OSError:
                pass


def _png_bomb(path, side=60_000):
    """A PNG whose header claims side x side RGB pixels (10.8 GB decoded), a few dozen bytes on disk."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_a_decompression_bomb_is_refused_by_predict_and_the_good_image_still_predicted(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    _png_bomb(folder / "bomb.png")
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(folder / "good.png")
    import alexnet
    from alexnet.weights import save_weights

    w = save_weights(tmp_path / "w.safetensors", alexnet.create_model("cifar_4layer").eval(),
                     classes=[{"index": i, "wnid": None, "name": f"c{i}"} for i in range(10)])
    code = main(["predict", "--weights", str(w), str(folder), "--json"])
    out, err = capsys.readouterr()
    doc = json.loads(out)  # stdout is the JSON answer alone
    assert code == 1 and doc["failed"] == 1  # something was skipped, and said so
    assert [p["image"].rsplit("/", 1)[-1] for p in doc["images"]] == ["good.png"], doc
    assert "bomb.png: image too large: 60000x60000" in err


def test_prepare_skips_a_decompression_bomb_with_its_reason(tmp_path):
    src = tmp_path / "src" / "a"
    src.mkdir(parents=True)
    _png_bomb(src / "bomb.png")
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(src / "good.png")
    ds = prepare_dataset(tmp_path / "src", tmp_path / "out", size=32, workers=1, progress=False)
    assert len(ds) == 1
    (skipped,) = ds.meta["skipped"]
    assert "bomb.png" in json.dumps(skipped) and "image too large" in json.dumps(skipped)


def test_a_symlink_loop_in_a_class_folder_lists_each_image_once(tmp_path, capsys):
    import os

    src = tmp_path / "src"
    for c in ("a", "b"):
        (src / c).mkdir(parents=True)
        Image.fromarray(np.full((20, 20, 3), 100, np.uint8)).save(src / c / "x.png")
    os.symlink(src / "a", src / "a" / "loop")  # a -> a -> a ...
    os.symlink(src / "a", src / "b" / "alias")  # class a's images again, under b
    assert main(["prepare", str(src), str(tmp_path / "out"), "--workers", "1", "--no-progress"]) == 0
    ds = PreparedDataset(tmp_path / "out")
    assert len(ds) == 2 and sorted(ds.labels.tolist()) == [0, 1]
    assert sorted(ds.meta["folders_listed_already"]) == ["a/loop", "b/alias"]
    assert "left out 2 folder(s)" in capsys.readouterr().err


def test_predict_counts_a_dangling_symlink_as_unreadable(tmp_path, capsys):
    import os

    import alexnet
    from alexnet.weights import save_weights

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(folder / "good.png")
    os.symlink(tmp_path / "gone.jpg", folder / "broken.jpg")
    w = save_weights(tmp_path / "w.safetensors", alexnet.create_model("cifar_4layer").eval(),
                     classes=[{"index": i, "wnid": None, "name": f"c{i}"} for i in range(10)])
    assert main(["predict", "--weights", str(w), str(folder), "--json"]) == 1
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["failed"] == 1 and len(doc["images"]) == 1 and "broken.jpg" in err


def test_a_16_bit_png_gives_the_same_pixels_in_prepare_and_predict(tmp_path):
    """16-bit images are scaled to 0..255 (not clipped to white) by both readers."""
    from alexnet.weights.preprocess import load_image

    src = tmp_path / "src" / "a"
    src.mkdir(parents=True)
    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)  # 0..65520
    Image.fromarray(ramp).save(src / "deep.png")
    assert Image.open(src / "deep.png").mode.startswith("I")
    ds = prepare_dataset(tmp_path / "src", tmp_path / "out", size=64, format="raw", workers=1, progress=False)
    prepared = ds.get_uint8(0)
    predicted = np.asarray(load_image(src / "deep.png"))
    assert prepared.mean() < 160 and prepared.min() < 10 and prepared.max() > 245  # a ramp, not white
    assert np.abs(prepared.astype(int) - predicted.astype(int)).max() <= 1


def test_a_zeroed_jpeg_in_a_shard_is_a_one_line_error_naming_the_image(tmp_path, capsys):
    from alexnet.data import Loader

    src = tmp_path / "src"
    rng = np.random.default_rng(1)
    for c in ("a", "b"):
        (src / c).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(src / c / f"{i}.jpg")
    ds = prepare_dataset(src, tmp_path / "ok", size=32, format="jpeg", workers=1, progress=False)
    shard = tmp_path / "ok" / ds.meta["shards"][0]["file"]
    data = bytearray(shard.read_bytes())
    off, length = int(ds._index["offset"][2]), int(ds._index["length"][2])
    data[off:off + length] = bytes(length)  # image 2 zeroed in place: the index still fits
    shard.write_bytes(bytes(data))
    loader = Loader(PreparedDataset(tmp_path / "ok"), 4, train=False, crop_size=32, workers=1)
    with pytest.raises(UserError, match=r"image 2 \(shard 0\) is damaged") as e:
        for _ in loader:
            pass
    assert "\n" not in str(e.value)
    loader.close()
    assert main(["train", "--data", str(tmp_path / "ok"), "--arch", "cifar_4layer", "--crop-size", "32",
                 "--batch-size", "4", "--epochs", "1", "--val-split", "0", "--out", str(tmp_path / "run")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is damaged" in err[0], err


@pytest.mark.parametrize("name,cut", [("index.npz", 0.5), ("index.npz", 0), ("labels.npy", 0), ("mean.npy", 0)])
def test_a_truncated_or_empty_array_file_is_refused_when_opened(good, tmp_path, name, cut):
    bad = _copy(good, tmp_path)
    data = (bad / name).read_bytes()
    (bad / name).write_bytes(data[:int(len(data) * cut)])
    _refused(bad, "damaged")


def test_an_empty_shard_is_one_damaged_line(good, tmp_path):
    bad = _copy(good, tmp_path)
    meta = json.loads((bad / "meta.json").read_text())
    (bad / meta["shards"][0]["file"]).write_bytes(b"")
    if meta["format"] == "jpeg":  # the index's byte ranges no longer fit: refused when opened
        _refused(bad, "past the end of a shard")
        return
    ds = PreparedDataset(bad)  # raw: refused when the shard is opened
    with pytest.raises(UserError) as e:
        ds.get_uint8(0)
    message = str(e.value)
    assert "\n" not in message and "damaged" in message and "shards/00000.npy" in message, message


def _zero_image(path, i):
    """Image ``i`` of the jpeg-format dataset at ``path`` overwritten with zeros (its index still fits)."""
    ds = PreparedDataset(path)
    shard = path / ds.meta["shards"][int(ds._index["shard"][i])]["file"]
    data = bytearray(shard.read_bytes())
    off, length = int(ds._index["offset"][i]), int(ds._index["length"][i])
    data[off:off + length] = bytes(length)
    shard.write_bytes(bytes(data))


def test_a_damaged_jpeg_reads_as_the_loaders_one_line_error_everywhere(good, tmp_path):
    """get_uint8 (evaluate, features, neighbours, the experiments) and the Loader: the same message."""
    from alexnet.data import Loader

    if PreparedDataset(good).format != "jpeg":
        pytest.skip("raw shards hold pixels, not JPEGs")
    bad = _copy(good, tmp_path)
    _zero_image(bad, 2)
    ds = PreparedDataset(bad)
    assert ds.get_uint8(1).shape == (32, 32, 3)  # the others still read
    with pytest.raises(UserError, match=r"image 2 \(shard 0\) is damaged") as by_get:
        ds.get_uint8(2)
    loader = Loader(ds, 2, train=False, crop_size=32, workers=1)
    with pytest.raises(UserError) as by_loader:
        loader._decode([2])
    loader.close()
    assert str(by_get.value) == str(by_loader.value) and "\n" not in str(by_get.value)
    assert "prepare it again" in str(by_get.value)


def _link_tree(root):
    """Class folders holding a hard link, symlinks to files and to a folder, and links that lead nowhere
    (dangling, a loop, an absolute path outside the tree)."""
    import os

    src = root / "src"
    for c in ("a", "b"):
        (src / c).mkdir(parents=True)
    for i, name in enumerate(("a/1.png", "a/2.png", "b/3.png")):
        Image.fromarray(np.full((20, 20, 3), 60 * i, np.uint8)).save(src / name)
    os.link(src / "a" / "1.png", src / "b" / "hard.png")
    os.symlink("../a/2.png", src / "b" / "sym.png")
    os.symlink("../a", src / "b" / "alias")  # a folder again: listed once
    os.symlink("missing.png", src / "b" / "gone.png")
    os.symlink("loop2.png", src / "b" / "loop1.png")
    os.symlink("loop1.png", src / "b" / "loop2.png")
    os.symlink("/nonexistent-alexnet-test/x.png", src / "b" / "abs.png")
    return src


@pytest.mark.parametrize("mode", ["w", "w:gz"])
def test_links_in_a_tar_are_read_as_in_the_folder(tmp_path, mode):
    """A tar kept only regular files: a hard-linked image was neither found nor skipped. Links that
    resolve inside the archive are read; the others are found and skipped with the reason."""
    import tarfile

    src = _link_tree(tmp_path)
    tar = tmp_path / ("src.tar" if mode == "w" else "src.tar.gz")
    with tarfile.open(tar, mode) as tf:
        tf.add(src, arcname="src")
    folder = prepare_dataset(src, tmp_path / "f", size=16, workers=1, progress=False)
    ds = prepare_dataset(tar, tmp_path / "t", size=16, workers=2, shard_size=2, progress=False)
    written = sorted(ds.path_of(i) for i in range(len(ds)))
    assert written == sorted(folder.path_of(i) for i in range(len(folder))) == [
        "a/1.png", "a/2.png", "b/3.png", "b/hard.png", "b/sym.png"]
    assert ds.meta["found"] == folder.meta["found"] == 9
    reasons = {s["path"]: s["reason"] for s in ds.meta["skipped"]}
    assert set(reasons) == {s["path"] for s in folder.meta["skipped"]}
    assert "not in the archive" in reasons["b/gone.png"] and "outside the archive" in reasons["b/abs.png"]
    assert "loop" in reasons["b/loop1.png"] and "loop" in reasons["b/loop2.png"]
    assert ds.meta["folders_listed_already"] == folder.meta["folders_listed_already"] == ["b/alias"]
    by_path = {folder.path_of(i): i for i in range(len(folder))}
    for i in range(len(ds)):  # each link read its target's bytes, under its own class
        j = by_path[ds.path_of(i)]
        np.testing.assert_array_equal(ds.get_uint8(i), folder.get_uint8(j))
        assert ds.labels[i] == folder.labels[j]


def test_a_long_chain_of_tar_links_is_a_loop(tmp_path):
    import io
    import tarfile

    from alexnet.data.sources import MAX_LINK_DEPTH, open_source

    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, "PNG")
    with tarfile.open(tmp_path / "c.tar", "w") as tf:
        info = tarfile.TarInfo("a/0.png")
        info.size = len(buf.getvalue())
        tf.addfile(info, io.BytesIO(buf.getvalue()))
        for i in range(1, MAX_LINK_DEPTH + 3):  # a/i.png -> a/(i-1).png
            info = tarfile.TarInfo(f"a/{i}.png")
            info.type, info.linkname = tarfile.SYMTYPE, f"{i - 1}.png"
            tf.addfile(info)
    source = open_source(tmp_path / "c.tar")
    assert len(source) + len(source.skipped) == MAX_LINK_DEPTH + 3
    assert len(source.skipped) == 2 and all("loop" in s["reason"] for s in source.skipped)


@pytest.mark.parametrize("src,out,needle", [
    ("m7", "m7/prepared", "is inside SRC"),
    ("m7", "m7", "SRC m7 is OUT"),
    ("m7", "m7/a/deeper", "is inside SRC"),
    ("m7", "link/deeper", "is inside SRC"),   # through a link to a folder inside SRC
])
def test_out_and_src_folders_apart(tmp_path, monkeypatch, capsys, src, out, needle):
    """OUT inside SRC was made before SRC was listed: an empty class 'prepared' shifted the indices, and a
    later prepare of SRC read the dataset's shards as images."""
    monkeypatch.chdir(tmp_path)
    for c in ("a", "b"):
        (tmp_path / src / c).mkdir(parents=True)
        Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / src / c / "x.png")
    (tmp_path / "link").symlink_to(tmp_path / src / "a")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    assert main(["prepare", src, out, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing created


def test_src_inside_out_is_fine_as_it_was(tmp_path):
    """Datasets were prepared into SRC's parent before (the listing never sees OUT's own files)."""
    for c in ("a", "b"):
        (tmp_path / "nest" / "train" / c).mkdir(parents=True)
        Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "nest" / "train" / c / "x.png")
    ds = prepare_dataset(tmp_path / "nest" / "train", tmp_path / "nest", size=16, workers=1, progress=False)
    assert len(ds) == 2


def test_a_symlinked_out_inside_src_is_refused(tmp_path, capsys):
    """SRC/prepared a link to a folder elsewhere: the listing follows it, so a re-run would read it as a class."""
    for c in ("a", "b"):
        (tmp_path / "src" / c).mkdir(parents=True)
        Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "src" / c / "x.png")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "src" / "prepared").symlink_to(tmp_path / "elsewhere")
    assert main(["prepare", str(tmp_path / "src"), str(tmp_path / "src" / "prepared"), "--no-progress"]) == 2
    assert "is inside SRC" in capsys.readouterr().err


def test_out_inside_src_beside_the_subdir_read_is_fine(tmp_path):
    for c in ("a", "b"):
        (tmp_path / "set" / "train" / c).mkdir(parents=True)
        Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "set" / "train" / c / "x.png")
    ds = prepare_dataset(tmp_path / "set", tmp_path / "set" / "prepared", subdir="train", size=16, workers=1,
                         progress=False)
    assert len(ds) == 2 and [c["wnid"] for c in ds.classes] == ["a", "b"]


def test_a_deep_member_path_costs_no_more_than_its_length(tmp_path):
    """The review: every prefix of every member path was kept (the square of a path's length): a 268-byte
    tar.gz with one 80,000-character path took 1.5 GB to list."""
    import io
    import tarfile
    import tracemalloc

    from alexnet.data.sources import _list_tar

    path = tmp_path / "deep.tar.gz"
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tf:
        for name in ("c0/" + "a/" * 5000 + "x.jpg", "c1/y.jpg"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tf.addfile(info, io.BytesIO(b"x"))
        link = tarfile.TarInfo("c1/to-folder.jpg")                 # a symlink to a folder the deep path implies
        link.type, link.linkname = tarfile.SYMTYPE, "../c0/a/a"
        tf.addfile(link)
    tracemalloc.start()
    listing = _list_tar(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(listing) == 3 and peak < 5_000_000, peak              # the prefixes alone were 25 MB
    assert [m.problem for m in listing if m.problem] == ["link to a folder"]


def test_a_thin_strip_is_refused_before_its_scaling_takes_the_memory(tmp_path):
    """A hostile-input audit: a 473-byte 1x100000 PNG made prepare grow to 23.6 GB (its shorter side scaled
    to 256: 256x25,600,000 pixels) and be killed; predict took 12.9 GB for a 1x1,000,000 one."""
    from alexnet.data.images import BadImage, preprocess

    src = tmp_path / "src" / "a"
    src.mkdir(parents=True)
    Image.new("RGB", (1, 100_000), "white").save(src / "strip.png")
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(src / "good.png")
    with pytest.raises(BadImage, match=r"image too thin: 1x100000 would be 256x25600000 pixels"):
        preprocess((src / "strip.png").read_bytes(), 256)
    ds = prepare_dataset(tmp_path / "src", tmp_path / "out", size=64, workers=1, progress=False)
    assert len(ds) == 1 and "image too thin" in json.dumps(ds.meta["skipped"])  # 64x6,400,000
    # predict: one unreadable image among the others (the review of this fix: it was an "unexpected" error)
    import alexnet

    model = alexnet.create_model("cifar_4layer").eval()
    with pytest.raises(UserError, match=r"strip.png: image too thin"):
        alexnet.predict(model, src / "strip.png")
    from alexnet.weights import save_weights

    w = save_weights(tmp_path / "w.safetensors", model, classes=[{"index": i, "wnid": None, "name": f"c{i}"}
                                                                for i in range(10)])
    assert main(["predict", "--weights", str(w), str(src), "--json"]) == 1
    # a squashed strip (--warp) is fine
    assert preprocess((src / "strip.png").read_bytes(), 256, warp=True).shape == (256, 256, 3)


def test_a_file_over_the_size_limit_is_skipped_unread(tmp_path, monkeypatch):
    """A hostile-input audit: a 3 MB tar.gz holding a 'JPEG' of 3 GiB of zeros took 6.8 GB to read."""
    import tarfile

    from alexnet.data import sources

    src = tmp_path / "src"
    for cls in ("a", "b"):
        (src / cls).mkdir(parents=True)
        Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(src / cls / "good.png")
    (src / "a" / "big.jpg").write_bytes(b"\0" * 5000)
    monkeypatch.setattr(sources, "MAX_FILE_BYTES", 4000)  # (the PNGs are a few hundred bytes)
    for name, mode in (("folder", None), ("set.tar", "w"), ("set.tar.gz", "w:gz")):
        given = src
        if mode:
            given = tmp_path / name
            with tarfile.open(given, mode) as tf:
                tf.add(src, arcname="set")
        ds = prepare_dataset(given, tmp_path / f"out-{name}", size=32, workers=1, progress=False)
        assert len(ds) == 2, name
        (skipped,) = ds.meta["skipped"]
        assert skipped["path"].endswith("big.jpg") and skipped["reason"] == \
            "file too large: 5,000 bytes, over the limit of 4,000", (name, skipped)


@pytest.mark.parametrize("name", ["meta.json", "labels.npy", "mean.npy", "index.npz"])
@pytest.mark.parametrize("kind", ["link out", "fifo"])
def test_a_dataset_file_that_is_a_link_out_or_a_fifo_is_refused(good, tmp_path, name, kind):
    """A hostile-input audit: labels.npy as a FIFO hung evaluate forever; each of these files could be a
    symlink to a file outside the dataset (shards were already checked)."""
    import os

    bad = _copy(good, tmp_path)
    outside = tmp_path / f"elsewhere-{name}"
    shutil.copyfile(bad / name, outside)  # the same bytes: only where they lie is wrong
    (bad / name).unlink()
    if kind == "fifo":
        os.mkfifo(bad / name)
    else:
        (bad / name).symlink_to(outside)
    if name == "meta.json" and kind == "fifo":  # (no meta.json file: not a dataset at all)
        with pytest.raises(UserError, match="is not a prepared dataset"):
            PreparedDataset(bad)
        return
    _refused(bad, f"{name} is not a file inside the dataset directory")


def test_files_txt_out_of_the_dataset_is_not_read(good, tmp_path):
    bad = _copy(good, tmp_path)
    (bad / "files.txt").unlink()
    (bad / "files.txt").symlink_to("/etc/passwd")
    with pytest.raises(UserError, match="files.txt is not a file inside the dataset directory"):
        PreparedDataset(bad).path_of(0)


def test_arrays_are_checked_by_their_headers_before_they_are_read(good, tmp_path):
    """A hostile-input audit: a 5.8 MB index.npz with an extra member of 6 GB of zeros was inflated whole
    (6.4 GB); a labels.npy declaring 10**11 entries ended in a MemoryError."""
    import zipfile

    bad = _copy(good, tmp_path)
    with zipfile.ZipFile(bad / "index.npz", "a", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("junk.npy", "w", force_zip64=True) as f:  # a member no reader needs: never inflated
            header = {"descr": "<i4", "fortran_order": False, "shape": (200_000_000,)}
            np.lib.format.write_array_header_1_0(f, header)
            for _ in range(100):
                f.write(b"\0" * 8_000_000)
    assert (bad / "index.npz").stat().st_size < 5_000_000
    ds = PreparedDataset(bad)  # opens: only the index's own arrays are read
    assert len(ds) == 6
    header = {"descr": "<i8", "fortran_order": False, "shape": (10**11,)}
    with open(bad / "labels.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(b"\0" * 48)
    _refused(bad, "labels.npy must hold 6 numbers, its header says 100000000000 of int64")
    np.save(bad / "labels.npy", np.zeros(6, np.int64))
    np.save(bad / "mean.npy", np.zeros((32, 32, 3), np.complex64))
    _refused(bad, "mean.npy must hold 32x32x3 numbers")
