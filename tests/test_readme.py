"""README's and docs/'s Python snippets run as written, on a CPU, on tiny stand-ins for the files they name.

The Quick start's shell commands are run by .ci/run itself; this runs every ```python block of README.md,
in order, in one namespace, and then those of each docs/*.md page (each page in a namespace of its own:
a page is read on its own), in a folder holding what the snippets refer to (a prepared ``data/imagenette`` and
``data/imagenette-val``, a run directory ``runs/imagenette``, ``cat.jpg`` and ``dog.png``), with the
torchvision weights record pointed at a local file (nothing is downloaded in tests).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import alexnet
from alexnet.data import prepare_dataset
from alexnet.weights import records, save_weights

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))


def python_blocks(page: Path = README) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.S | re.M)


def run_blocks(page: Path) -> dict:
    """Run every python block of ``page``, in order, in one fresh namespace; fail naming the block."""
    namespace: dict = {}
    name = page.relative_to(ROOT)
    for i, block in enumerate(python_blocks(page), 1):
        try:
            exec(compile(block, f"{name} python block {i}", "exec"), namespace)
        except Exception as e:  # noqa: BLE001 (the failing block is the message)
            pytest.fail(f"{name} python block {i} failed: {type(e).__name__}: {e}\n{block}")
    return namespace


@pytest.fixture
def readme_world(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    rng = np.random.default_rng(0)
    for c in ("n01440764", "n02102040"):
        (tmp_path / "src" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(tmp_path / "src" / c / f"{i}.jpg")
    for name in ("imagenette", "imagenette-val"):
        prepare_dataset(tmp_path / "src", tmp_path / "data" / name, workers=1, progress=False)
    Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(tmp_path / "cat.jpg")
    Image.fromarray(rng.integers(0, 255, (70, 70, 3), dtype=np.uint8)).save(tmp_path / "dog.png")
    torch.manual_seed(0)
    classes = [{"index": i, "wnid": w, "name": w} for i, w in enumerate(("n01440764", "n02102040"))]
    save_weights(tmp_path / "runs" / "imagenette" / "weights.safetensors",
                 alexnet.create_model("alexnet_owt", num_classes=2).eval(), classes=classes)
    # torchvision's published weights, served from a local file (the record's name carries its hash)
    tv = alexnet.create_model("alexnet_owt").eval()
    staging = tmp_path / "served"
    staging.mkdir()
    torch.save(tv.state_dict(), staging / "w.pth")
    digest = hashlib.sha256((staging / "w.pth").read_bytes()).hexdigest()[:8]
    served = (staging / "w.pth").rename(staging / f"alexnet-owt-{digest}.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    record = dataclasses.replace(records.TORCHVISION, url=served.as_uri(), sha256_prefix=digest)
    monkeypatch.setitem(records.RECORDS, "torchvision", record)
    monkeypatch.setattr(alexnet.weights, "TORCHVISION", record)
    # the exported file WEIGHTS.md's onnxruntime snippet reads (the onnx extra is part of [dev])
    from alexnet.weights.onnx import export_onnx

    export_onnx(alexnet.load(tmp_path / "runs" / "imagenette" / "weights.safetensors", progress=False),
                tmp_path / "alexnet.onnx")
    return tmp_path


def test_readme_and_docs_have_python_snippets():
    assert len(python_blocks()) >= 2
    pages = {p.name: len(python_blocks(p)) for p in DOCS}
    assert pages.get("DATA.md") and pages.get("EVALUATION.md") and pages.get("WEIGHTS.md"), pages


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_every_readme_python_snippet_runs(readme_world, capsys):
    namespace = run_blocks(README)
    assert namespace["feats"].shape == (2, 4096)  # the Models block's fc7 features
    assert "cat.jpg" in capsys.readouterr().out  # the predict block's predictions


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_every_docs_python_snippet_runs(readme_world, capsys):
    ran = {}
    for page in DOCS:
        if python_blocks(page):
            ran[page.name] = run_blocks(page)
    assert ran["WEIGHTS.md"]["x"].shape == (3, 224, 224)  # torchvision's transforms of cat.jpg
    assert ran["WEIGHTS.md"]["logits"].shape == (1, 2)  # onnxruntime on the exported file
    assert ran["EVALUATION.md"]["result"].images == 6  # evaluated every image of data/imagenette-val
    assert "cat.jpg" in capsys.readouterr().out  # EVALUATION.md's predictions
