"""The built-in demo dataset: procedural images of 10 classes, drawn with numpy on the fly.

``alexnet train`` with no ``--data`` trains on it, so that the first command of the README shows the whole
pipeline (augmentation, training, validation, 10-crop, run directory) without downloading anything.

Each class is a kind of picture: a shape (disc, square, triangle, ring, cross) or a texture (horizontal,
vertical or diagonal stripes, checkerboard, dots) at a random position, size, orientation and phase,
over a background with a colour gradient and pixel noise. Colour is a second, coarse cue (see
``_colours``): five foreground hues, each shared by two classes, one on dark and one on light
backgrounds. That is what lets an ImageNet-sized network get most of the demo right in about a hundred
SGD steps on a CPU; ``colour_cue=False`` draws every colour at random (shape and texture alone, a much
slower task). Images are stored as uint8 RGB (N, size, size, 3), like a prepared dataset, and random
``crop_size`` crops of them are taken as usual.

The same ``seed`` always gives the same images, on any machine (numpy's PCG64 generator).
"""

from __future__ import annotations

import numpy as np

DEMO_CLASSES = ("disc", "square", "triangle", "ring", "cross",
                "horizontal stripes", "vertical stripes", "diagonal stripes", "checkerboard", "dots")


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    """One HSV colour (h in turns, s and v in 0..1) as RGB in 0..255."""
    k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
    return 255.0 * v * (1.0 - s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0))


def _colours(rng: np.random.Generator, kind: int, num_classes: int,
             colour_cue: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Background (two gradient ends) and foreground colours, the foreground far enough from both.

    With ``colour_cue`` colour carries part of the class, coarsely enough to be learnt in a hundred steps:
    classes come in pairs that share a foreground hue (``num_classes / 2`` hues evenly round the colour
    wheel, with jitter), and the two of a pair differ in background brightness (dark or light) and, like
    every class, in shape. Without it every colour is random (shape and texture alone).
    """
    while True:
        if colour_cue:
            hues = (num_classes + 1) // 2
            hue = (kind // 2 + rng.uniform(-0.2, 0.2)) / hues
            fg = _hsv_to_rgb(hue, rng.uniform(0.7, 1.0), rng.uniform(0.8, 1.0))
            lo, hi = (0.05, 0.35) if kind % 2 == 0 else (0.65, 0.95)
            bg0, bg1 = (_hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0, 0.3), rng.uniform(lo, hi))
                        for _ in range(2))
        else:
            bg0, bg1, fg = rng.uniform(0, 255, size=(3, 3))
        bg1 = 0.6 * bg0 + 0.4 * bg1  # a gentle gradient
        if min(np.abs(fg - bg0).sum(), np.abs(fg - bg1).sum()) > 150:
            return bg0, bg1, fg


def _mask(kind: int, yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """A float mask in [0, 1] of the class's shape or texture; coordinates are in pixels."""
    if kind <= 4:  # a shape at a random centre, radius and angle
        r = rng.uniform(0.18, 0.32) * size
        cy, cx = rng.uniform(r + 0.1 * size, size - r - 0.1 * size, size=2)
        a = rng.uniform(0, 2 * np.pi)
        dy, dx = yy - cy, xx - cx
        u = dx * np.cos(a) + dy * np.sin(a)  # rotated coordinates
        v = -dx * np.sin(a) + dy * np.cos(a)
        d = np.hypot(dy, dx)
        if kind == 0:  # disc
            return d < r
        if kind == 1:  # square
            return np.maximum(np.abs(u), np.abs(v)) < 0.8 * r
        if kind == 2:  # equilateral triangle: inside three half-planes
            inside = np.ones_like(d, dtype=bool)
            for k in range(3):
                t = a + 2 * np.pi * k / 3
                inside &= dx * np.cos(t) + dy * np.sin(t) < 0.5 * r
            return inside
        if kind == 3:  # ring
            return (d < r) & (d > 0.6 * r)
        # cross
        w = 0.3 * r
        return ((np.abs(u) < w) & (np.abs(v) < r)) | ((np.abs(v) < w) & (np.abs(u) < r))
    period = rng.uniform(0.09, 0.16) * size
    phase = rng.uniform(0, period)
    if kind == 5:  # horizontal stripes
        return ((yy + phase) % period) < period / 2
    if kind == 6:  # vertical stripes
        return ((xx + phase) % period) < period / 2
    if kind == 7:  # diagonal stripes, either diagonal
        s = 1 if rng.random() < 0.5 else -1
        return ((xx + s * yy + phase) % (period * 1.4)) < period * 0.7
    if kind == 8:  # checkerboard
        return (((yy + phase) // period + (xx + phase) // period) % 2) == 0
    # dots on a grid
    qy = (yy + phase) % period - period / 2
    qx = (xx + phase) % period - period / 2
    return np.hypot(qy, qx) < period * 0.28


def make_demo_images(num_images: int, size: int = 256, *, seed: int = 0, num_classes: int = len(DEMO_CLASSES),
                     colour_cue: bool = True) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(images uint8 (N, size, size, 3), labels int64 (N,), class names)``, classes balanced."""
    if not 2 <= num_classes <= len(DEMO_CLASSES):
        raise ValueError(f"num_classes must be in 2..{len(DEMO_CLASSES)}")
    rng = np.random.default_rng(seed)
    labels = np.arange(num_images, dtype=np.int64) % num_classes
    rng.shuffle(labels)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    ramp_dir = np.stack([yy, xx]) / (size - 1)  # (2, S, S)
    images = np.empty((num_images, size, size, 3), dtype=np.uint8)
    for i, kind in enumerate(labels):
        bg0, bg1, fg = _colours(rng, int(kind), num_classes, colour_cue)
        ang = rng.uniform(0, 2 * np.pi)
        t = np.float32(np.cos(ang)) * ramp_dir[0] + np.float32(np.sin(ang)) * ramp_dir[1]
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)  # 0..1 along a random direction
        m = _mask(int(kind), yy, xx, rng, size)
        # background gradient bg0 -> bg1, foreground colour where the mask is set
        img = np.where(m[..., None], fg.astype(np.float32), bg0.astype(np.float32) + t[..., None] * (bg1 - bg0).astype(np.float32))
        img += rng.standard_normal(img.shape, dtype=np.float32) * 12  # pixel noise
        images[i] = np.clip(img, 0, 255).astype(np.uint8)
    return images, labels, list(DEMO_CLASSES[:num_classes])


def demo_dataset(num_images: int = 800, size: int = 256, *, seed: int = 0,
                 num_classes: int = len(DEMO_CLASSES)):
    """The demo images as an in-memory :class:`alexnet.data.ArrayDataset` (mean image and PCA computed)."""
    from alexnet.data import ArrayDataset  # here: the data package imports this module

    images, labels, classes = make_demo_images(num_images, size, seed=seed, num_classes=num_classes)
    return ArrayDataset(images, labels, classes=classes)
