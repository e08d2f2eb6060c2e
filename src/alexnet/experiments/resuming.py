"""What both experiments' ``--resume`` shares: comparing data paths, and the one-line refusal naming the
flags that differ from the earlier run's (:mod:`~alexnet.experiments.relu_vs_tanh`,
:mod:`~alexnet.experiments.ablations`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from alexnet.errors import UserError


def same_path(earlier: str, now: str) -> bool:
    """Whether two data paths name the same file or folder (True when either is unknown or the earlier
    one is gone: then the images' counts are what is compared)."""
    if not earlier or not now or not Path(earlier).exists() or not Path(now).exists():
        return True
    return os.path.samefile(earlier, now)


def refusal(path: Path, differ: list[tuple[str, object, object]],
            spelled: Callable[[list[tuple[str, object]]], str]) -> UserError:
    """The error for settings given that differ from the earlier run's: ``differ`` holds (setting, the
    earlier value, the value given); ``spelled`` writes settings as the experiment's flags."""
    was = spelled([(k, old) for k, old, _ in differ])
    now = spelled([(k, new) for k, _, new in differ])
    return UserError(f"{path} was made with {was} (now: {now}): repeat them with --resume (or leave them out: "
                     "--resume takes them from it), or drop --resume to start over in a new --out")
