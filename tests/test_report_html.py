"""``alexnet report``: a self-contained HTML page about a run, and that it renders in a real browser.

The run directory is made here the way ``alexnet train`` lays one out (config.json, metrics.csv, a
``.safetensors`` weights file), from a cifar_4layer trained for two epochs on 60 real CIFAR-10 images,
so that these tests depend only on the weights and data APIs.
"""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import torch

from alexnet.cli.main import main
from alexnet.experiments import browser
from alexnet.experiments.report import build_report, confused_pairs, read_time

PER_CLASS = 6


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: the nets here are tiny, and OpenMP teams thrash a shared, busy CPU."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def run_dir(one_thread, tmp_path_factory, shared_data):
    from PIL import Image

    from alexnet.data import prepare_dataset
    from alexnet.experiments.images import read_labelled_images
    from alexnet.experiments.relu_vs_tanh import _Batches, train_epoch
    from alexnet.models import create_model
    from alexnet.training.optim import PaperSGD
    from alexnet.weights import save_weights

    root = tmp_path_factory.mktemp("report")
    images, labels, classes = read_labelled_images(shared_data / "cifar10-train.tar.gz", per_class=PER_CLASS)
    src = root / "images"
    for i, (img, y) in enumerate(zip(images, labels, strict=True)):
        d = src / classes[y]["name"]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i:03d}.png")
    ds = prepare_dataset(src, root / "prepared", size=32, format="raw", workers=1, progress=False)

    torch.manual_seed(0)
    model = create_model("cifar_4layer", num_classes=10)
    opt = PaperSGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=0.0)
    batches = _Batches(images, labels, 32, torch.device("cpu"), seed=0)
    run = root / "run"
    run.mkdir()
    rows = []
    for epoch in (1, 2):
        err, loss = train_epoch(model, opt, batches)
        rows.append({"epoch": epoch, "train_loss": loss, "train_top1_err": err, "train_top5_err": err / 2,
                     "val_top1_err": 0.9, "val_top5_err": 0.5, "lr": 0.01, "images_per_s": 100.0, "seconds": 1.0})
    with (run / "metrics.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (run / "config.json").write_text(json.dumps({"arch": "cifar_4layer", "epochs": 2, "lr": 0.01,
                                                 "data": str(root / "prepared"), "val_split": 0.5, "seed": 0}))
    save_weights(run / "weights.safetensors", model, arch="cifar_4layer", classes=ds.classes,
                 preprocess={"resize": 32, "crop_size": 32, "mean": "image"}, mean_image=ds.mean_image)
    return run


@pytest.fixture(scope="module")
def report(run_dir):
    return build_report(run_dir, out=run_dir / "report.html", samples=6, progress=False)


def test_report_has_every_section_and_embeds_its_images(report):
    text = report.read_text(encoding="utf-8")
    for heading in ("Config", "Learning curves", "Where the time went", "Final metrics",
                    "Sample validation predictions", "Most confused classes", "conv1 kernels"):
        assert f"<h2>{heading}</h2>" in text, heading
    srcs = re.findall(r'<img src="([^"]+)"', text)
    assert len(srcs) == 4  # curves, sample predictions, confusion matrix, kernels
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    assert browser.external_references(text) == []
    assert "<script" not in text
    # 1-crop and 10-crop rows, on the held-out half of the 60 images named by config.json
    assert "centre crop" in text and "10 crops (paper)" in text
    assert re.search(r"<td>centre crop</td><td class=\"num\">30</td>"
                     r"<td class=\"num\">\d+\.\d\d%</td><td class=\"num\">\d+\.\d\d%</td>", text)  # percent, named
    # metrics.csv's fractions are shown in percent too
    assert '<td>val_top1_err</td><td class="num">90.00%</td>' in text and "<td>lr</td><td class=\"num\">0.01</td>" in text
    assert '"val_split"' not in text and "<td>val_split</td>" in text  # config shown as a table, not JSON


def test_report_shows_where_the_time_went_and_ignores_what_train_does_not_write(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert read_time(run)[2].startswith("no summary.json")
    summary = run / "summary.json"
    summary.write_text(json.dumps({"time": {"total_s": 100.0, "setup_s": 5.0, "compilation_s": 40.0,
                                            "training_s": 45.0, "validation_s": 0, "other_s": 10.0,
                                            "weights_s": "1", "made_up_s": 1e9}}))
    phases, total, note = read_time(run)
    # largest first; a string and an unknown phase are not shown
    assert phases == [("training", 45.0), ("compilation", 40.0), ("other", 10.0), ("setup", 5.0),
                      ("validation", 0.0)] and total == 100.0 and note is None
    # a resumed run's time is its last session's (a teacher's walkthrough: every report said "a resumed
    # run's" of runs never resumed)
    summary.write_text(json.dumps({"resumed_at_step": 120, "time": {"total_s": 10.0, "training_s": 9.0}}))
    assert read_time(run)[2] == "; the run was resumed at step 120: its time since then"
    for bad, why in (("[1, 2]", "cannot be read"), ("{not json", "cannot be read"), ("{}", "no time per phase"),
                     ('{"time": {"total_s": -1, "training_s": 3}}', "does not hold seconds"),
                     ('{"time": {"total_s": 10, "training_s": NaN}}', "does not hold seconds"),
                     ('{"time": {"total_s": 0, "training_s": 100}}', "does not hold seconds"),
                     ('{"time": {"total_s": 10, "training_s": 8, "validation_s": 7}}', "does not hold seconds"),
                     ('{"time": {"total_s": 1' + "0" * 400 + ', "training_s": 3}}', "does not hold seconds"),
                     ('{"time": {"total_s": 10, "training_s": 1' + "0" * 400 + '}}', "does not hold seconds"),
                     ("[" * 100000 + "]" * 100000, "cannot be read")):
        summary.write_text(bad)
        assert why in read_time(run)[2], bad
    summary.write_text(" " * (2 << 20))
    assert "larger than" in read_time(run)[2]


def test_report_time_table(run_dir, tmp_path):
    (run_dir / "summary.json").write_text(json.dumps({"time": {"total_s": 20.0, "training_s": 15.0,
                                                               "final_evaluation_s": 5.0}}))
    try:
        text = build_report(run_dir, out=tmp_path / "r.html", samples=0, ten_crop=False,
                            progress=False).read_text(encoding="utf-8")
    finally:
        (run_dir / "summary.json").unlink()
    assert ('<tr><td>training</td><td class="num">15.0</td><td class="num">75%</td></tr>'
            '<tr><td>final evaluation</td><td class="num">5.0</td><td class="num">25%</td></tr>') in text
    assert "20.0 s in all, from summary.json</p>" in text and "resumed" not in text  # (not resumed)


def test_confused_pairs_are_the_largest_off_diagonal_cells():
    conf = np.array([[5, 3, 0], [1, 4, 0], [0, 7, 2]])
    pairs = confused_pairs(conf, ["a", "b", "c"], top=5)
    assert pairs[0] == ("c", "b", 7, pytest.approx(7 / 9))
    assert [(a, b) for a, b, _, _ in pairs] == [("c", "b"), ("a", "b"), ("b", "a")]


def test_the_matrix_has_the_classes_of_the_images_not_of_the_class_list():
    """Imagenette prepared with the 1000-class list: the matrix of its 10 classes, not none (the report
    drew none above 60 classes of the list)."""
    from alexnet.experiments.report import MATRIX_MAX_CLASSES, matrix_to_draw

    names = [f"class{i}" for i in range(1000)]
    present = np.arange(0, 1000, 100)                        # 10 classes hold images
    labels = np.repeat(present, 3)
    conf = np.zeros((1000, 1000), dtype=np.int64)
    np.add.at(conf, (labels, labels), 1)
    conf[100, 5] += 1                                        # one prediction of a class without images
    shown, shown_names, caption = matrix_to_draw(conf, names, labels)
    assert shown.shape == (10, 10) and shown.trace() == 30 and shown_names == [names[i] for i in present]
    assert "the 10 classes of the images evaluated, 1 prediction of other classes not shown" in caption
    everything = np.arange(MATRIX_MAX_CLASSES + 1)
    assert matrix_to_draw(conf, names, everything) is None   # too many to read: the pairs' table only
    full = matrix_to_draw(conf[:10, :10], names[:10], np.arange(10))
    assert full[0].shape == (10, 10) and "classes of the images" not in full[2]


def test_external_references_are_found():
    assert browser.external_references('<img src="https://x.org/a.png">')
    assert browser.external_references("<style>@import 'x.css'</style>")
    assert browser.external_references('<link href="//cdn.x/y.css">')
    assert not browser.external_references('<img src="data:image/png;base64,AAAA">')


@pytest.fixture(scope="module")
def chromium():
    path = browser.find_chromium()
    if path is None:
        pytest.skip("no Chromium installed (apt-get install chromium)")
    return path


def test_report_renders_in_chromium_with_every_image_loaded(report, chromium):
    check = browser.check_page(report, browser=chromium)
    assert check.images == 4
    assert check.loaded == check.images
    assert check.fetched == 0
    assert check.title.startswith("Training run")


def test_chromium_check_sees_a_broken_image(tmp_path, chromium):
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><head><title>b</title></head><body>'
                    '<img src="data:image/png;base64,AAAA"></body></html>')
    check = browser.check_page(page, browser=chromium)
    assert (check.images, check.loaded, check.ok) == (1, 0, False)


def test_report_screenshot_is_not_blank(report, chromium, tmp_path):
    from PIL import Image

    shot = browser.screenshot(report, tmp_path / "shot.png", height=1600, browser=chromium)
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape[0] > 500
    assert (pixels < 128).mean() > 0.002  # text and figures, not an empty white page


def test_report_cli(run_dir, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(run_dir), "--out", str(out), "--samples", "3", "--no-ten-crop",
                 "--val", str(run_dir.parent / "prepared"), "--max-images", "20"]) == 0
    text = out.read_text()
    assert "10 crops" not in text and "a random 20 of them" in text
    assert str(out) in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["report", "/no/such/run"], "run directory not found"),
    (["report", "{run}", "--val", "/no/such/data"], "validation data not found"),
    (["report", "{run}", "--max-images", "0"], "argument --max-images: must be at least 1, got 0"),
    (["report", "{run}", "--out", ""], "argument --out: must not be empty"),
    (["report", "{run}", "--out", "r.txt"], "argument --out: must end in .html or .htm"),
])
def test_report_cli_errors_are_one_line(run_dir, capsys, argv, message):
    argv = [a.replace("{run}", str(run_dir)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_run_without_config_names_no_data_it_does_not_know(run_dir, tmp_path):
    """Without a config file the run's data is unknown: the report says so (it used to describe the
    built-in demo images, what an empty config means)."""
    import shutil

    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run_dir / "weights.safetensors", bare / "weights.safetensors")
    text = build_report(bare, samples=0, ten_crop=False, progress=False).read_text(encoding="utf-8")
    assert "the run directory has no config file naming its data; give --val" in text
    assert "demo" not in text.lower()


# --- the figures themselves --------------------------------------------------------------------------------

def _captured(monkeypatch, draw):
    """The matplotlib figure a report figure function drew (it is rendered, then closed, afterwards)."""
    import alexnet.experiments.report as report_module
    import alexnet.plotting

    figures = []
    monkeypatch.setattr(report_module, "_png", lambda fig: figures.append(fig) or b"")
    draw()
    (fig,) = figures
    if not hasattr(fig.canvas, "get_renderer"):  # curves_figure's Figure is made without pyplot
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
    fig.canvas.draw()
    return fig, fig.canvas.get_renderer(), lambda: alexnet.plotting.pyplot().close(fig)


SYNSET_NAMES = ["tench, Tinca tinca", "English springer, English springer spaniel", "cassette player",
                "chain saw, chainsaw", "church, church building", "French horn, horn", "garbage truck, dustcart",
                "gas pump, gasoline pump, petrol pump, island dispenser", "golf ball", "parachute, chute"]


def test_confusion_matrix_names_classes_by_their_short_name_and_says_what_it_shows(monkeypatch):
    """Imagenette's names were cut at 18 characters mid-word ("church, church bui"), in 7 pt; the cells'
    counts did not say they were counts while the colour is a share of the row."""
    from alexnet.experiments.report import confusion_png
    from alexnet.plotting import short_class_name

    conf = np.diag(np.arange(1, 11))
    conf[7, 2] = 2
    fig, renderer, close = _captured(monkeypatch, lambda: confusion_png(conf, SYNSET_NAMES))
    try:
        ax = fig.axes[0]
        ticks = [t.get_text() for t in ax.get_yticklabels()]
        assert ticks == [short_class_name(n) for n in SYNSET_NAMES] and "gas pump" in ticks and "church" in ticks
        assert [t.get_text() for t in ax.get_xticklabels()] == ticks
        assert min(t.get_fontsize() for t in ax.get_yticklabels()) >= 8.5
        cells = [t for t in ax.texts]
        assert sorted(int(t.get_text()) for t in cells) == sorted([*range(1, 11), 2])
        assert min(t.get_fontsize() for t in cells) >= 8.5
        title = ax.get_title()
        assert "share of the true class" in title and "numbers: images" in title
        colorbar = fig.axes[1]
        assert "(%)" in colorbar.get_ylabel() and colorbar.get_ylim() == (0.0, 100.0)
        for t in ax.get_yticklabels():  # no name runs into the matrix
            assert t.get_window_extent(renderer).x1 <= ax.bbox.x0 + 1
    finally:
        close()


def _history(lrs, errors):
    return [dict(epoch=float(e), train_loss=2.0 / e, train_top1_err=err, train_top5_err=err / 2,
                 val_top1_err=err, val_top5_err=err / 3, lr=lr)
            for e, (lr, err) in enumerate(zip(lrs, errors, strict=True), 1)]


def test_report_curves_are_curves_png_with_the_learning_rate(monkeypatch):
    """The same panels as curves.png (loss left, errors right), the lr cuts marked between the epochs
    (3.5 and 7.5, where curves.png marks them; the report's stepped line used to cut at 4 and 8), the lr
    axis labelled at its decades only, the error axis fitted to the data."""
    from alexnet.experiments.report import curves_png

    lrs = [0.01] * 3 + [0.001] * 4 + [0.0001] * 3
    errors = [0.9 - 0.02 * e for e in range(10)]
    fig, renderer, close = _captured(monkeypatch, lambda: curves_png(_history(lrs, errors)))
    try:
        loss, errs, lr = fig.axes
        assert loss.get_ylabel() == "cross-entropy loss" and errs.get_ylabel() == "error (%)"
        assert lr.get_ylabel() == "learning rate" and lr.get_yscale() == "log"
        assert loss.bbox.x1 < errs.bbox.x0  # loss left, errors right
        cuts = sorted({line.get_xdata()[0] for ax in (loss, errs) for line in ax.lines
                       if line.get_linestyle() == ":"})
        assert cuts == [3.5, 7.5]
        (step,) = lr.lines
        x = step.get_xdata()
        assert x.tolist() == list(range(1, 11)) and step.get_drawstyle() == "steps-mid"  # cuts at 3.5 and 7.5
        assert [t.get_text() for t in lr.get_yticklabels(minor=True) if t.get_text()] == []
        low, high = errs.get_ylim()
        assert 18 < low < 24 and 90 < high < 95  # errors 24-90% (the lowest a top-5), not 0-100
    finally:
        close()


def test_report_lr_axis_spans_at_most_three_decades_and_says_what_falls_below(monkeypatch):
    """A cosine schedule ending at 7.5e-07 after 4.3e-03 stretched the axis over four decades."""
    from alexnet.experiments.report import curves_png

    lrs = [0.00431062, 0.00256135, 0.000776149, 7.52953e-07]
    fig, _, close = _captured(monkeypatch, lambda: curves_png(_history(lrs, [0.5, 0.37, 0.1, 0.0])))
    try:
        lr = fig.axes[2]
        low, high = lr.get_ylim()
        assert high / low <= 1e3 * 1.6 ** 2 + 1 and low > 7.52953e-07
        (legend,) = fig.legends
        assert any("falls to 7.5e-07" in t.get_text() for t in legend.get_texts())
        shown = [t.get_text() for t in lr.get_yticklabels() if t.get_text()
                 and low <= t.get_position()[1] <= high]
        assert len(shown) >= 2
    finally:
        close()
    # a rate that hardly changes still gets labels (no power of ten in its range)
    fig, _, close = _captured(monkeypatch, lambda: curves_png(_history([0.006, 0.007, 0.008], [0.5, 0.4, 0.3])))
    try:
        lr = fig.axes[2]
        low, high = lr.get_ylim()
        assert [t for t in lr.get_yticklabels() if t.get_text() and low <= t.get_position()[1] <= high]
    finally:
        close()


def test_a_run_trained_on_images_given_in_memory_is_not_evaluated_on_its_configs_data(tmp_path, tiny):
    """The final walkthrough: an ablation model's report evaluated the full held-out split of --data (66.67%
    on 12 images) where the experiment had trained and evaluated on subsets (71.43% on 7)."""
    from alexnet.training import TrainConfig, train

    cfg = TrainConfig(arch="cifar_4layer", crop_size=32, epochs=1, batch_size=16, val_split=0.25, warmup_epochs=0,
                      ten_crop=False, out=str(tmp_path / "run"))
    r = train(cfg, dataset=tiny, progress=False)
    page = build_report(r.run_dir, out=tmp_path / "r.html", samples=0, progress=False).read_text(encoding="utf-8")
    assert "trained on 48 images given in memory" in page and "give --val" in page
