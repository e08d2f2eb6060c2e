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
