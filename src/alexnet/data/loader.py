"""``Loader``: batches of a prepared (or in-memory) dataset, augmented, on the target device.

How it is fast on a CPU: there is no per-sample Python object, collate or inter-process copy. Each
batch is built by worker *threads* straight into its output tensor, image by image: the crop of the
stored 256x256 uint8 image (a view of the memory-mapped shard, or the output of libjpeg-turbo's
decoder) is converted to float once, with mean, lighting and mirror applied in the same pass while it
is in cache. The heavy calls (JPEG decoding, tensor arithmetic) release the GIL, so threads scale.
Output buffers are recycled once the consumer has dropped every reference to them (checked with the
storage's reference count), which saves the page faults of a fresh 77 MB tensor per batch.

On CUDA (``augment="batched"``, the default there) the worker threads only gather bytes: a batch's
stored uint8 images into a pinned buffer with one vectorised copy per shard (or, for JPEG datasets, the
compressed bytes handed to nvJPEG via ``decode_jpeg(device="cuda")``, TorchCodec's or torchvision's).
The thread that iterates the loader (the training loop's) then issues one host-to-device copy per batch
on a copy stream, and the whole augmentation (crop, mirror, lighting, mean, std) as one batched step on
its current stream, where the training step follows: :func:`~alexnet.data.augment.augment_batch`,
compiled into one kernel with ``compile=True`` (the trainer does when it compiles the model). The crop
offsets, mirror flags, lighting shifts and labels of the whole epoch go to the GPU once per epoch. So no
worker thread launches a kernel or holds the GIL for long, and the training thread adds a copy and (compiled)
one kernel per batch.
``augment="workers"`` is the earlier CUDA path, kept for comparison in ``benchmarks/gpu.py``: each
worker thread copies and augments its batch on its own side stream.

Order and augmentation come from a per-epoch plan (see :mod:`alexnet.data.augment`); sharding across
DDP ranks takes a strided share of the epoch's positions:
- train: every rank gets ``len // world_size`` positions (the remainder is dropped for this epoch,
  different images each epoch); the shares are disjoint and equal-sized, so ranks step in lockstep.
- eval: rank r gets positions ``r, r + world_size, ...``: every image exactly once over all ranks; the
  first ``len % world_size`` ranks get one image more (reduce sums of correct counts, not means).
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections import deque
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from alexnet import runtime
from alexnet.data.augment import (
    PAPER_LIGHTING_STD,
    augment_batch,
    epoch_plan,
    lighting_shift,
    normalize_one,
    ten_crop_one,
)
from alexnet.data.crops import center_offset
from alexnet.data.format import decode_stored
from alexnet.errors import BadOptionError

try:  # the storage reference count tells when the consumer has let go of a batch (see _BufferPool)
    _storage_use_count = torch._C._storage_Use_Count
except AttributeError:  # pragma: no cover
    _storage_use_count = None


class _BufferPool:
    """Reuses big CPU output tensors once nothing outside the pool refers to their storage."""

    def __init__(self, limit: int):
        self.limit = limit
        self.bufs: list[tuple[torch.Tensor, int]] = []

    def get(self, shape: tuple[int, ...]) -> torch.Tensor:
        if _storage_use_count is not None:
            for buf, idle in self.bufs:
                if buf.shape == shape and _storage_use_count(buf.untyped_storage()._cdata) == idle:
                    return buf.view(shape)  # a new tensor: the count goes up until it is dropped
        t = torch.empty(shape, dtype=torch.float32)
        if _storage_use_count is not None and len(self.bufs) < self.limit:
            self.bufs.append((t, _storage_use_count(t.untyped_storage()._cdata)))
            return t.view(shape)
        return t


class _Staging:
    """The host buffers worker threads gather batches into (pinned on CUDA), used round robin, and the
    copies of them to the device, issued from the consumer's thread on one copy stream. A buffer is
    handed out again only once the copy that last read it has finished (its event)."""

    def __init__(self, device: torch.device, count: int, nbytes: int):
        self.device, self.nbytes = device, nbytes
        self.cuda = device.type == "cuda"
        self.bufs: list[torch.Tensor | None] = [None] * count
        self.events: list = [None] * count
        self.next = 0
        self.stream = torch.cuda.Stream(device=device) if self.cuda else None

    def take(self) -> tuple[int, torch.Tensor]:
        """A free buffer (``nbytes``, a whole batch): its slot and the buffer."""
        slot = self.next
        self.next = (slot + 1) % len(self.bufs)
        if self.events[slot] is not None:
            self.events[slot].synchronize()  # normally long done: that copy was issued a pipeline ago
        if self.bufs[slot] is None:
            self.bufs[slot] = torch.empty(self.nbytes, dtype=torch.uint8, pin_memory=self.cuda)
        return slot, self.bufs[slot]

    def to_device(self, slot: int, host: torch.Tensor) -> torch.Tensor:
        """``host`` (a view of buffer ``slot``) on the device, ready for the current stream's next kernels."""
        if not self.cuda:
            return host.to(self.device)
        cur = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self.stream):
            images = host.to(self.device, non_blocking=True)
            if self.events[slot] is None:
                self.events[slot] = torch.cuda.Event(blocking=True)  # synchronize() sleeps, not spins
            self.events[slot].record(self.stream)
        cur.wait_event(self.events[slot])
        images.record_stream(cur)  # allocated on the copy stream, used on the current one
        return images


class Loader:
    """Batches ``(x, y)`` of ``dataset`` on ``device``: ``x`` float32 (B, 3, C, C), ``y`` int64 (B,).

    ``x = (pixel + lighting - mean) [/ std]`` in 0..255 units. Training (``train=True``): a random
    ``crop_size`` crop and a random mirror per image, PCA lighting with alphas ~ N(0, ``lighting``)
    (0 = off) from the dataset's own PCA, reshuffled every epoch. Evaluation: the centre crop, or with
    ``ten_crop=True`` the paper's ten patches, ``x`` (B, 10, 3, C, C). ``mean``: "image" (the mean image,
    cropped and mirrored with the image) or "channel" (per-channel mean). ``std``: optional per-channel
    std in 0..255 units. ``indices``: a subset (e.g. from :func:`split_indices`). ``rank`` /
    ``world_size``: default from ``torch.distributed`` if initialised (see the module docstring for how
    epochs are sharded). ``workers``: threads (default: the CPUs this process may use, divided by
    ``LOCAL_WORLD_SIZE`` under torchrun). ``gpu_decode``: decode JPEG datasets on the GPU (default:
    when ``device`` is CUDA). ``channels_last``: return ``x`` in channels-last memory format.
    ``augment``: where the augmentation runs: ``"workers"`` (each worker thread its share of the batch;
    the default on a CPU) or ``"batched"`` (the workers only gather uint8 images; the thread iterating
    the loader copies and augments the whole batch at once; the default on CUDA). ``compile``:
    ``torch.compile`` the batched step (ignored for ``"workers"``).

    Reproducible: the same ``seed`` gives the same batches, whatever the number of workers. The epoch
    is set with :meth:`set_epoch` (call it every epoch, as with ``DistributedSampler``); if it is not
    called, each new full pass advances to the next epoch by itself.
    """

    def __init__(self, dataset, batch_size: int, *, train: bool, crop_size: int = 224,
                 device: str | torch.device = "cpu", seed: int = 0, lighting: float = PAPER_LIGHTING_STD,
                 mean: str = "image", std: Sequence[float] | None = None, ten_crop: bool = False,
                 indices: Sequence[int] | np.ndarray | None = None, rank: int | None = None,
                 world_size: int | None = None, drop_last: bool | None = None, workers: int | None = None,
                 gpu_decode: bool | None = None, channels_last: bool = False, prefetch: int = 2,
                 augment: str | None = None, compile: bool = False):
        size = int(dataset.size)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise BadOptionError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not 1 <= crop_size <= size:
            raise BadOptionError(f"crop_size {crop_size} does not fit the dataset's {size}x{size} images")
        if mean not in ("image", "channel"):
            raise BadOptionError(f"mean must be 'image' or 'channel', got {mean!r}")
        if lighting < 0:
            raise BadOptionError(f"lighting (std of the PCA alphas) must be >= 0, got {lighting}")
        if ten_crop and train:
            raise BadOptionError("ten_crop is for evaluation (train=False)")
        if seed < 0:
            raise BadOptionError(f"seed must be >= 0, got {seed}")
        if augment not in (None, "workers", "batched"):
            raise BadOptionError(f"augment must be 'workers' or 'batched', got {augment!r}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.train = bool(train)
        self.crop_size = int(crop_size)
        self.size = size
        self.device = runtime.indexed(device)   # "cuda" -> cuda:N: the worker threads set it as theirs
        self.seed = int(seed)
        self.lighting = float(lighting) if self.train else 0.0
        self.ten_crop = bool(ten_crop)
        self.channels_last = channels_last
        self.prefetch = max(1, int(prefetch))
        self.drop_last = self.train if drop_last is None else bool(drop_last)
        self.workers = runtime.cpu_share() if workers is None else max(1, int(workers))
        n_all = len(dataset)
        if indices is None:
            self.indices = np.arange(n_all, dtype=np.int64)
        else:
            given = np.asarray(indices).reshape(-1)
            if given.size and given.dtype.kind not in "iu":  # 0.5 would become image 0 without a word
                raise BadOptionError(f"indices must be integers, got {given.dtype} values")
            self.indices = given.astype(np.int64)
            if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= n_all):
                raise BadOptionError(f"indices must lie in 0..{n_all - 1}")
        r, w = runtime.rank_world()
        self.rank = r if rank is None else int(rank)
        self.world_size = w if world_size is None else int(world_size)
        if not 0 <= self.rank < self.world_size:
            raise BadOptionError(f"rank {self.rank} is not in 0..{self.world_size - 1}")
        self.labels = np.asarray(dataset.labels, dtype=np.int64)
        self.storage = getattr(dataset, "storage", "pixels")
        self.gpu_decode = (self.device.type == "cuda" and self.storage == "jpeg") if gpu_decode is None \
            else bool(gpu_decode)
        if self.gpu_decode and self.device.type != "cuda":
            raise BadOptionError("gpu_decode needs a CUDA device")
        self.augment = augment or ("batched" if self.device.type == "cuda" else "workers")
        # Compiled only where one thread calls it (the batched step): dynamo does not compile from several
        # worker threads at once.
        self.compile = bool(compile) and self.augment == "batched"
        self._stage = torch.compile(augment_batch, dynamic=None) if self.compile else augment_batch

        # Mean (image or per-channel, broadcast to an image view) and std, in 0..255 units.
        if mean == "image":
            m = torch.as_tensor(np.asarray(dataset.mean_image, np.float32))  # (S, S, 3)
        else:
            m = torch.as_tensor(np.asarray(dataset.mean_rgb, np.float32)).view(1, 1, 3).expand(size, size, 3)
        self.mean_mode = mean
        self._mean_np = m.permute(2, 0, 1).contiguous().numpy()  # (3, S, S) for the CPU path
        self._mean_hwc = m.contiguous()  # (S, S, 3) for the batched (GPU) path
        if std is not None:
            std_t = torch.as_tensor(np.asarray(std, np.float32)).reshape(-1)
            if std_t.numel() != 3 or bool((std_t <= 0).any()):
                raise BadOptionError(f"std must be 3 positive numbers, got {std!r}")
            self._inv_std = (1.0 / std_t)
        else:
            self._inv_std = None
        self._inv_std_np = None if self._inv_std is None else self._inv_std.numpy()
        self.std = None if std is None else [float(s) for s in np.asarray(std).reshape(-1)]
        self._eigval = np.asarray(dataset.pca_eigval, np.float64)
        self._eigvec = np.asarray(dataset.pca_eigvec, np.float64)
        # the same on the device, for the batched steps (the same tensors on a CPU)
        self._mean_hwc_dev = self._mean_hwc.to(self.device)
        self._inv_std_dev = None if self._inv_std is None else self._inv_std.to(self.device)
        self.epoch = 0
        self._advance = False  # a full pass finished and set_epoch was not called since
        self._plan_cache: tuple[int, dict] | None = None
        self._device_plan_cache: tuple[int, dict] | None = None
        self._staging: _Staging | None = None
        self._pool: cf.ThreadPoolExecutor | None = None
        self._buffers = _BufferPool(limit=self.prefetch + 3)
        self._local = threading.local()

    # ------------------------------------------------------------------------------ epochs, sharding
    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s order and augmentation (deterministic in ``(seed, epoch)``)."""
        self.epoch = int(epoch)
        self._advance = False

    def _per_rank(self) -> int:
        n, w = len(self.indices), self.world_size
        if self.train:
            return n // w
        return n // w + (1 if self.rank < n % w else 0)

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        n = self._per_rank()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _plan(self) -> dict:
        """This rank's items for the current epoch, in order, with their augmentation."""
        if self._plan_cache is not None and self._plan_cache[0] == self.epoch:
            return self._plan_cache[1]
        n, w, r = len(self.indices), self.world_size, self.rank
        c = center_offset(self.size, self.crop_size)
        if self.train:
            p = epoch_plan(n, seed=self.seed, epoch=self.epoch, size=self.size, crop=self.crop_size,
                           lighting=self.lighting)
            pos = np.arange(r, (n // w) * w, w)  # equal, disjoint, strided shares of the epoch
            plan = {"items": self.indices[p["order"][pos]], "ys": p["ys"][pos], "xs": p["xs"][pos],
                    "flip": p["flip"][pos],
                    "shift": lighting_shift(p["alpha"][pos], self._eigval, self._eigvec)
                    if self.lighting > 0 else None}
        else:
            pos = np.arange(r, n, w)
            k = len(pos)
            plan = {"items": self.indices[pos], "ys": np.full(k, c, np.int64), "xs": np.full(k, c, np.int64),
                    "flip": np.zeros(k, bool), "shift": None}
        self._plan_cache = (self.epoch, plan)
        return plan

    def epoch_indices(self) -> np.ndarray:
        """Dataset indices this rank visits in the current epoch, in order (before dropping a last
        partial batch)."""
        return self._plan()["items"].copy()

    # ------------------------------------------------------------------------------ iteration
    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.iter_from(0)

    def iter_from(self, start_batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Like ``iter(loader)`` but starting at batch ``start_batch`` of this epoch: the skipped
        batches are not read, and the rest are identical to an uninterrupted epoch (exact resume)."""
        if self._advance:
            self.epoch += 1
            self._advance = False
        if not 0 <= start_batch <= len(self):
            raise BadOptionError(f"start_batch must be in 0..{len(self)}, got {start_batch}")
        return self._run(start_batch)

    def _batches(self, start: int) -> Iterator[dict]:
        plan = self._plan()
        n, b = len(plan["items"]), self.batch_size
        for k in range(start, len(self)):
            sl = slice(k * b, min((k + 1) * b, n))
            yield {**{key: (v[sl] if v is not None else None) for key, v in plan.items()}, "slice": sl}

    def _executor(self) -> cf.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = cf.ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="alexnet-loader")
        return self._pool

    def _run(self, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        pool = self._executor()
        cuda = self.device.type == "cuda"
        batched = self.augment == "batched"
        # On CUDA every worker may have a batch in flight; not for ten-crop batches augmented by the
        # workers, each 10x a training batch in float32 (770 MB at batch 128), which at large batches
        # would fill the GPU's memory (batched, what waits is the uint8 images).
        depth = max(self.prefetch, self.workers) if cuda and (batched or not self.ten_crop) else self.prefetch
        if batched and not self.gpu_decode and (self._staging is None or len(self._staging.bufs) != depth + 1):
            self._staging = _Staging(self.device, depth + 1, self.batch_size * 3 * self.size * self.size)
        schedule_one = self._schedule_batched if batched else self._schedule_cuda if cuda else self._schedule_cpu
        batches = self._batches(start)
        queue: deque = deque()

        def schedule() -> bool:
            batch = next(batches, None)
            if batch is None:
                return False
            queue.append(schedule_one(pool, batch))
            return True

        try:
            for _ in range(depth):
                if not schedule():
                    break
            while queue:
                futures, finish = queue.popleft()
                for f in futures:
                    f.result()  # re-raises a worker's exception here
                schedule()
                yield finish()
        finally:
            for futures, _ in queue:  # the consumer stopped early (break / exception / close)
                for f in futures:
                    f.cancel()
            for futures, _ in queue:
                cf.wait(futures)
        self._advance = True

    # ------------------------------------------------------------------------------ CPU
    def _decode(self, items: list[int], device="cpu") -> list[torch.Tensor]:
        """The stored JPEGs of ``items`` decoded to uint8 (3, S, S); a damaged one is a one-line UserError
        naming the image and its shard (the dataset's files changed after prepare wrote them), the same
        one :meth:`PreparedDataset.get_uint8` gives (:func:`alexnet.data.format.decode_stored`)."""
        return decode_stored(self.dataset, items, self.size, device=device)

    def _source_chw(self, i: int) -> torch.Tensor:
        """Stored image ``i`` as uint8 (3, S, S): a view of the shard, or freshly decoded."""
        ds = self.dataset
        if self.storage == "jpeg":
            return self._decode([i])[0]
        if hasattr(ds, "pixels"):
            return ds.pixels(i).permute(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(ds.get_uint8(i))).permute(2, 0, 1)

    def _schedule_cpu(self, pool, batch: dict):
        n, c = len(batch["items"]), self.crop_size
        shape = (n, 10, 3, c, c) if self.ten_crop else (n, 3, c, c)
        out = self._buffers.get(shape)
        y = torch.from_numpy(self.labels[batch["items"]])
        # split the batch between the threads: each writes its own images of ``out``
        parts = min(self.workers, n)
        bounds = np.linspace(0, n, parts + 1).astype(int)
        futures = [pool.submit(self._fill_cpu, out.numpy(), batch, int(lo), int(hi))
                   for lo, hi in zip(bounds[:-1], bounds[1:], strict=True) if hi > lo]

        def finish():
            x = out
            if self.channels_last and not self.ten_crop:
                x = x.contiguous(memory_format=torch.channels_last)
            return x, y

        return futures, finish

    def _fill_cpu(self, out: np.ndarray, batch: dict, lo: int, hi: int) -> None:
        items, shift, mean, inv_std = batch["items"], batch["shift"], self._mean_np, self._inv_std_np
        for j in range(lo, hi):
            src = self._source_chw(int(items[j])).numpy()
            if self.ten_crop:
                ten_crop_one(src, mean, inv_std, out[j])
            else:
                normalize_one(src, mean, int(batch["ys"][j]), int(batch["xs"][j]), bool(batch["flip"][j]),
                              None if shift is None else shift[j], inv_std, out[j])

    # ------------------------------------------------------------------------------ CUDA
    def _thread_state(self):
        st = self._local
        if not hasattr(st, "stream"):
            # A new thread's current device is cuda:0; leaving a stream context sets the current device
            # back, which would open a CUDA context on GPU 0 from every DDP rank's workers.
            torch.cuda.set_device(self.device)
            st.stream = torch.cuda.Stream(device=self.device)
            st.pinned = {}
        return st

    def _pinned(self, st, shape) -> torch.Tensor:
        buf = st.pinned.get(shape)
        if buf is None:
            buf = st.pinned[shape] = torch.empty(shape, dtype=torch.uint8, pin_memory=True)
        return buf

    def _schedule_cuda(self, pool, batch: dict):
        fut = pool.submit(self._build_cuda, batch)

        def finish():
            x, y, event = fut.result()
            cur = torch.cuda.current_stream(self.device)
            cur.wait_event(event)  # the batch's kernels ran on the worker's side stream
            x.record_stream(cur)
            y.record_stream(cur)
            return x, y

        return [fut], finish

    def _host_images(self, items: np.ndarray, out: torch.Tensor | None = None) -> tuple[torch.Tensor, str]:
        """The stored uint8 images of ``items`` gathered on the host (into ``out``, e.g. pinned memory):
        (B, S, S, 3) "hwc" for pixel datasets, (B, 3, S, S) "chw" for decoded JPEGs. numpy copies (see
        augment.py on why not torch ops in worker threads)."""
        n, s = len(items), self.size
        chw = self.storage == "jpeg"
        shape = (n, 3, s, s) if chw else (n, s, s, 3)
        host = torch.empty(shape, dtype=torch.uint8) if out is None else out
        dst = host.numpy()
        if not chw and hasattr(self.dataset, "gather_pixels"):  # whole batch, no Python per image
            self.dataset.gather_pixels(items, dst)
            return host, "hwc"
        for j, i in enumerate(items):
            img = self._source_chw(int(i)).numpy()  # (3, S, S), maybe a transposed view of HWC
            np.copyto(dst[j], img if chw else img.transpose(1, 2, 0))
        return host, ("chw" if chw else "hwc")

    def _device_stage(self, images: torch.Tensor, layout: str, batch: dict, mean_hwc: torch.Tensor,
                      inv_std: torch.Tensor | None) -> torch.Tensor:
        """Crop, mirror, lighting, mean and std of a whole uint8 batch, on ``images``' device."""
        dev = images.device

        def t(a):
            return None if a is None or self.ten_crop else torch.from_numpy(a).to(dev, non_blocking=True)

        return self._stage(images, mean_hwc, t(batch["ys"]), t(batch["xs"]), t(batch["flip"]), t(batch["shift"]),
                           inv_std, **self._stage_options(layout))

    def _stage_options(self, layout: str) -> dict:
        return {"crop": self.crop_size, "layout": layout, "ten_crop": self.ten_crop,
                "channels_last": self.channels_last and not self.ten_crop}

    # ------------------------------------------------------------------------------ batched (default on CUDA)
    def _device_plan(self) -> dict:
        """The epoch's crop offsets, mirror flags, lighting shifts and labels on the device, copied once
        per epoch (from pinned memory: the copy does not wait for the GPU), sliced per batch."""
        if self._device_plan_cache is not None and self._device_plan_cache[0] == self.epoch:
            return self._device_plan_cache[1]
        plan, cuda = self._plan(), self.device.type == "cuda"

        def up(a):
            if a is None:
                return None
            t = torch.from_numpy(np.ascontiguousarray(a))
            return t.pin_memory().to(self.device, non_blocking=True) if cuda else t.to(self.device)

        dp = {k: up(plan[k]) for k in ("ys", "xs", "flip", "shift")}
        dp["labels"] = up(self.labels[plan["items"]])
        self._device_plan_cache = (self.epoch, dp)
        return dp

    def _schedule_batched(self, pool, batch: dict):
        """Workers gather the uint8 images (into a staging buffer, or decoded on the GPU); ``finish``, on
        the consumer's thread, copies them to the device and augments the whole batch."""
        items, sl = batch["items"], batch["slice"]
        dp = self._device_plan()  # on the consumer's thread, before any batch of the epoch is finished
        if self.gpu_decode:
            fut = pool.submit(self._decode_on_device, items)
        else:
            slot, buf = self._staging.take()  # waits for the copy that last read this buffer
            fut = pool.submit(self._gather_host, items, buf)

        def finish():
            if self.gpu_decode:  # decoded on a worker's stream
                images, layout, decoded = fut.result()
                cur = torch.cuda.current_stream(self.device)
                cur.wait_event(decoded)
                images.record_stream(cur)
            else:
                host, layout = fut.result()
                images = self._staging.to_device(slot, host)
            shift = None if dp["shift"] is None else dp["shift"][sl]
            x = self._stage(images, self._mean_hwc_dev, dp["ys"][sl], dp["xs"][sl], dp["flip"][sl], shift,
                            self._inv_std_dev, **self._stage_options(layout))
            return x, dp["labels"][sl]

        return [fut], finish

    def _gather_host(self, items: np.ndarray, buf: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Worker thread: the batch's stored images into the staging buffer ``buf`` (no CUDA call)."""
        n, s = len(items), self.size
        shape = (n, 3, s, s) if self.storage == "jpeg" else (n, s, s, 3)
        return self._host_images(items, buf[:n * 3 * s * s].view(shape))

    def _decode_on_device(self, items: np.ndarray):
        """Worker thread: the batch's JPEGs decoded by nvJPEG on this thread's stream; and its event."""
        st = self._thread_state()
        with torch.cuda.stream(st.stream):
            images = torch.stack(self._decode([int(i) for i in items], device=self.device))
            event = torch.cuda.Event()
            event.record(st.stream)
        return images, "chw", event

    # ------------------------------------------------------------------------------ CUDA, augmented by the workers
    def _build_cuda(self, batch: dict):
        """Worker thread: host gather (or GPU decode), copy, then the batched augmentation on the GPU."""
        st = self._thread_state()
        items = batch["items"]
        n, s, dev = len(items), self.size, self.device
        copied = None
        with torch.cuda.stream(st.stream):
            if self.storage == "jpeg" and self.gpu_decode:
                decoded = self._decode([int(i) for i in items], device=dev)
                images, layout = torch.stack(decoded), "chw"
            else:
                shape = (n, 3, s, s) if self.storage == "jpeg" else (n, s, s, 3)
                host, layout = self._host_images(items, self._pinned(st, shape))
                images = host.to(dev, non_blocking=True)
                copied = torch.cuda.Event(blocking=True)  # its synchronize() sleeps instead of spinning a core
                copied.record(st.stream)
            x = self._device_stage(images, layout, batch, self._mean_hwc_dev, self._inv_std_dev)
            y = torch.from_numpy(self.labels[items]).to(dev, non_blocking=True)
            event = torch.cuda.Event()
            event.record(st.stream)
        # The pinned buffer is refilled by this thread's next batch: wait until the copy has read it (not
        # for the augmentation kernels: the consumer's stream waits for those on the GPU, in finish()).
        if copied is not None:
            copied.synchronize()
        return x, y, event

    # ------------------------------------------------------------------------------ cleanup
    def close(self) -> None:
        """Stop the worker threads (also done when the loader is garbage-collected)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __del__(self):
        try:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
        except Exception:
            pass

    def __repr__(self) -> str:
        kind = "ten-crop" if self.ten_crop else ("train" if self.train else "centre crop")
        return (f"Loader({kind}, {len(self.indices)} images, batch {self.batch_size}, crop {self.crop_size}, "
                f"device {self.device}, rank {self.rank}/{self.world_size}, {self.workers} workers)")
