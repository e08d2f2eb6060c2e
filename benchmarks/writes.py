"""What the trainer's files cost the training thread, and what torch.compile's cache saves a second run.

    python benchmarks/writes.py [--device cpu|cuda] [--arch alexnet] [--draws 5] [--compile ARCH]

- ``curves.png`` drawn for a 90-epoch history (matplotlib, Agg), and ``metrics.csv`` written, each
  ``--draws`` times (the first draw also imports matplotlib);
- the checkpoint of ``--arch`` with its optimizer's momentum: what training waits for with background
  writes (the host copy: :func:`alexnet.training.writer.host_copy`, through pinned memory on CUDA)
  against the write in line (``save_checkpoint``: torch.save, fsync, rename) that it replaced;
- ``--epochs N --epoch-seconds S``: N epochs whose training steps take S seconds each (the thread
  sleeps, as a training thread waits on a GPU), each ending with the checkpoint of ``--arch`` handed to
  the background writer: waiting for the previous write first (``submit``, what epochs did before) or
  not (``offer``, what they do now: a newer epoch's checkpoint replaces one still waiting). Wall time
  against the N x S of training alone;
- ``--contention``: what the writer thread's work costs a training thread that launches kernels. A thread
  calling a tiny torch op in a loop (each call lets go of the GIL and takes it back, as each kernel launch
  of a GPU training step does): its pace alone, and while another thread draws ``curves.png`` or saves
  the checkpoint of ``--arch`` (``--draws`` times each), as the background writer does;
- with ``--compile ARCH``: two ``alexnet train`` runs of one step with ``compile=True`` in fresh
  processes sharing an empty ``TORCHINDUCTOR_CACHE_DIR``: their wall times and inductor's FX graph and
  AOTAutograd cache hits (the second run should load what the first compiled).

Files go to a temporary folder on the file system of ``--dir`` (default: the system's temporary folder).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import source_env  # noqa: E402

from alexnet.models import create_model  # noqa: E402
from alexnet.training import checkpoint as ckpt  # noqa: E402
from alexnet.training import rundir  # noqa: E402
from alexnet.training.optim import build_optimizer  # noqa: E402
from alexnet.training.writer import BackgroundWriter, host_copy  # noqa: E402


def history(epochs: int = 90) -> list[dict]:
    return [{"epoch": e + 1, "train_loss": 2.3 * 0.97 ** e, "train_top1_err": 0.9 * 0.97 ** e,
             "train_top5_err": 0.5 * 0.97 ** e, "val_top1_err": 0.9 * 0.975 ** e, "val_top5_err": 0.5 * 0.975 ** e,
             "lr": 0.01, "images_per_s": 1000.0, "seconds": 10.0, "stalled": 0} for e in range(epochs)]


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def files(folder: Path, draws: int) -> dict:
    h = history()
    curves = [timed(lambda: rundir.write_curves(folder / "curves.png", h, title="alexnet on data")) for _ in range(draws)]
    csv = [timed(lambda: rundir.write_metrics_csv(folder / "metrics.csv", h)) for _ in range(draws)]
    return {"curves_png_s": [round(t, 3) for t in curves], "metrics_csv_s": [round(t, 4) for t in csv]}


def checkpoint(folder: Path, arch: str, device: torch.device, repeats: int = 3) -> dict:
    model = create_model(arch, num_classes=1000).to(device)
    opt = build_optimizer("paper", model, lr=0.01, momentum=0.9, weight_decay=5e-4)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()  # the momentum buffers exist
    live = {"model": model.state_dict(), "optimizer": opt.state_dict()}
    copy_s, write_s = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        state = host_copy(live)
        copy_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        ckpt.save_checkpoint(state, folder / "last.pt")
        write_s.append(time.perf_counter() - t)
    return {"arch": arch, "device": str(device), "megabytes": round((folder / "last.pt").stat().st_size / 1e6),
            "host_copy_s": [round(t, 3) for t in copy_s], "save_checkpoint_s": [round(t, 3) for t in write_s]}


def short_epochs(folder: Path, arch: str, device: torch.device, epochs: int, epoch_s: float) -> dict:
    model = create_model(arch, num_classes=1000).to(device)
    opt = build_optimizer("paper", model, lr=0.01, momentum=0.9, weight_decay=5e-4)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    live = {"model": model.state_dict(), "optimizer": opt.state_dict()}
    out = {"arch": arch, "device": str(device), "epochs": epochs, "epoch_s": epoch_s,
           "training_alone_s": round(epochs * epoch_s, 2)}
    for how in ("submit", "offer"):
        writes, written = BackgroundWriter(), []
        t = time.perf_counter()
        for epoch in range(epochs):
            time.sleep(epoch_s)  # the epoch's training steps
            state = host_copy(live)

            def write(state=state, epoch=epoch, written=written):
                ckpt.save_checkpoint(state, folder / "last.pt")
                written.append(epoch)
            if how == "submit":
                writes.submit(("last.pt", write))
            else:
                writes.offer([("last.pt", write)])
        epochs_end = time.perf_counter() - t
        writes.close()
        out[how] = {"epochs_wall_s": round(epochs_end, 2), "wall_with_last_write_s": round(time.perf_counter() - t, 2),
                    "checkpoints_written": len(written)}
    return out


def _op_loop(until: threading.Event | None = None, seconds: float = 0.0) -> float:
    """Tiny torch ops per second on this thread, until ``until`` is set or for ``seconds``."""
    a = torch.zeros(16)
    n, t0 = 0, time.perf_counter()
    while not until.is_set() if until is not None else time.perf_counter() - t0 < seconds:
        for _ in range(100):
            torch.add(a, 1.0)
        n += 100
    return n / (time.perf_counter() - t0)


def contention(folder: Path, arch: str, draws: int) -> dict:
    h = history()
    rundir.write_curves(folder / "curves.png", h)  # matplotlib imported
    model = create_model(arch, num_classes=1000)
    state = {"model": host_copy(model.state_dict()), "momentum": host_copy(model.state_dict())}
    jobs = {"curves.png": lambda: rundir.write_curves(folder / "curves.png", h, title="alexnet on data"),
            "checkpoint": lambda: ckpt.save_checkpoint(state, folder / "last.pt")}
    out = {"arch": arch, "switch_interval_ms": sys.getswitchinterval() * 1e3, "torch_threads": torch.get_num_threads()}
    alone = [_op_loop(seconds=1.0) for _ in range(2)]
    out["ops_per_s_alone"] = round(max(alone))
    for name, job in jobs.items():
        job_s, shares = [], []
        for _ in range(draws):
            done, took = threading.Event(), []

            def work(job=job, done=done, took=took):
                t = time.perf_counter()
                try:
                    job()
                finally:
                    took.append(time.perf_counter() - t)
                    done.set()
            th = threading.Thread(target=work)
            th.start()
            rate = _op_loop(until=done)
            th.join()
            job_s.append(round(took[0], 3))
            shares.append(round(rate / out["ops_per_s_alone"], 3))
        alone_s = timed(job)
        out[name] = {"seconds_alone": round(alone_s, 3), "seconds_beside_the_loop": job_s,
                     "loop_pace_share": shares}
    return out


_RUN = textwrap.dedent("""
    import json, sys
    from alexnet.data import ArrayDataset
    from alexnet.data.demo import make_demo_images
    from alexnet.models import model_info
    from alexnet.training import TrainConfig, train
    from torch._dynamo.utils import counters
    arch, device, out = sys.argv[1:4]
    size = model_info(arch).input_size
    images, labels, classes = make_demo_images(64, size + size // 8, seed=3, num_classes=4)
    train(TrainConfig(arch=arch, crop_size=size, epochs=1, batch_size=16, val_split=0.25, warmup_epochs=0,
                      max_steps=1, compile=True, ten_crop=False, device=device, out=out),
          dataset=ArrayDataset(images, labels, classes=classes), progress=False)
    print(json.dumps({**counters["inductor"], **counters["aot_autograd"]}))
""")


def compile_cache(folder: Path, arch: str, device: str) -> dict:
    env = source_env(TORCHINDUCTOR_CACHE_DIR=str(folder / "inductor"))
    runs = []
    for run in ("first", "second"):
        t = time.perf_counter()
        p = subprocess.run([sys.executable, "-c", _RUN, arch, device, str(folder / run)], env=env,
                           capture_output=True, text=True)
        if p.returncode:
            raise SystemExit(f"the {run} run failed:\n{p.stderr[-2000:]}")
        counts = json.loads(p.stdout.strip().splitlines()[-1])
        runs.append({"run": run, "wall_s": round(time.perf_counter() - t, 1),
                     **{k: v for k, v in counts.items() if "cache" in k}})
    return {"arch": arch, "device": device, "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--arch", default="alexnet", help="the model whose checkpoint is timed")
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--compile", metavar="ARCH", help="also time two compiled runs of ARCH (see above)")
    ap.add_argument("--dir", default=None, help="where the files go (a temporary folder in it)")
    ap.add_argument("--epochs", type=int, default=0, help="also time N short epochs with checkpoints (see above)")
    ap.add_argument("--epoch-seconds", type=float, default=0.1, help="training time of one such epoch")
    ap.add_argument("--only-epochs", action="store_true", help="skip the files and checkpoint measurements")
    ap.add_argument("--contention", action="store_true", help="also measure what the writer's work costs a "
                    "kernel-launching training thread (see above)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        out = {"torch": torch.__version__}
        if not args.only_epochs:
            out["files"] = files(folder, args.draws)
            out["checkpoint"] = checkpoint(folder, args.arch, torch.device(args.device))
        if args.epochs:
            out["short_epochs"] = short_epochs(folder, args.arch, torch.device(args.device), args.epochs,
                                               args.epoch_seconds)
        if args.contention:
            out["contention"] = contention(folder, args.arch, args.draws)
        if args.compile:
            out["compile_cache"] = compile_cache(folder, args.compile, args.device)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
