"""fc7 features and nearest neighbours (the paper's Figure 4, right)."""

from __future__ import annotations

import json
import re
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

import alexnet
from alexnet.cli.main import main
from alexnet.inspect import load_features, nearest
from alexnet.weights import save_weights
from alexnet.weights.torchfile import default_preprocess


@pytest.fixture(scope="module")
def setup(shared_data, tmp_path_factory):
    from alexnet.data import prepare_dataset

    root = tmp_path_factory.mktemp("nb")
    counts: dict[str, int] = {}
    with tarfile.open(shared_data / "imagenette-train.tar.gz") as tar:
        for m in tar:
            if m.isfile() and m.name.startswith("imagenette/train/"):
                cls = m.name.split("/")[-2]
                if counts.get(cls, 0) < 2:
                    counts[cls] = counts.get(cls, 0) + 1
                    dest = root / "src" / cls / m.name.rsplit("/", 1)[-1]
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_bytes(tar.extractfile(m).read())
    ds = prepare_dataset(root / "src", root / "prepared", workers=1, progress=False)
    torch.manual_seed(0)
    weights = save_weights(root / "owt.safetensors", alexnet.create_model("alexnet_owt"),
                           classes=alexnet.weights.imagenet_classes(), preprocess=default_preprocess("alexnet_owt"))
    return ds, weights, root


def test_nearest_matches_brute_force_across_chunks():
    rng = np.random.default_rng(0)
    feats, q = rng.normal(size=(50, 7)), rng.normal(size=(3, 7))
    d, i = nearest(q, feats, k=4, chunk=8)
    full = np.linalg.norm(q[:, None] - feats[None], axis=-1)
    assert np.array_equal(i, np.argsort(full, axis=1)[:, :4])
    assert np.allclose(d, np.sort(full, axis=1)[:, :4], atol=1e-4)


def test_features_cli_writes_fc7_of_every_image(setup, tmp_path, capsys):
    ds, weights, _ = setup
    out = tmp_path / "f.npz"
    assert main(["features", "--weights", str(weights), "--data", str(ds.path), "--out", str(out),
                 "--batch-size", "8"]) == 0
    with np.load(out) as z:
        feats, labels = z["features"], z["labels"]
    assert feats.shape == (len(ds), 4096) and np.array_equal(labels, ds.labels)
    assert (feats >= 0).all() and feats.std() > 0  # after ReLU, and not constant
    model = alexnet.load(weights)
    x = model.meta.preprocess.crops(torch.from_numpy(ds.get_uint8(5))[None])
    with torch.no_grad():
        expected = model.forward_head(model.forward_features(x), pre_logits=True)[0].numpy()
    assert np.allclose(feats[5], expected, atol=1e-4)
    assert np.array_equal(load_features(out), feats)


def test_neighbors_of_a_dataset_image_start_with_itself(setup, tmp_path, capsys):
    ds, weights, root = setup
    query = root / "src" / ds.path_of(7)
    out = tmp_path / "grid.png"
    assert main(["neighbors", "--weights", str(weights), "--data", str(ds.path), "--query", str(query),
                 "--k", "4", "--out", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    nb = doc[0]["neighbors"]
    assert len(nb) == 4 and nb[0]["index"] == 7
    d = [n["distance"] for n in nb]
    assert d == sorted(d) and d[0] < 0.5 * d[1]  # JPEG storage: near zero, not exactly
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 400


def test_neighbors_with_precomputed_features_of_wrong_size(setup, tmp_path, capsys):
    ds, weights, root = setup
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 4096), np.float32))
    code = main(["neighbors", "--weights", str(weights), "--data", str(ds.path), "--query",
                 str(root / "src" / ds.path_of(0)), "--features", str(bad), "--out", str(tmp_path / "g.png")])
    assert code == 2 and "3 feature rows" in capsys.readouterr().err


@pytest.mark.parametrize("array, needle", [
    (np.full((3, 4), np.nan, np.float32), "with NaN or infinite values"),
    (np.ones((3, 4), np.int64), "features must be finite floating-point numbers (int64)"),
])
def test_features_that_are_not_finite_numbers_are_refused(tmp_path, array, needle):
    from alexnet.errors import UserError

    np.save(tmp_path / "f.npy", array)
    with pytest.raises(UserError, match=re.escape(needle)):
        load_features(tmp_path / "f.npy")


# --- a small world: cifar_4layer on 30 generated images of 3 ImageNet classes (fast) ---------------------

SYNSETS = {"n03028079": "church, church building", "n03590841": "jack-o'-lantern", "n01440764": "tench, Tinca tinca"}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """30 random 32px images of 3 classes with WordNet names, prepared; cifar_4layer weights for them and
    the same weights nudged (as after one more epoch of training)."""
    from alexnet.data import prepare_dataset
    from conftest import random_image_folder

    root = tmp_path_factory.mktemp("small")
    random_image_folder(root, 10, 32, classes=tuple(SYNSETS))
    (root / "synsets.txt").write_text("".join(f"{w} {n}\n" for w, n in SYNSETS.items()))
    ds = prepare_dataset(root / "src", root / "prepared", size=32, classes_file=root / "synsets.txt", workers=1,
                         progress=False)
    torch.manual_seed(0)
    model = alexnet.create_model("cifar_4layer", num_classes=3)
    pre = {"resize": 32, "crop_size": 32, "mean_rgb": [120, 120, 120]}
    weights = save_weights(root / "w.safetensors", model, classes=ds.classes, preprocess=pre)
    with torch.no_grad():
        model.fc10.bias[0] += 1e-3  # training resumed: one number changed
    resumed = save_weights(root / "resumed.safetensors", model, classes=ds.classes, preprocess=pre)
    return ds, weights, resumed, root


def _features(small, tmp_path, weights=None, name="f.npz") -> str:
    ds, w, _, _ = small
    out = tmp_path / name
    assert main(["features", "--weights", str(weights or w), "--data", str(ds.path), "--out", str(out)]) == 0
    return str(out)


def _neighbors(small, tmp_path, *extra, weights=None, query=None):
    ds, w, _, root = small
    return main(["neighbors", "--weights", str(weights or w), "--data", str(ds.path), "--query",
                 str(query or root / "src" / ds.path_of(3)), "--out", str(tmp_path / "nn.png"), *extra])


def test_weights_fingerprint_sees_every_byte_name_dtype_and_shape(small):
    from alexnet.inspect.features import weights_fingerprint

    _, weights, resumed, _ = small
    model = alexnet.load(weights)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    fp = weights_fingerprint(model)
    assert re.fullmatch(r"[0-9a-f]{64}", fp) and weights_fingerprint(state) == fp
    assert weights_fingerprint(alexnet.load(resumed)) != fp  # one bias moved by 1e-3
    w = state["fc10.weight"]
    for changed in ({**state, "fc10.weight": w.reshape(-1, 2)},  # same bytes, another shape
                    {**state, "fc10.weight": w.view(torch.int32)},  # same bytes, another dtype
                    {("x" + k if k == "fc10.weight" else k): v for k, v in state.items()}):  # renamed
        assert weights_fingerprint(changed) != fp


def test_features_records_what_computed_them(small, tmp_path, capsys):
    from alexnet.inspect.features import read_features, weights_fingerprint

    ff = read_features(_features(small, tmp_path))
    assert (ff.arch, ff.layer) == ("cifar_4layer", "pre_logits")
    assert ff.weights_sha256 == weights_fingerprint(alexnet.load(small[1]))
    assert _features(small, tmp_path, name="f.npy") and "cannot check it" in capsys.readouterr().err


def test_neighbors_refuses_features_of_other_weights_and_says_how_to_recompute(small, tmp_path, capsys):
    import shlex

    ds, _, resumed, _ = small
    stale = _features(small, tmp_path)
    capsys.readouterr()
    assert _neighbors(small, tmp_path, "--features", stale, weights=resumed) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "computed with other weights" in err and "Traceback" not in err
    command = err.split("recompute them with: ")[1].strip()
    assert command == shlex.join(["alexnet", "features", "--weights", str(resumed), "--data", str(ds.path),
                                  "--out", stale])
    assert main(shlex.split(command)[1:]) == 0  # the advice works
    assert _neighbors(small, tmp_path, "--features", stale, weights=resumed) == 0


@pytest.mark.parametrize("field, value, needle", [
    ("arch", "alexnet_owt", "holds features of alexnet_owt, not of these weights' cifar_4layer"),
    ("layer", "conv5", "holds features of layer conv5, not pre_logits"),
    ("labels", None, "computed for another dataset"),
])
def test_neighbors_refuses_features_of_another_arch_layer_or_dataset(small, tmp_path, capsys, field, value, needle):
    path = _features(small, tmp_path)
    with np.load(path) as z:
        arrays = dict(z)
    arrays[field] = np.array(value) if value is not None else arrays["labels"][::-1].copy()
    np.savez(path, **arrays)
    capsys.readouterr()
    assert _neighbors(small, tmp_path, "--features", path) == 2
    err = capsys.readouterr().err
    assert needle in err and "recompute them with: alexnet features" in err and err.count("\n") == 1


def test_neighbors_refuses_features_of_the_same_weights_with_other_model_options(small, tmp_path, capsys):
    """--opt lrn=false changes the features, not the weights: refused, with the command (and its --opt)."""
    path = _features(small, tmp_path)
    capsys.readouterr()
    assert _neighbors(small, tmp_path, "--features", path, "--opt", "lrn=false") == 2
    err = capsys.readouterr().err
    assert "computed with these weights but other model options or preprocessing" in err
    assert "--opt lrn=false" in err and err.count("\n") == 1
    assert _neighbors(small, tmp_path, "--features", path) == 0  # as computed: accepted


@pytest.mark.parametrize("suffix", [".npz", ".npy"])
def test_features_without_a_record_still_load_with_one_note(small, tmp_path, capsys, suffix):
    path = _features(small, tmp_path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in ("features", "labels", "indices")}  # as written before the record
    old = tmp_path / f"old{suffix}"
    np.savez(old, **arrays) if suffix == ".npz" else np.save(old, arrays["features"])
    capsys.readouterr()
    assert _neighbors(small, tmp_path, "--features", str(old), "--json") == 0
    out, err = capsys.readouterr()
    assert err.count("cannot be checked") == 1 and len(json.loads(out)[0]["neighbors"]) == 6


def _npz_with(tmp_path, **arrays):
    np.savez(tmp_path / "f.npz", **arrays)
    return (tmp_path / "f.npz").read_bytes()


def _huge_npy_header() -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**9, 4096)})
    return buf.getvalue() + bytes(64)  # announces 16 TB, holds 64 bytes


def _object_npy() -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return buf.getvalue()


def _npy(array) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


@pytest.mark.parametrize("make, why", [
    (lambda p: b"pc1,pc2,pc3\n0.1,0.2,0.3\n", "it holds text"),
    (lambda p: np.random.default_rng(0).bytes(2000), "neither .npz nor .npy"),
    (lambda p: b"", "the file is empty"),
    (lambda p: _npy(np.zeros(7, np.float32)), "2-D (images, dimensions)"),
    (lambda p: _npy(np.zeros((2, 3, 4), np.float32)), "2-D (images, dimensions)"),
    (lambda p: _object_npy(), "holds Python objects"),
    (lambda p: _huge_npy_header(), "truncated or damaged"),
    (lambda p: _npz_with(p, labels=np.zeros(3, np.int64)), "no 'features' array"),
    (lambda p: _npz_with(p, features=np.zeros((3, 4), np.float32))[:200], "unreadable"),
    (lambda p: _npz_with(p, features=np.zeros((3, 4), np.float32), labels=np.zeros(2, np.int64)), "'labels' must be 3"),
    (lambda p: _npz_with(p, features=np.zeros((3, 4), np.float32), arch=np.array("a"), layer=np.array("b"),
                         weights_sha256=np.array("no\nhex")), "'weights_sha256' is not a valid"),
    (lambda p: _npz_with(p, features=np.zeros((3, 4), np.float32), arch=np.array(["a", "b"]), layer=np.array("b"),
                         weights_sha256=np.array("0" * 64)), "'arch' must be a string"),
    (lambda p: _npz_with(p, features=np.zeros((3, 4), np.float32), arch=np.array("x" * 5000), layer=np.array("b"),
                         weights_sha256=np.array("0" * 64)), "more than the 4096"),
    (lambda p: _npz_with(p, features=np.zeros((3, 4), np.float32), weights_sha256=np.array("0" * 64)), "incomplete"),
])
def test_a_file_that_is_not_a_features_file_is_refused_in_one_line(tmp_path, make, why):
    from alexnet.errors import UserError

    path = tmp_path / "pc.csv"
    path.write_bytes(make(tmp_path))
    with pytest.raises(UserError) as e:
        load_features(path)
    message = str(e.value)
    assert message.startswith(f"{path} is not a features file written by 'alexnet features' (.npz): ")
    assert why in message and "\n" not in message and "pickle=" not in message


def test_neighbors_with_a_csv_for_features_says_so(small, tmp_path, capsys):
    (tmp_path / "pc.csv").write_text("pc1,pc2\n0.5,0.25\n")
    assert _neighbors(small, tmp_path, "--features", str(tmp_path / "pc.csv")) == 2
    err = capsys.readouterr().err
    assert err == (f"alexnet neighbors: error: {tmp_path / 'pc.csv'} is not a features file written by "
                   "'alexnet features' (.npz): it holds text (CSV?)\n")


def test_k_beyond_the_images_lists_them_all_and_the_plot_draws_at_most_20(small, tmp_path, capsys):
    assert len(small[0]) == 30
    assert _neighbors(small, tmp_path, "--k", "1000", "--json") == 0
    out, err = capsys.readouterr()
    assert len(json.loads(out)[0]["neighbors"]) == 30
    assert "has 30 images: --k 1000 gives all 30" in err
    assert "the plot shows the nearest 20 of the 30 neighbours of each query" in err
    with Image.open(tmp_path / "nn.png") as im:
        assert im.size[0] <= 21 * 170 + 20  # 21 columns of 1.7 inches at 100 dpi, not 31


def test_a_folder_of_queries_is_computed_in_batches_and_the_plot_draws_the_first_16(small, tmp_path, capsys,
                                                                                   monkeypatch):
    """20 queries with --batch-size 8: three forward passes (after the dataset's four), every query's neighbours in the JSON, the plot
    16 rows and a note."""
    import alexnet.inspect.features as features_module
    from alexnet.inspect.neighbors import MAX_PLOT_QUERIES

    ds, _, _, root = small
    queries = sorted((root / "src").rglob("*.png"))[:20]
    folder = tmp_path / "queries"
    folder.mkdir()
    for i, q in enumerate(queries):
        (folder / f"q{i:02d}.png").write_bytes(q.read_bytes())
    batches = []
    real = features_module.image_features
    monkeypatch.setattr(features_module, "image_features", lambda m, x: (batches.append(len(x)), real(m, x))[1])
    assert _neighbors(small, tmp_path, "--k", "2", "--json", "--batch-size", "8", query=folder) == 0
    out, err = capsys.readouterr()
    assert batches == [8, 8, 8, 6] + [8, 8, 4] and len(json.loads(out)) == 20  # the 30 images, the 20 queries
    assert f"the plot shows the first {MAX_PLOT_QUERIES} of the 20 query images (one row each); the JSON lists" in err
    with Image.open(tmp_path / "nn.png") as im:
        one_row = im.size[1] / MAX_PLOT_QUERIES
    assert _neighbors(small, tmp_path, "--k", "2", query=folder / "q00.png") == 0
    with Image.open(tmp_path / "nn.png") as im:
        assert im.size[1] < 2 * one_row + 100  # one row drawn, not 16


def _capture_plot(monkeypatch) -> list[dict]:
    """What plot_neighbors drew, figure by figure: titles per row, the query's file-name label, the caption,
    the title font sizes."""
    import alexnet.inspect.neighbors as nb

    drawn: list[dict] = []
    save = nb.save_figure

    def capture(fig, out, **kw):
        axes = np.asarray(fig.axes).reshape(-1)
        drawn.append({"titles": [ax.get_title() for ax in axes], "query_label": axes[0].get_xlabel(),
                      "caption": fig._suptitle.get_text(),
                      "sizes": [ax.title.get_fontsize() for ax in axes if ax.get_title()]})
        return save(fig, out, **kw)

    monkeypatch.setattr(nb, "save_figure", capture)
    return drawn


def test_plot_titles_are_readable_and_distances_tell_neighbours_apart(small, tmp_path, capsys, monkeypatch):
    import shutil

    from alexnet.inspect.neighbors import describe_distances

    ds, weights, _, root = small
    drawn = _capture_plot(monkeypatch)
    query = tmp_path / "n03590841_jack-o'-lantern.png"
    shutil.copy(root / "src" / ds.path_of(0), query)
    assert _neighbors(small, tmp_path, "--k", "8", "--json", query=query) == 0
    doc = json.loads(capsys.readouterr().out)[0]["neighbors"]
    (fig,) = drawn
    row = fig["titles"]
    assert row[0] == "jack-o'-lantern"  # its class (a WNID of the data starts its name), as predict reads it
    assert fig["query_label"].replace("\n", "") == query.name  # and its file name under it, whole, wrapped
    names = [t.split("\n")[0] for t in row[1:]]
    assert set(names) <= {"church", "jack-o'-lantern", "tench"} and "church, church building" in {n["class"] for n in doc}
    shown = [t.split("d=")[1] for t in row[1:]]
    assert len(set(shown)) == len({n["distance"] for n in doc})  # distinct distances read distinct
    assert len({len(s.split(".")[1]) for s in shown}) == 1  # one format: as many decimals everywhere
    for text, n in zip(shown, doc, strict=True):
        assert float(text) == pytest.approx(n["distance"], rel=5e-3)  # at least 3 significant figures
    assert min(fig["sizes"]) >= 8  # 6 pt at 100 dpi was too small to read
    caption = fig["caption"].replace("\n", " ")
    dims = int(re.search(r"their (\d+)-d", caption).group(1))  # cifar_4layer's flattened last conv block
    assert caption == describe_distances(weights=str(weights), feature_dims=dims, data=str(ds.path))
    assert "Euclidean distance" in caption and f"weights: {weights}" in caption and "classifier's input" in caption
    assert "fc7 activations (4096-d" in describe_distances(feature_dims=4096)


def test_a_query_in_a_wnid_folder_is_titled_by_its_class_and_others_by_their_name(small, tmp_path, capsys,
                                                                                   monkeypatch):
    import shutil

    ds, _, _, root = small
    drawn = _capture_plot(monkeypatch)
    folder = tmp_path / "queries"
    (folder / "n03028079").mkdir(parents=True)
    shutil.copy(root / "src" / ds.path_of(0), folder / "n03028079" / "photo 1.png")
    shutil.copy(root / "src" / ds.path_of(1), folder / "holiday.png")
    assert _neighbors(small, tmp_path, "--k", "2", query=folder) == 0
    (fig,) = drawn
    titles = fig["titles"]
    assert titles[0] == "holiday.png" and titles[3] == "church"  # rows of 3: query, 2 neighbours
    assert all("d=" in t for t in titles[1:3] + titles[4:6])


def test_figure_distances_share_one_format_across_the_figure():
    """The reviewer's figure read d=3.11 in one row and d=2.095 in the next (5 significant figures on
    near-ties): now every distance has the decimals that the closest row needs."""
    from alexnet.inspect.neighbors import figure_distances

    rows = [[1.937, 2.892, 3.106, 3.627], [2.095, 2.109, 2.304, 2.319, 2.322]]
    out = figure_distances(rows)
    assert out == [["1.937", "2.892", "3.106", "3.627"], ["2.095", "2.109", "2.304", "2.319", "2.322"]]
    assert figure_distances([[3.257, 3.418], [2.5, 2.9]]) == [["3.26", "3.42"], ["2.50", "2.90"]]
    assert figure_distances([[0.0, 0.57912, 0.57941]]) == [["0.0000", "0.5791", "0.5794"]]
    assert figure_distances([[1.0, 1.0, 2.0]]) == [["1.00", "1.00", "2.00"]]  # duplicates stay equal
    assert figure_distances([[45.2, 1234.5]]) == [["45", "1234"]]


def test_fit_label_wraps_and_shortens_in_the_middle():
    from alexnet.inspect.neighbors import fit_label, short_class_name

    assert short_class_name("church, church building") == "church" and short_class_name("tench") == "tench"
    assert fit_label("n03590841_jack-o'-lantern") == "n03590841_jack-o'-\nlantern"
    long = "a_very_long_file_name_that_goes_on_and_on_and_on_past_two_lines.jpeg"
    lines = fit_label(long).split("\n")
    assert len(lines) == 2 and all(len(x) <= 24 for x in lines)
    assert lines[0].startswith("a_very_long") and lines[1].endswith("lines.jpeg") and "\u2026" in lines[1]


def test_format_distances_has_three_significant_figures_or_more_where_needed():
    from alexnet.inspect.neighbors import format_distances

    assert format_distances([0.7123, 45.678, 1234.5, 0.0]) == ["0.712", "45.7", "1234", "0.00"]
    assert format_distances([0.70012, 0.70034, 0.70034]) == ["0.7001", "0.7003", "0.7003"]


def test_features_are_written_whole_and_never_through_a_link(tmp_path):
    """A hostile-input audit: `features --out link.npy` wrote into the file the link pointed at."""
    import numpy as np

    from alexnet.inspect.features import read_features, save_features

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    for name in ("link.npy", "link.npz"):
        (tmp_path / name).symlink_to(victim)
        feats = np.arange(12, dtype=np.float32).reshape(3, 4)
        out = save_features(tmp_path / name, feats, labels=[0, 1, 2] if name.endswith("z") else None)
        assert victim.read_text() == "precious" and not out.is_symlink()
        np.testing.assert_array_equal(read_features(out).features, feats)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.npy", "link.npz", "victim.txt"]  # no temporaries


def test_queries_of_one_file_name_are_told_apart_by_their_folders():
    """A teacher's walkthrough: three CIFAR queries were all titled '0006.jpg'."""
    from alexnet.cli.neighbors import distinct_names

    assert distinct_names(["q/cifar/cat/0006.jpg", "q/cifar/ship/0006.jpg", "x/cat.jpg"]) == \
        ["cat/0006.jpg", "ship/0006.jpg", "cat.jpg"]
    assert distinct_names(["a/b/x.png", "c/b/x.png"]) == ["a/b/x.png", "c/b/x.png"]
    assert distinct_names(["x.png", "x.png"]) == ["x.png", "x.png"]  # the same file twice: nothing to add
