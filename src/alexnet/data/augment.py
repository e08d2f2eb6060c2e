"""The paper's augmentation on batches: random crops + mirror images, "fancy PCA" lighting, the mean.

All of it is a function of a per-epoch *plan* drawn up front from ``(seed, epoch)`` (the order and, for
every position of the epoch, crop offset, mirror flag and lighting alphas), so any batch can be rebuilt
exactly, on any device, by any worker, in any order: that is what makes the loader reproducible,
shardable across DDP ranks and resumable mid-epoch without decoding the skipped batches.

Two implementations of the same arithmetic, ``x = crop(pixels) + shift - crop(mean)`` (then mirrored,
then ``/ std`` if given):
- :func:`normalize_one` / :func:`ten_crop_one`: per image on CPU, writing straight into the batch, so
  a 224x224 crop is converted to float once while it is still in cache (what the CPU loader runs);
- :func:`normalize_batch` / :func:`ten_crop_batch`: the whole batch at once with gathers, for the
  GPU (no Python loop over images); :func:`augment_batch` is the loader's whole batched step, which
  ``torch.compile`` turns into one kernel. Tests check that both agree.
"""

from __future__ import annotations

import numpy as np
import torch

from alexnet.data.crops import ten_crop_offsets

# The paper's sigma for the lighting alphas: "alpha_i ~ N(0, 0.1)".
PAPER_LIGHTING_STD = 0.1


def epoch_plan(n: int, *, seed: int, epoch: int, size: int, crop: int, lighting: float) -> dict:
    """The random choices of one training epoch over ``n`` items, all drawn from ``(seed, epoch)``.

    ``order`` is a permutation of ``range(n)``; ``ys``, ``xs``, ``flip``, ``alpha`` belong to the epoch's
    positions (position ``p`` shows item ``order[p]``), so they do not depend on how the epoch is later
    split across ranks or workers.
    """
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(epoch)])))
    order = rng.permutation(n)
    span = size - crop + 1
    ys = rng.integers(0, span, n, dtype=np.int64)
    xs = rng.integers(0, span, n, dtype=np.int64)
    flip = rng.random(n) < 0.5
    alpha = (rng.standard_normal((n, 3)) * lighting).astype(np.float32)
    return {"order": order, "ys": ys, "xs": xs, "flip": flip, "alpha": alpha}


def lighting_shift(alpha: np.ndarray, eigval: np.ndarray, eigvec: np.ndarray) -> np.ndarray:
    """Per-image RGB shift in 0..255 units: ``255 * eigvec @ (alpha * eigval)`` for each row of ``alpha``.

    The paper: add ``[p1 p2 p3][a1 l1, a2 l2, a3 l3]^T`` to every pixel, ``p_i``/``l_i`` the eigenvectors
    and eigenvalues of the RGB covariance. Ours are of pixels in 0..1 (as the published values), hence
    the factor 255. Nothing is clipped (neither the paper nor cuda-convnet clip).
    """
    return (255.0 * (np.asarray(alpha, np.float64) * np.asarray(eigval)) @ np.asarray(eigvec).T).astype(
        np.float32)


# --------------------------------------------------------------------------- per image (CPU)
# numpy, not torch: a torch op on one 224x224x3 crop is big enough for torch's intra-op thread pool,
# and OpenMP teams started from several loader threads at once (plus the training loop's) thrash the
# CPU; numpy runs each call on the calling thread and releases the GIL. Mirroring is a free
# negative-stride view.

def normalize_one(src: np.ndarray, mean: np.ndarray, y: int, x: int, flip: bool,
                  shift: np.ndarray | None, inv_std: np.ndarray | None, out: np.ndarray) -> None:
    """One crop into ``out`` (3, C, C) float32: ``(src + shift - mean)[crop]``, mirrored, ``* inv_std``.

    ``src``: uint8 (3, S, S) with any strides (e.g. a transposed HWC view of a shard); ``mean``:
    float32 (3, S, S); ``shift`` and ``inv_std``: (3,) float32 or None.
    """
    c = out.shape[-1]
    img = src[:, y:y + c, x:x + c]
    m = mean[:, y:y + c, x:x + c]
    if flip:
        img, m = img[:, :, ::-1], m[:, :, ::-1]
    out[...] = img  # the one uint8 -> float32 conversion
    out -= m
    if shift is not None:
        out += shift[:, None, None]
    if inv_std is not None:
        out *= inv_std[:, None, None]


def ten_crop_one(src: np.ndarray, mean: np.ndarray, inv_std: np.ndarray | None, out: np.ndarray) -> None:
    """The ten test patches of one image into ``out`` (10, 3, C, C): five crops, then their mirrors."""
    c, s = out.shape[-1], src.shape[-1]
    for k, (y, x) in enumerate(ten_crop_offsets(s, c)):
        normalize_one(src, mean, y, x, False, None, inv_std, out[k])
        np.copyto(out[k + 5], out[k][:, :, ::-1])  # mirror image of the same patch


# --------------------------------------------------------------------------- whole batch (GPU)

def _gather(images_hwc: torch.Tensor, mean_hwc: torch.Tensor, batch: torch.Tensor, ys: torch.Tensor,
            xs: torch.Tensor, flip: torch.Tensor, crop: int, shift, inv_std) -> torch.Tensor:
    dev = images_hwc.device
    ar = torch.arange(crop, device=dev)
    rows = (ys[:, None] + ar)[:, :, None]  # (N, C, 1)
    cols = (xs[:, None] + torch.where(flip[:, None], crop - 1 - ar, ar))[:, None, :]  # (N, 1, C), mirrored
    x = images_hwc[batch[:, None, None], rows, cols].float()  # (N, C, C, 3)
    x -= mean_hwc[rows, cols]
    if shift is not None:
        x += shift[:, None, None, :]
    if inv_std is not None:
        x *= inv_std.view(1, 1, 1, 3)
    return x.permute(0, 3, 1, 2)  # (N, 3, C, C), channels-last strides


def normalize_batch(images: torch.Tensor, mean_hwc: torch.Tensor, ys, xs, flip, crop: int,
                    shift: torch.Tensor | None = None, inv_std: torch.Tensor | None = None,
                    layout: str = "hwc") -> torch.Tensor:
    """Batched crop + mirror + lighting + mean (+ std) on ``images``' device.

    ``images``: uint8 (B, S, S, 3) (``layout="hwc"``) or (B, 3, S, S) (``"chw"``, e.g. from decode_jpeg);
    ``mean_hwc``: float32 (S, S, 3) on the same device; ``ys``, ``xs`` (B,) int64, ``flip`` (B,) bool;
    ``shift`` (B, 3) or None; ``inv_std`` (3,) or None. Returns float32 (B, 3, C, C) (channels-last
    strides; call ``.contiguous()`` for NCHW memory).
    """
    hwc = images if layout == "hwc" else images.permute(0, 2, 3, 1)
    b = torch.arange(hwc.shape[0], device=hwc.device)
    return _gather(hwc, mean_hwc, b, ys, xs, flip, crop, shift, inv_std)


def ten_crop_batch(images: torch.Tensor, mean_hwc: torch.Tensor, crop: int,
                   inv_std: torch.Tensor | None = None, layout: str = "hwc") -> torch.Tensor:
    """The ten test patches of every image: float32 (B, 10, 3, C, C) (five crops, then their mirrors)."""
    hwc = images if layout == "hwc" else images.permute(0, 2, 3, 1)
    n, s, dev = hwc.shape[0], hwc.shape[1], hwc.device
    offs = torch.tensor(ten_crop_offsets(s, crop), device=dev)  # (5, 2)
    ys = offs[:, 0].repeat(2).repeat(n)
    xs = offs[:, 1].repeat(2).repeat(n)
    flip = torch.arange(10, device=dev).ge(5).repeat(n)
    b = torch.arange(n, device=dev).repeat_interleave(10)
    x = _gather(hwc, mean_hwc, b, ys, xs, flip, crop, None, inv_std)
    return x.reshape(n, 10, 3, crop, crop)


def augment_batch(images: torch.Tensor, mean_hwc: torch.Tensor, ys: torch.Tensor | None, xs: torch.Tensor | None,
                  flip: torch.Tensor | None, shift: torch.Tensor | None, inv_std: torch.Tensor | None, *,
                  crop: int, layout: str, ten_crop: bool, channels_last: bool) -> torch.Tensor:
    """The loader's batched step on a uint8 batch: :func:`normalize_batch` (or :func:`ten_crop_batch`,
    which ignores ``ys``, ``xs``, ``flip`` and ``shift``), in the memory format the model wants. Pure
    tensor code with its choices as keyword constants, so ``torch.compile`` makes it one gather kernel."""
    if ten_crop:
        return ten_crop_batch(images, mean_hwc, crop, inv_std, layout).contiguous()
    x = normalize_batch(images, mean_hwc, ys, xs, flip, crop, shift, inv_std, layout)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()
