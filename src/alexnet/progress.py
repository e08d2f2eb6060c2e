"""What long jobs show while they run: a tqdm bar on a terminal, plain lines otherwise; never silence.

- :class:`Progress`: any loop over items (prepare, validation, evaluate, features): a bar on stderr when it
  is a terminal, else a line every 30 s (so that logs of batch jobs stay readable).
- :class:`TrainingProgress`: a training run. The bar (stderr) shows the epoch's progress with loss, top-1
  error, images/s and tqdm's ETA, updated once per log interval, when the trainer reads its metrics from
  the device anyway, and at least every 2 s. Without a terminal (a log file, CI, a notebook's captured
  output) one line per log interval (and after 10 s, then at least every 30 s) and per epoch goes to
  stdout. Errors arrive as fractions and are shown in percent.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


class Progress:
    """Progress of a loop over ``total`` items: ``with Progress(total, "evaluate") as p: p.update(n)``.

    A tqdm bar on stderr when it is a terminal; otherwise a line every ``log_every_s`` seconds (and at the
    end), through ``say`` (default: stderr). Nothing at all when ``enabled`` is False. ``initial``: items
    already done (a resumed job)."""

    def __init__(self, total: int, desc: str, *, unit: str = "img", enabled: bool = True, initial: int = 0,
                 log_every_s: float = 30.0, say: Callable[[str], None] | None = None) -> None:
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        self.done, self._initial = initial, initial
        self._start = self._last_log = time.perf_counter()
        self._log_every = log_every_s
        self._lines = 0
        self._say = say or (lambda message: print(message, file=sys.stderr, flush=True))
        self._bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, unit_scale=False,
                             file=sys.stderr, dynamic_ncols=True, smoothing=0.1)

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self._start
        return (self.done - self._initial) / elapsed if elapsed > 0 else 0.0

    def update(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled:
            now = time.perf_counter()
            # a line every log_every_s, and a last one at the end of a job that already showed some
            if now - self._last_log >= self._log_every or (self.done == self.total and self._lines):
                self._last_log = now
                self._lines += 1
                self._say(f"{self.desc}: {self.done}/{self.total} {self.unit} ({self.rate:.1f} {self.unit}/s)")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class TrainingProgress:
    """A training run's epochs and steps (see the module docstring); only rank 0 reports."""

    def __init__(self, *, enabled: bool = True, bar: bool | None = None, epochs: int = 1,
                 stream=None) -> None:
        self.enabled = enabled
        self.bar_wanted = sys.stderr.isatty() if bar is None else bar
        self.epochs = epochs
        self.stream = stream or sys.stdout
        self.bar = None
        self.epoch = 0
        self.steps_in_epoch = 0
        self.t_interval = time.perf_counter()
        self.images_interval = 0
        self.lines = 0  # step lines printed (no bar)
        self.top5 = True  # show top-5 errors (not with 5 classes or fewer: always 0 there)

    def due(self) -> bool:
        """Whether to show progress now although no log interval has ended: a bar every 2 s, lines after 10 s
        and then every 30 s (a step of the paper's net on a laptop CPU takes seconds: 50 of them are
        minutes of silence)."""
        if not self.enabled:
            return False
        wait = 2.0 if self.bar is not None else (10.0 if not self.lines else 30.0)
        return time.perf_counter() - self.t_interval >= wait

    def log(self, message: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, file=self.stream, flush=True)

    def start_epoch(self, epoch: int, total_steps: int, done_steps: int = 0) -> None:
        self.epoch, self.steps_in_epoch = epoch, total_steps
        self.t_interval, self.images_interval = time.perf_counter(), 0
        if not self.enabled or not self.bar_wanted:
            return
        from tqdm import tqdm

        self.bar = tqdm(total=total_steps, initial=done_steps, desc=f"epoch {epoch + 1}/{self.epochs}",
                        unit="step", file=sys.stderr, dynamic_ncols=True, leave=False)

    def count(self, images: int) -> None:
        self.images_interval += images

    def update(self, step_in_epoch: int, steps_since: int, loss: float, top1_err: float, lr: float,
               last: bool = False) -> None:
        """At a log interval: ``step_in_epoch`` steps of this epoch done, ``steps_since`` since the last call."""
        if not self.enabled:
            return
        now = time.perf_counter()
        rate = self.images_interval / max(now - self.t_interval, 1e-9)
        self.t_interval, self.images_interval = now, 0
        if self.bar is not None:
            self.bar.set_postfix_str(f"loss {loss:.3f}  err {100 * top1_err:.2f}%  {rate:,.0f} img/s  lr {lr:.3g}",
                                     refresh=False)
            self.bar.update(steps_since)
        elif not last:  # the epoch's own line follows
            self.lines += 1
            print(f"epoch {self.epoch + 1}/{self.epochs}  step {step_in_epoch}/{self.steps_in_epoch}  "
                  f"loss {loss:.4f}  top-1 err {100 * top1_err:.2f}%  {rate:,.0f} img/s  lr {lr:.4g}",
                  file=self.stream, flush=True)

    def end_epoch(self, row: dict, eta_seconds: float | None) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if not self.enabled:
            return
        val = ""
        if row.get("val_top1_err") is not None:
            val = f"  val top-1 err {100 * row['val_top1_err']:.2f}%" + (
                f"  top-5 err {100 * row['val_top5_err']:.2f}%" if self.top5 else "")
        eta = "" if eta_seconds is None else f"  eta {_duration(eta_seconds)}"
        print(f"epoch {row['epoch']}/{self.epochs}  train loss {row['train_loss']:.4f}  "
              f"top-1 err {100 * row['train_top1_err']:.2f}%{val}  lr {row['lr']:.4g}  "
              f"{row['images_per_s']:,.1f} img/s  {_duration(row['seconds'])}{eta}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def count(n: int, noun: str) -> str:
    """``"1 epoch"``, ``"2 epochs"``: a count and its noun, singular or plural (nouns with a plain -s)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
