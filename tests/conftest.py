import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ALEXNET_SHARED_DATA", ROOT.parent / "shared" / "data"))


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real images); tests that need it skip cleanly when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def one_thread(monkeypatch):
    """OMP_NUM_THREADS=1: the trainer then leaves torch's thread count alone (shared CI cores)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny():
    """64 generated 36px images of 4 classes, in memory: the trainer's tests' data."""
    from alexnet.data import ArrayDataset
    from alexnet.data.demo import make_demo_images

    images, labels, classes = make_demo_images(64, 36, seed=3, num_classes=4)
    return ArrayDataset(images, labels, classes=classes)


def random_image_folder(root: Path, per_class: int, size: int, classes=("a", "b"), seed: int = 0) -> Path:
    """``root/src/<class>/<i>.png``: ``per_class`` random ``size``x``size`` RGB images per class (input
    for ``prepare_dataset`` where the pictures do not matter)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in classes:
        (root / "src" / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / "src" / c / f"{i}.png")
    return root / "src"
