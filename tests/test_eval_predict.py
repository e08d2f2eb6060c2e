"""Prediction: the Python API, every kind of image Pillow reads, unreadable files, JSON and the plot."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import alexnet
from alexnet.cli.main import main
from alexnet.errors import UserError
from alexnet.weights import read_weights, save_weights
from alexnet.weights.preprocess import load_image
from alexnet.weights.torchfile import default_preprocess


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    model = alexnet.create_model("alexnet_owt")
    path = tmp_path_factory.mktemp("w") / "owt.safetensors"
    save_weights(path, model, classes=alexnet.weights.imagenet_classes(),
                 preprocess=default_preprocess("alexnet_owt"))
    return path


@pytest.fixture(scope="module")
def model(weights):
    return alexnet.load(weights)


@pytest.fixture(scope="module")
def images(shared_data, tmp_path_factory):
    """Real photos plus every awkward kind: grayscale, CMYK, RGBA PNG, palette PNG, 16-bit, a PNG named
    .JPEG, and two unreadable files."""
    d = tmp_path_factory.mktemp("imgs")
    real = []
    with tarfile.open(shared_data / "imagenet-samples.tar.gz") as tar:
        for m in tar.getmembers():
            if m.isfile() and m.name.endswith(".JPEG") and len(real) < 2:
                p = d / "real" / m.name.split("/")[-2] / m.name.rsplit("/", 1)[-1]
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(tar.extractfile(m).read())
                real.append(p)
    rgb = Image.open(real[0]).convert("RGB")
    kinds = d / "kinds"
    kinds.mkdir()
    rgb.convert("L").save(kinds / "gray.jpg", quality=95)
    rgb.convert("CMYK").save(kinds / "cmyk.jpg", quality=95)
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.new("L", rgb.size, 255))
    rgba.save(kinds / "rgba.png")
    rgb.convert("P", palette=Image.Palette.ADAPTIVE).save(kinds / "palette.png", transparency=0)
    Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257).save(kinds / "gray16.png")
    rgb.save(kinds / "png_named.JPEG", format="PNG")
    bad = d / "bad"
    bad.mkdir()
    data = real[1].read_bytes()
    (bad / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (bad / "notes.jpg").write_text("not an image")
    return {"real": real, "rgb": rgb, "kinds": kinds, "bad": bad}


def test_predict_api_returns_topk_with_names_and_probabilities(model, images):
    preds = alexnet.predict(model, images["real"], topk=5)
    assert [p.source for p in preds] == [str(p) for p in images["real"]]
    for pred, path in zip(preds, images["real"], strict=True):
        probs = [t["probability"] for t in pred.top]
        assert len(probs) == 5 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
        with torch.no_grad():
            expected = model(model.meta.preprocess(path)[None]).softmax(-1)[0]
        assert pred.top[0]["index"] == int(expected.argmax())
        assert pred.top[0]["probability"] == pytest.approx(float(expected.max()), rel=1e-5)
        assert pred.top[0]["name"] == model.meta.classes[pred.top[0]["index"]]["name"]
    single = alexnet.predict(model, images["real"][0], topk=2)  # one image, not a list
    assert len(single) == 1 and len(single[0].top) == 2


def test_predict_takes_torchvision_style_tensors(model, images):
    """The API walkthrough: predict(m, torch.rand(3, 224, 224)) raised TypeError (a path was expected)."""
    from torchvision.io import decode_image

    path = images["real"][0]
    chw = decode_image(str(path))                                   # uint8 (3, H, W), as torchvision reads it
    by_path, = alexnet.predict(model, path, topk=3)
    for given in (chw, [chw], chw[None], chw.float() / 255):
        got = alexnet.predict(model, given, topk=3)
        assert len(got) == 1 and [t["index"] for t in got[0].top] == [t["index"] for t in by_path.top]
        assert got[0].top[0]["probability"] == pytest.approx(by_path.top[0]["probability"], abs=1e-3)
    for bad, needle in ((chw.permute(1, 2, 0), r"must be \(C, H, W\)"), (chw.float(), "values in 0..1"),
                        (chw.long(), "uint8 or floating point")):
        with pytest.raises(UserError, match=needle):
            alexnet.predict(model, bad)


def test_grayscale_equals_replicated_rgb(images):
    gray = load_image(images["kinds"] / "gray16.png")  # 16-bit: scaled to 8 bits
    assert gray.mode == "RGB"
    a = np.asarray(gray)
    assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()
    assert np.array_equal(a[..., 0], np.asarray(images["rgb"].convert("L")))


def test_every_kind_of_image_becomes_the_same_square(model, images):
    ref = model.meta.preprocess.square(images["rgb"])
    for name in ("rgba.png", "png_named.JPEG"):
        assert np.array_equal(model.meta.preprocess.square(images["kinds"] / name), ref), name
    cmyk = model.meta.preprocess.square(images["kinds"] / "cmyk.jpg").astype(float)
    assert np.abs(cmyk - ref).mean() < 8  # CMYK round trip through JPEG: close, not exact
    palette = model.meta.preprocess.square(images["kinds"] / "palette.png")
    assert palette.shape == (256, 256, 3)


def test_transparent_pixels_become_white():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[:2] = (10, 20, 30, 255)  # opaque top half, transparent bottom half
    out = np.asarray(load_image(rgba))
    assert (out[:2] == (10, 20, 30)).all() and (out[2:] == 255).all()


def test_huge_image_beyond_pillows_limit(model, images, monkeypatch, tmp_path):
    w, h = images["rgb"].size
    k = (29e6 / (w * h)) ** 0.5
    big = images["rgb"].resize((round(w * k), round(h * k)))  # 29 MP: decoded at a reduced JPEG scale
    path = tmp_path / "huge.jpg"
    big.save(path, quality=80)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5_000_000)  # a "decompression bomb" to Pillow now
    sq = model.meta.preprocess.square(path)
    assert sq.shape == (256, 256, 3)
    small = model.meta.preprocess.square(images["rgb"]).astype(float)
    assert np.abs(sq.astype(float) - small).mean() < 6  # the same picture
    assert Image.MAX_IMAGE_PIXELS == 5_000_000  # restored


def test_unreadable_file_is_a_user_error(images):
    with pytest.raises(UserError, match="truncated.jpg"):
        load_image(images["bad"] / "truncated.jpg")
    with pytest.raises(UserError, match="not an image"):
        load_image(images["bad"] / "notes.jpg")
    empty = images["bad"].parent / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match="empty file"):   # as prepare says it
        load_image(empty)


def test_cli_predicts_the_rest_and_exits_nonzero_on_bad_files(weights, images, capsys):
    code = main(["predict", "--weights", str(weights), str(images["kinds"]), str(images["bad"]),
                 str(images["real"][0]), "--topk", "3"])
    out, err = capsys.readouterr()
    assert code == 1
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 2 and any("truncated.jpg" in e for e in errors) and any("notes.jpg" in e for e in errors)
    assert "Traceback" not in err
    good = sorted(p.name for p in images["kinds"].iterdir()) + [images["real"][0].name]
    for name in good:
        assert name in out
    assert out.count("  1. ") == len(good) and out.count("  3. ") == len(good) and "  4. " not in out


def test_cli_json_and_plot(weights, images, tmp_path, capsys, monkeypatch):
    from alexnet.evaluation import plots

    titles, real = [], plots.predictions_figure
    monkeypatch.setattr(plots, "predictions_figure", lambda *a, **kw: titles.append(kw.get("title")) or real(*a, **kw))
    plot = tmp_path / "fig4.png"
    code = main(["predict", "--weights", str(weights), *map(str, images["real"]), "--json", "--plot", str(plot)])
    # the figure says what it shows (a teacher's walkthrough: no title, nothing said of the bold labels)
    assert titles and titles[0].startswith(f"{weights.name}: the most probable classes"), titles
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["images"]) == 2 and doc["failed"] == 0
    top = doc["images"][0]["predictions"]
    assert len(top) == 5 and {"index", "wnid", "name", "probability"} <= set(top[0])
    with Image.open(plot) as im:
        assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 200


def _random_photos(folder, n):
    rng = np.random.default_rng(0)
    folder.mkdir()
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / f"photo{i:02d}.png")
    return sorted(p.name for p in folder.iterdir())


def test_cli_plot_draws_at_most_plot_max_images_and_says_so(weights, tmp_path, capsys, monkeypatch):
    """The plot holds the first --plot-max images, one note says so; the text and JSON still list every one."""
    import alexnet.evaluation.plots as plots

    names = _random_photos(tmp_path / "photos", 5)
    drawn = []
    real = plots.plot_predictions
    monkeypatch.setattr(plots, "plot_predictions", lambda images, preds, out, **kw: (
        drawn.append([p.source for p in preds]), real(images, preds, out, **kw))[1])
    plot = tmp_path / "fig4.png"
    assert main(["predict", "--weights", str(weights), str(tmp_path / "photos"), "--plot", str(plot),
                 "--plot-max", "2"]) == 0
    out, err = capsys.readouterr()
    assert [Path(s).name for s in drawn[0]] == names[:2] and plot.stat().st_size > 0
    assert out.count("  1. ") == 5 and all(name in out for name in names)
    notes = [line for line in err.splitlines() if "plot shows" in line]
    assert notes == ["alexnet predict: the plot shows the first 2 of 5 images, in the order listed; --plot-max N "
                     "draws more or fewer (the text output lists all 5)"], err
    assert main(["predict", "--weights", str(weights), str(tmp_path / "photos"), "--plot", str(plot),
                 "--plot-max", "3", "--json"]) == 0
    out, err = capsys.readouterr()
    assert len(json.loads(out)["images"]) == 5 and len(drawn[1]) == 3 and "(the JSON output lists all 5)" in err
    assert main(["predict", "--weights", str(weights), str(tmp_path / "photos"), "--plot", str(plot)]) == 0
    assert len(drawn[2]) == 5 and "plot shows" not in capsys.readouterr().err  # all drawn: nothing to say
    assert main(["predict", "x.jpg", "--plot-max", "0"]) == 2
    assert "argument --plot-max: must be in 1..128, got 0" in capsys.readouterr().err



def test_cli_topk_above_the_classes_lists_them_all_and_says_so(weights, tmp_path, capsys):
    _random_photos(tmp_path / "photos", 1)
    assert main(["predict", "--weights", str(weights), str(tmp_path / "photos"), "--topk", "2000"]) == 0
    out, err = capsys.readouterr()
    n = len(read_weights(weights).classes)
    assert f"--topk 2000: the model has {n} classes; listing them all" in err and f"  {n}. " in out


def test_many_predictions_make_a_wide_page_not_a_tall_strip(tmp_path):
    """Past 16 images, rows of 8: the default bound's 32 fill 4 rows (they used to be 8 rows of 4)."""
    from alexnet.evaluation.plots import PLOT_LIMIT, plot_predictions
    from alexnet.evaluation.predict import Prediction

    classes = [{"index": i, "name": f"class {i}"} for i in range(5)]
    top = [{"index": i, "name": f"class {i}", "probability": p} for i, p in enumerate((0.5, 0.2, 0.1, 0.1, 0.05))]
    squares = np.random.default_rng(0).integers(0, 256, (PLOT_LIMIT, 8, 8, 3), dtype=np.uint8)
    path = plot_predictions(list(squares), [Prediction(f"{i}.png", top) for i in range(PLOT_LIMIT)],
                            tmp_path / "many.png", classes=classes)
    with Image.open(path) as im:
        width, height = im.size
    assert PLOT_LIMIT == 32 and width > height and height < 1600, (width, height)


def test_hidden_files_under_a_folder_are_passed_over_as_prepare_does(tmp_path):
    """The walkthrough: predict read .git/ and macOS's ._x.png (and failed on it) where prepare skips them."""
    from alexnet.evaluation.predict import iter_image_files

    for name in ("a/1.png", "a/._1.png", ".hidden/2.png", "a/.git/3.jpg", "__MACOSX/a/4.png", "b/5.JPG"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert iter_image_files([tmp_path]) == [str(tmp_path / "a/1.png"), str(tmp_path / "b/5.JPG")]
    assert iter_image_files([tmp_path / "a/._1.png"]) == [str(tmp_path / "a/._1.png")]  # named: read as asked


def test_cli_only_bad_files(weights, images, capsys):
    """One bad image: one line (its reason), exit 1; several: a line each, then the count."""
    assert main(["predict", "--weights", str(weights), str(images["bad"] / "notes.jpg")]) == 1
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert main(["predict", "--weights", str(weights), str(images["bad"] / "missing.jpg")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.jpg: no such file" in err[0], err
    assert main(["predict", "--weights", str(weights), str(images["bad"] / "missing.jpg"),
                 str(images["bad"] / "notes.jpg")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and err[-1] == "alexnet predict: 2 of 2 images could not be read", err
    # --json names them too, with their reasons (it gave only the count)
    assert main(["predict", "--weights", str(weights), str(images["bad"] / "notes.jpg"), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["failed"] == 1 and doc["images"] == []
    assert doc["errors"][0]["image"].endswith("notes.jpg") and "not an image" in doc["errors"][0]["error"]


# --- the figure's layout: labels, bars and rows ----------------------------------------------------------

LONG_NAMES = ["Greater Swiss Mountain dog", "gas pump, gasoline pump, petrol pump, island dispenser",
              "Supercalifragilisticexpialidocious_class", "church, church building", "tench, Tinca tinca",
              "German short-haired pointer"]


def _figure(n, probabilities, names=LONG_NAMES, labels=None, **kw):
    from alexnet.evaluation.plots import predictions_figure
    from alexnet.evaluation.predict import Prediction

    classes = [{"index": i, "name": name} for i, name in enumerate(names)]
    top = [{"index": i, "name": names[i], "probability": p} for i, p in enumerate(probabilities)]
    squares = np.random.default_rng(0).integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    fig = predictions_figure(list(squares), [Prediction(f"{i}.png", top) for i in range(n)], classes=classes,
                             labels=labels, **kw)
    fig.canvas.draw()
    return fig, fig.canvas.get_renderer()


@pytest.mark.parametrize("n, columns", [(5, None), (8, None), (12, 6)])
@pytest.mark.parametrize("confident", [True, False])
def test_class_names_never_touch_a_bar_or_another_column(n, columns, confident):
    """A bar of 100% ends at its axes' right edge; the next column's names, however long, stay left of that
    column's bars and right of this one's (the names used to run over a confident bar: wspace was fixed)."""
    import alexnet.plotting

    probabilities = (1.0, 0.0, 0.0, 0.0, 0.0) if confident else (0.3, 0.25, 0.2, 0.15, 0.1)
    fig, renderer = _figure(n, probabilities, columns=columns)
    try:
        bar_axes = [ax for ax in fig.axes if ax.patches]
        assert len(bar_axes) == n
        bars = [(ax, p.get_window_extent(renderer)) for ax in bar_axes for p in ax.patches if p.get_width() > 0]
        for ax in fig.axes:
            texts = ax.get_yticklabels() + ax.get_xticklabels() + [ax.xaxis.label]
            for text in (t for t in texts if t.get_text()):
                box = text.get_window_extent(renderer)
                for owner, bar in bars:
                    assert not box.overlaps(bar), (text.get_text(), owner is ax)
                for other in fig.axes:  # nor over another image or another column's bars
                    if other is not ax:
                        assert not box.overlaps(other.bbox), text.get_text()
    finally:
        alexnet.plotting.pyplot().close(fig)


def test_labels_are_the_short_class_names_and_the_axis_reads_in_percent():
    import alexnet.plotting
    from alexnet.plotting import short_class_name

    fig, _ = _figure(1, (0.5, 0.2, 0.1, 0.1, 0.05), labels=[1])
    try:
        image, bars = fig.axes
        shown = [t.get_text() for t in bars.get_yticklabels()]
        # the first WordNet name, cut with an ellipsis past 24 characters; the most probable at the top
        assert shown == ["tench", "church", "Supercalifragilisticexp\u2026", "gas pump", "Greater Swiss Mountain\u2026"]
        assert shown[0] == short_class_name(LONG_NAMES[4]) and shown[3] == short_class_name(LONG_NAMES[1])
        assert image.get_xlabel() == "gas pump"  # the true class, its short name
        assert [t.get_text() for t in bars.get_xticklabels()] == ["0%", "50%", "100%"]
    finally:
        alexnet.plotting.pyplot().close(fig)


@pytest.mark.parametrize("n, shape", [(1, (1, 1)), (4, (1, 4)), (5, (2, 3)), (6, (2, 3)), (7, (2, 4)),
                                      (9, (3, 3)), (16, (4, 4)), (17, (3, 6)), (20, (3, 7)), (32, (4, 8))])
def test_rows_are_as_even_as_can_be(n, shape):
    """Five images make 3 + 2, not 4 + 1; the rows are at most 4 wide (8 past 16 images)."""
    from alexnet.evaluation.plots import grid_shape

    assert grid_shape(n) == shape
    assert grid_shape(12, columns=6) == (2, 6)  # the report's choice is kept


def test_a_model_without_class_names_counts_its_outputs(tmp_path, capsys):
    """A model saved after reset_classifier(5) has no names: the note said 'the model has 0 classes'."""
    from alexnet.weights import save_weights

    m = alexnet.create_model("cifar_4layer")
    m.reset_classifier(5)
    weights = save_weights(tmp_path / "w.safetensors", m)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "x.png")
    assert main(["predict", "--weights", str(weights), str(tmp_path / "x.png"), "--topk", "7"]) == 0
    out, err = capsys.readouterr()
    assert "the model has 5 classes; listing them all" in err and out.count("%  class_") == 5


def test_a_wrapped_model_keeps_its_preprocessing_and_saves_it(model, images, tmp_path):
    import copy

    from alexnet.weights import save_loaded
    from alexnet.weights.preprocess import Preprocess

    mine = copy.deepcopy(model)
    mine.meta.preprocess = Preprocess(mean_rgb=(10.0, 20.0, 30.0), std_rgb=None)  # not the arch's default
    wrapped = torch.nn.DataParallel(mine)  # on a CPU it runs the model itself, as DDP's .module would
    ours, = alexnet.predict(mine, images["real"][0], topk=3)
    theirs, = alexnet.predict(wrapped, images["real"][0], topk=3)
    assert theirs.top == ours.top  # was: ImageNet's mean for the wrapper, other probabilities
    assert alexnet.models.meta_of(torch.compile(wrapped)) is mine.meta
    wrapped.meta = alexnet.models.ModelMeta(preprocess=Preprocess(crop_size=200))  # set on the wrapper: wins
    assert alexnet.models.meta_of(wrapped).preprocess.crop_size == 200
    del wrapped.meta
    saved = read_weights(save_loaded(wrapped, tmp_path / "w.safetensors"))
    assert saved.preprocess["mean_rgb"] == [10.0, 20.0, 30.0] and saved.preprocess["std_rgb"] is None


def test_a_model_without_meta_gets_its_own_kinds_preprocessing():
    import warnings

    import torchvision

    from alexnet.models.owt import AlexNetOWT
    from alexnet.weights.load import model_preprocess
    from alexnet.weights.preprocess import IMAGENET_STD_RGB

    by_hand = AlexNetOWT(num_classes=3)  # not through create_model: no model.meta
    assert model_preprocess(by_hand).std_rgb == model_preprocess(alexnet.create_model("alexnet_owt")).std_rgb \
        == IMAGENET_STD_RGB
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torchvision's models and ours: no warning
        assert model_preprocess(torchvision.models.alexnet(num_classes=3)).std_rgb == IMAGENET_STD_RGB
        assert model_preprocess(by_hand).crop_size == 224
    with pytest.warns(UserWarning, match="Sequential has no model.meta.preprocess"):
        assert model_preprocess(torch.nn.Sequential(torch.nn.Flatten())).std_rgb is None


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_predict_with_a_half_precision_model(model, images, dtype):
    import copy

    full, = alexnet.predict(model, images["real"][0], topk=1)
    half, = alexnet.predict(copy.deepcopy(model).to(dtype), images["real"][0], topk=1)  # was: a dtype error
    assert half.top[0]["index"] == full.top[0]["index"]
    assert half.top[0]["probability"] == pytest.approx(full.top[0]["probability"], rel=0.05)


def test_bad_counts_and_num_classes_in_the_python_api_are_value_errors(model, weights, images):
    for kw in ({"topk": 0}, {"batch_size": 0}, {"batch_size": 2.5}):
        with pytest.raises(ValueError, match=f"{next(iter(kw))} must be an integer >= 1"):
            alexnet.predict(model, images["real"][0], **kw)
    with pytest.raises(ValueError, match=r"reset_classifier\(num_classes\)"):
        alexnet.load(weights, num_classes=10)  # was: TypeError, multiple values for num_classes


def test_printed_ranks_line_up_and_a_name_is_not_repeated_as_its_wnid(tmp_path, capsys):
    """A teacher's walkthrough: '  10.   0.00%' stood one character right of the rows above it, and the
    demo's classes printed as 'triangle (triangle)'."""
    from alexnet.weights import save_weights

    names = [f"shape{i}" for i in range(12)]
    w = save_weights(tmp_path / "w.safetensors", alexnet.create_model("cifar_4layer", num_classes=12),
                     classes=[{"index": i, "wnid": n, "name": n} for i, n in enumerate(names)])
    img = tmp_path / "x.png"
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(img)
    assert main(["predict", "--weights", str(w), str(img), "--topk", "10"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert len(rows) == 10 and len({row.index("%") for row in rows}) == 1, rows  # one column
    assert rows[0].startswith("   1. ") and rows[9].startswith("  10. ")
    assert not any(f"{n} ({n})" in row for row in rows for n in names)
