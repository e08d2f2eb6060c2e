"""The built-in demo: generated data, and (slow) the README's first command end to end."""

import json
import subprocess
import sys

import numpy as np
import pytest

from alexnet.data.demo import DEMO_CLASSES, make_demo_images
from alexnet.training import DEMO_RECIPE, TrainConfig, departures


def test_demo_images_are_reproducible_balanced_and_varied():
    a, la, names = make_demo_images(40, 64, seed=5)
    b, lb, _ = make_demo_images(40, 64, seed=5)
    c, _, _ = make_demo_images(40, 64, seed=6)
    assert a.dtype == np.uint8 and a.shape == (40, 64, 64, 3)
    assert np.array_equal(a, b) and np.array_equal(la, lb) and not np.array_equal(a, c)
    assert len(names) == len(DEMO_CLASSES) >= 8
    assert np.bincount(la, minlength=10).tolist() == [4] * 10  # balanced
    # not blank: every image has contrast, and images of one class differ from each other
    assert all(img.std() > 10 for img in a)
    same = np.flatnonzero(la == la[0])
    assert not np.array_equal(a[same[0]], a[same[1]])


def test_demo_recipe_uses_a_registered_imagenet_geometry_model():
    from alexnet.models import model_info

    c = TrainConfig.demo()
    assert model_info(c.arch).input_size == 224 and c.crop_size is None and c.demo_size >= 224
    assert c.demo_classes >= 8 and DEMO_RECIPE["arch"] == c.arch
    assert departures(c)  # and it says where it departs from the paper


@pytest.mark.slow
def test_the_demo_trains_to_at_most_half_error(tmp_path):
    # The README's first command, as is (minutes on 2 CPU cores).
    r = subprocess.run([sys.executable, "-m", "alexnet", "train", "--out", str(tmp_path / "demo")],
                       capture_output=True, text=True, timeout=1200, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "departs from the paper" in r.stdout
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["val_top1_err"] <= 0.5, summary
    for name in ("metrics.csv", "curves.png", "last.pt", "best.pt", "weights.safetensors", "config.yaml"):
        assert (tmp_path / "demo" / name).is_file()
