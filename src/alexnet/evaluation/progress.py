"""Progress for long loops over images: a tqdm bar with images/s on a terminal, else a plain log line
now and then (so that logs of batch jobs stay readable)."""

from __future__ import annotations

import sys
import time


class Progress:
    """``with Progress(total, "evaluate") as p: p.update(n)``; nothing is shown when ``enabled`` is False."""

    def __init__(self, total: int, desc: str, *, unit: str = "img", enabled: bool = True,
                 log_every_s: float = 30.0) -> None:
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        self.done = 0
        self._start = self._last_log = time.perf_counter()
        self._log_every = log_every_s
        self._bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=False, file=sys.stderr,
                             dynamic_ncols=True, smoothing=0.1)

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self._start
        return self.done / elapsed if elapsed > 0 else 0.0

    def update(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled:
            now = time.perf_counter()
            if now - self._last_log >= self._log_every:
                self._last_log = now
                print(f"{self.desc}: {self.done}/{self.total} {self.unit} ({self.rate:.1f} {self.unit}/s)",
                      file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
