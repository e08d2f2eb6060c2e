"""conv1 kernels (the paper's Figure 3): towers, tiling, scaling, the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import alexnet
from alexnet.cli.main import main
from alexnet.inspect.kernels import _normalise, conv1_kernels, tile
from alexnet.weights import save_weights


def test_paper_net_has_two_towers_of_48():
    model = alexnet.create_model("alexnet")
    towers = conv1_kernels(model)
    w = model.features.conv1.weight.detach()
    assert [t.shape for t in towers] == [(48, 3, 11, 11), (48, 3, 11, 11)]
    assert torch.equal(towers[0], w[:48]) and torch.equal(towers[1], w[48:])
    # conv2's first group reads exactly conv1's first 48 maps: that is what makes them a tower
    assert model.features.conv2.groups == 2 and model.features.conv2.weight.shape[1] == 48


@pytest.mark.parametrize("name,options,shapes", [
    ("alexnet", {"towers": 1}, [(48, 3, 11, 11)]),
    ("alexnet_owt", {}, [(64, 3, 11, 11)]),
    ("cifar_4layer", {}, [(32, 3, 5, 5)]),
])
def test_single_tower_models(name, options, shapes):
    assert [t.shape for t in conv1_kernels(alexnet.create_model(name, **options))] == shapes


def test_tile_places_each_kernel_and_scaling_spans_full_range():
    k = torch.randn(20, 3, 5, 5)
    normed = _normalise(k, "kernel", 0.0)
    assert np.allclose(normed.reshape(20, -1).min(1), 0) and np.allclose(normed.reshape(20, -1).max(1), 1)
    grid = tile(normed, columns=8, pad=1)
    assert grid.shape == (3 * 6 + 1, 8 * 6 + 1, 3)
    r, c = divmod(13, 8)
    assert np.array_equal(grid[1 + r * 6:1 + r * 6 + 5, 1 + c * 6:1 + c * 6 + 5], normed[13])
    glob = _normalise(k, "global", float(k.abs().max()))
    zero = _normalise(torch.zeros(1, 3, 2, 2), "global", 1.0)
    assert glob.min() >= 0 and glob.max() <= 1 and np.allclose(zero, 0.5)  # 0 is mid-grey


def test_kernels_cli_writes_a_png(tmp_path, capsys):
    torch.manual_seed(0)
    model = alexnet.create_model("alexnet")
    weights = save_weights(tmp_path / "w.safetensors", model)
    out = tmp_path / "conv1.png"
    assert main(["kernels", "--weights", str(weights), "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 400
    assert out.stat().st_size < 200_000
    assert main(["kernels", "--weights", str(tmp_path / "nope.safetensors"), "--out", str(out)]) == 2
    assert "not found" in capsys.readouterr().err


def _captured_title(monkeypatch):
    """Run plot_kernels without writing: the figure's suptitle as drawn."""
    import alexnet.inspect.kernels as kernels

    seen = {}

    def keep(fig, out, **kw):
        seen["title"] = fig._suptitle.get_text() if fig._suptitle is not None else None
        kernels.pyplot().close(fig)
        return out

    monkeypatch.setattr(kernels, "save_figure", keep)
    return seen


def test_default_title_says_whose_kernels_and_how_they_are_scaled(tmp_path, monkeypatch):
    from alexnet.inspect.kernels import default_title, plot_kernels

    torch.manual_seed(0)
    path = save_weights(tmp_path / "cifar_sweep_lr0.05.safetensors", alexnet.create_model("cifar_4layer"))
    model = alexnet.load(path)
    title = default_title(model, "kernel")
    assert title == ("conv1 of cifar_sweep_lr0.05.safetensors (cifar_4layer)\n"
                     "32 kernels 5x5x3, each kernel scaled to its own range")
    assert default_title(model, "global").endswith("32 kernels 5x5x3, one scale for all, 0 = grey")
    run = tmp_path / "run7"
    run.mkdir()
    save_weights(run / "weights.safetensors", alexnet.create_model("alexnet", num_classes=10, towers=1),
                 model_options={"towers": 1})
    assert default_title(alexnet.load(run)).startswith("conv1 of run7/ (alexnet towers=1)\n48 kernels 11x11x3")
    assert default_title(alexnet.load(run / "weights.safetensors")).startswith(
        "conv1 of run7/weights.safetensors (alexnet towers=1)")
    long = default_title(alexnet.load(path), width=40).splitlines()
    assert all(len(line) <= 40 for line in long) and "..." in long[0] and long[0].endswith("(cifar_4layer)")
    assert default_title(alexnet.create_model("alexnet_owt")).startswith("conv1 of alexnet_owt\n64 kernels")
    # the figure carries it, and a title given by the user wins (an empty one: no title)
    seen = _captured_title(monkeypatch)
    plot_kernels(model, tmp_path / "k.png", scale="global")
    assert seen["title"] == default_title(model, "global")
    plot_kernels(model, tmp_path / "k.png", title="mine")
    assert seen["title"] == "mine"
    plot_kernels(model, tmp_path / "k.png", title="")
    assert not seen["title"]


def _flat_kernels(model, strong: int = 2):
    """conv1 as in a net killed by too high an lr: near-constant kernels, a few with large weights."""
    g = torch.Generator().manual_seed(0)
    w = model.features.conv1.weight
    with torch.no_grad():
        w.copy_(torch.randn(w.shape[0], 3, 1, 1, generator=g) * 0.05 + torch.randn(w.shape, generator=g) * 1e-3)
        w[:strong] = torch.randn(w[:strong].shape, generator=g)
    return model


def test_faint_kernels_counts_what_one_scale_shows_as_flat():
    from alexnet.inspect.kernels import faint_kernels

    torch.manual_seed(0)
    for name in ("alexnet", "alexnet_owt", "cifar_4layer"):  # fresh initialisations: none faint
        assert faint_kernels(alexnet.create_model(name))[0] == 0
    model = _flat_kernels(alexnet.create_model("cifar_4layer"))
    assert faint_kernels(model) == (30, 32)
    with torch.no_grad():
        model.features.conv1.weight.mul_(1e-6)  # scale-free: the same picture at any magnitude
    assert faint_kernels(model) == (30, 32)


def test_kernels_cli_notes_flat_kernels_only_when_stretching_them(tmp_path, capsys):
    flat = save_weights(tmp_path / "dead.safetensors", _flat_kernels(alexnet.create_model("cifar_4layer")))
    torch.manual_seed(0)
    fresh = save_weights(tmp_path / "fresh.safetensors", alexnet.create_model("cifar_4layer"))
    out = str(tmp_path / "k.png")
    assert main(["kernels", "--weights", str(flat), "--out", out]) == 0
    err = capsys.readouterr().err
    assert "note: 30 of 32 kernels are nearly flat" in err and "--scale global" in err
    assert main(["kernels", "--weights", str(flat), "--out", out, "--scale", "global"]) == 0
    assert "note:" not in capsys.readouterr().err
    assert main(["kernels", "--weights", str(fresh), "--out", out]) == 0
    assert "note:" not in capsys.readouterr().err
