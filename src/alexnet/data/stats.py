"""Training-set statistics: the mean image and the RGB PCA used by the paper's "fancy PCA" lighting.

Units (kept in ``meta.json`` as ``pca_units``):
- ``mean_image`` (S, S, 3) and ``mean_rgb`` (3,) are in 0..255 pixel units.
- ``pca_eigval`` / ``pca_eigvec`` are the eigen-decomposition of the 3x3 covariance of RGB pixel values
  **scaled to 0..1**, eigenvalues descending, eigenvectors as columns (rows R, G, B). This is the
  convention of the published ImageNet values in docs/PAPER.md (eigval 0.2175, 0.0188, 0.0045), so a
  dataset's own numbers compare with them directly. The paper adds ``sum_i alpha_i lambda_i p_i`` to
  each pixel; in 0..255 units that shift is ``255 * eigvec @ (alpha * eigval)`` (see ``augment.py``).
  Eigenvector signs are arbitrary (alpha is symmetric about 0).
"""

from __future__ import annotations

import numpy as np

PCA_UNITS = ("eigen-decomposition of the covariance of RGB pixel values scaled to 0..1 (the scale of "
             "the ImageNet values usually quoted); eigenvalues descending; eigenvectors are the columns of "
             "pca_eigvec, rows R,G,B; the lighting shift in 0..255 units is 255 * eigvec @ (alpha * eigval)")

# The ImageNet values usually quoted (the paper prints none; docs/PAPER.md), for reference and comparison only.
IMAGENET_PCA_EIGVAL = np.array([0.2175, 0.0188, 0.0045])
IMAGENET_PCA_EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],
                                [-0.5808, -0.0045, -0.8140],
                                [-0.5836, -0.6948, 0.4203]])


class PixelStats:
    """Accumulates the per-pixel sum (-> mean image) and the RGB first and second moments.

    Everything is integer, hence exact and independent of the order in which parallel workers' partial
    results are merged. (Integer numpy loops, not BLAS: a 65536x3 matrix product is slow in BLAS and its
    threads thrash a shared CPU.)
    """

    _FLUSH = 65_000  # images summed in uint32 before moving to uint64 (65,000 * 255 < 2^32)

    def __init__(self, size: int):
        self.size = size
        self.count = 0
        self.image_sum = np.zeros((size, size, 3), np.uint64)
        self._acc = np.zeros((size, size, 3), np.uint32)  # fast running sum, flushed into image_sum
        self._acc_n = 0
        self.rgb_sum = np.zeros(3, np.int64)
        self.rgb_outer = np.zeros((3, 3), np.int64)  # sum over pixels of x x^T

    def add(self, img: np.ndarray) -> None:
        """Add one (S, S, 3) uint8 image."""
        self.add_batch(img[None])

    def add_batch(self, imgs: np.ndarray) -> None:
        """Add a batch (N, S, S, 3) of uint8 images."""
        if len(imgs) == 0:
            return
        for img in imgs:
            np.add(self._acc, img, out=self._acc)
            self._acc_n += 1
            if self._acc_n >= self._FLUSH:
                self._flush()
        self.count += len(imgs)
        c = np.empty((3, imgs.shape[0] * imgs.shape[1] * imgs.shape[2]), np.int32)
        c[...] = imgs.reshape(-1, 3).T
        self.rgb_sum += c.sum(axis=1, dtype=np.int64)
        for i in range(3):
            for j in range(i, 3):
                self.rgb_outer[i, j] += (c[i] * c[j]).sum(dtype=np.int64)  # 255^2 fits int32
                self.rgb_outer[j, i] = self.rgb_outer[i, j]

    def _flush(self) -> None:
        self.image_sum += self._acc
        self._acc[...] = 0
        self._acc_n = 0

    def merge(self, other: PixelStats) -> None:
        other._flush()
        self._flush()
        self.count += other.count
        self.image_sum += other.image_sum
        self.rgb_sum += other.rgb_sum
        self.rgb_outer += other.rgb_outer

    # -- saving partial results (prepare workers) -----------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        self._flush()
        return {"count": np.array(self.count), "image_sum": self.image_sum, "rgb_sum": self.rgb_sum,
                "rgb_outer": self.rgb_outer}

    @classmethod
    def from_state(cls, state) -> PixelStats:
        s = cls(int(state["image_sum"].shape[0]))
        s.count = int(state["count"])
        s.image_sum = np.asarray(state["image_sum"], np.uint64)
        s.rgb_sum = np.asarray(state["rgb_sum"], np.int64)
        s.rgb_outer = np.asarray(state["rgb_outer"], np.int64)
        return s

    # -- results -----------------------------------------------------------------------------------
    def result(self) -> dict:
        """``mean_image`` float32 (S,S,3), ``mean_rgb``, ``std_rgb`` (0..255), ``pca_eigval`` (3,),
        ``pca_eigvec`` (3,3) (see the module docstring for units)."""
        self._flush()
        if self.count == 0:
            z = np.zeros(3)
            return {"mean_image": np.zeros((self.size, self.size, 3), np.float32), "mean_rgb": z,
                    "std_rgb": z, "pca_eigval": z, "pca_eigvec": np.eye(3)}
        n_pix = self.count * self.size * self.size
        mean = self.rgb_sum.astype(np.float64) / n_pix
        cov = self.rgb_outer.astype(np.float64) / n_pix - np.outer(mean, mean)
        cov = (cov + cov.T) / 2
        eigval, eigvec = pca_of_covariance(cov / 255.0**2)
        return {"mean_image": (self.image_sum / self.count).astype(np.float32), "mean_rgb": mean,
                "std_rgb": np.sqrt(np.clip(np.diag(cov), 0, None)), "pca_eigval": eigval,
                "pca_eigvec": eigvec}


def pca_of_covariance(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending, clipped at 0) and eigenvectors (columns) of a symmetric 3x3 matrix."""
    eigval, eigvec = np.linalg.eigh(cov)
    order = np.argsort(eigval)[::-1]
    eigval, eigvec = np.clip(eigval[order], 0, None), eigvec[:, order]
    # A fixed sign per column (largest component positive) so the numbers are reproducible.
    signs = np.sign(eigvec[np.abs(eigvec).argmax(axis=0), np.arange(3)])
    return eigval, eigvec * np.where(signs == 0, 1, signs)


def compute_stats(images: np.ndarray) -> dict:
    """Statistics of an in-memory (N, S, S, 3) uint8 array (see :meth:`PixelStats.result`)."""
    st = PixelStats(images.shape[1])
    chunk = max(1, (1 << 21) // (images.shape[1] * images.shape[2]))  # ~2M pixels at a time
    for i in range(0, len(images), chunk):
        st.add_batch(np.asarray(images[i:i + chunk]))
    return st.result()
