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
