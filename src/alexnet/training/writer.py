"""The run directory's files written while training goes on: one background thread, one write in flight.

    writes = BackgroundWriter()
    writes.submit(("last.pt", lambda: save_checkpoint(state, path)))  # returns at once
    ...                                                                  # training continues
    writes.wait()   # the write is on disk, or its error is raised here (WriteError, one line)

``submit`` first waits for the previous write, so nothing queues up and no write is dropped; the job
gets data that training can no longer change (a host copy of the state: :func:`host_copy`). Each file
is still written atomically (temporary file, fsync, rename), so a kill at any moment leaves whole files.

``offer`` is for a job that a later one makes obsolete (the end-of-epoch checkpoint when epochs are
shorter than a checkpoint's write): it never waits; while a write is in flight, the job waits its turn,
replacing one that was waiting (``merge`` says what of the replaced job the new one keeps). So training
does not stall on the disk, and what is written is always the newest state.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from alexnet.errors import UserError


class WriteError(UserError):
    """A background write failed (a full disk, a folder removed...): raised on the training thread."""


def host_copy(state):
    """A copy of ``state`` (nested dicts, lists, tuples) that training cannot change: every tensor copied
    to the host with its strides (CUDA tensors into pinned memory without waiting, then one sync per
    device); other values are kept as they are (numbers, strings: immutable)."""
    devices: set[torch.device] = set()

    def copy(x):
        if isinstance(x, torch.Tensor):
            x = x.detach()
            if x.device.type == "cuda":
                devices.add(x.device)
                return torch.empty_like(x, device="cpu", pin_memory=True).copy_(x, non_blocking=True)
            return x.clone() if x.device.type == "cpu" else x.to("cpu")
        if isinstance(x, dict):
            return {k: copy(v) for k, v in x.items()}
        if isinstance(x, list):
            return [copy(v) for v in x]
        if isinstance(x, tuple):
            return tuple(copy(v) for v in x)
        return x

    out = copy(state)
    for device in devices:
        torch.cuda.current_stream(device).synchronize()
    return out


class BackgroundWriter:
    """One writer thread (started at the first job), at most one job in flight and one waiting.

    A job is a sequence of ``(name, write)`` steps, or an object whose ``steps()`` returns one."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future | None = None
        self._lock = threading.Lock()
        self._running = False  # the writer thread is in a job (and will take ``_next`` after it)
        self._next = None  # a job offered while one was in flight
        self.replaced = 0  # offered jobs that a newer one replaced before they were written

    @property
    def busy(self) -> bool:
        """True while a job is being written."""
        with self._lock:
            return self._running

    def submit(self, *steps: tuple[str, Callable[[], object]]) -> None:
        """Run the ``(name, write)`` steps in order on the writer thread, once the previous jobs have
        finished (their error is raised here). A failed step ends the job, naming its file."""
        self.wait()
        self._start(steps)

    def offer(self, job, merge: Callable[[object, object], object] | None = None) -> None:
        """Run ``job`` now if the writer is idle; else after the job in flight, in place of a job that
        was waiting (``merge(waiting, job)`` returns the job to run instead of ``job``). Never waits for
        the disk; a failed earlier job's error is raised here."""
        with self._lock:
            if self._running:
                if self._next is not None:
                    self.replaced += 1
                    if merge is not None:
                        job = merge(self._next, job)
                self._next = job
                return
        self.wait()
        self._start(job)

    def _start(self, job) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="alexnet-writer")
        with self._lock:
            self._running = True
        self._pending = self._pool.submit(self._work, job)

    def _work(self, job) -> None:
        """The writer thread: ``job``, then whatever was offered meanwhile, until nothing waits."""
        try:
            while True:
                _run(job.steps() if hasattr(job, "steps") else job)
                with self._lock:
                    job, self._next = self._next, None
                    if job is None:
                        self._running = False
                        return
        except BaseException:
            with self._lock:  # a failed write stops the run: what waited is dropped with it
                self._next, self._running = None, False
            raise

    def wait(self) -> None:
        """Block until the job in flight (and any waiting) has finished; raise a :class:`WriteError`
        if one failed."""
        pending = self._pending
        if pending is None:
            return
        try:
            pending.result()  # (a KeyboardInterrupt here leaves the job pending, for close to wait on)
        except WriteError:
            self._pending = None
            raise
        self._pending = None

    def close(self, report: Callable[[str], None] | None = None) -> None:
        """Wait for the job in flight and stop the thread. A failed job raises, or with ``report`` (while
        another error is already on its way up) is handed to ``report`` as one line instead."""
        try:
            self.wait()
        except WriteError as e:
            if report is None:
                raise
            report(f"error: {e}")
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None


def _run(steps) -> None:
    for what, write in steps:
        try:
            write()
        except Exception as e:  # noqa: BLE001 (whatever the write raised, said in one line)
            lines = str(e).strip().splitlines()
            raise WriteError(f"writing {what} failed: {lines[0] if lines else type(e).__name__}") from e
