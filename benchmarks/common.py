"""Helpers the benchmark scripts share: what machine a figure was measured on, and writing JSON."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ALEXNET_SHARED_DATA", ROOT.parent / "shared" / "data"))


def machine_info(device: torch.device | str | None = None) -> dict:
    """CPU model and count, Python, torch, date (UTC), the load average, and the GPU when ``device`` is CUDA."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu,
            "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
            "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    for package in ("torchvision", "torchcodec"):
        try:
            info[package] = __import__(package).__version__
        except Exception:  # not installed, or built for another torch
            info[package] = None
    if device is not None and torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def source_env(**extra: str) -> dict:
    """The environment for a subprocess that runs this checkout's code (``src/`` first on PYTHONPATH),
    with ``extra`` variables set."""
    path = os.pathsep.join([str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**os.environ, "PYTHONPATH": path, **extra}


def sync(device: torch.device | str) -> None:
    """Wait for the device's queued work (a no-op off CUDA): timings end with it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def endless(loader):
    """A loader's batches forever, epoch after epoch (``set_epoch`` 0, 1, ...)."""
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def write_json(path: Path, payload: dict) -> None:
    """Write ``payload`` with the command line that produced it, complete or not at all (temp + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"command": " ".join([Path(sys.executable).name, *sys.argv]), **payload}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    tmp.replace(path)
