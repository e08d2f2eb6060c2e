"""``prepare_dataset``: list a source, preprocess every image once, write packed shards and statistics.

Parallel and resumable:
- The found files are cut into shards of consecutive files; worker processes each write whole shards
  (decode -> RGB -> rescale/crop -> raw pixels or JPEG) with per-shard statistics.
- A shard's data file is written under a temporary name and renamed when complete; then its record
  (``.partial/NNNNN.json``, written the same way) marks it done. ``meta.json`` is written last, after
  everything else, so a folder that has it is complete and one that does not is not a dataset.
- Running the same command again after an interruption keeps the done shards (checked against a
  fingerprint of the settings and of the listed files) and does the rest.

Bad files never stop a prepare: each one that cannot be read or decoded is skipped and recorded with its
reason in ``meta.json["skipped"]``; always ``count + len(skipped) == found``.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import sys
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from alexnet import runtime
from alexnet.data.format import (
    FILES,
    FORMAT_VERSION,
    FORMATS,
    INDEX,
    LABELS,
    MAX_SIZE,
    MEAN,
    META,
    PARTIAL,
    SHARDS,
    PreparedDataset,
    atomic_save_npy,
    atomic_save_npz,
    npy_header,
    shard_name,
)
from alexnet.data.images import BadImage, encode_jpeg, preprocess
from alexnet.data.sources import Source, check_source_args, is_ilsvrc_folder, open_source, read_items
from alexnet.data.stats import PCA_UNITS, PixelStats
from alexnet.errors import BadOptionError, UserError
from alexnet.files import write_atomic
from alexnet.progress import Progress, count

MAX_SHARD = 1024  # images per shard at most: 200 MB raw / ~25 MB JPEG at 256x256


def prepare_dataset(src: str | Path, out: str | Path, *, classes_file: str | Path | None = None,
                    labels_file: str | Path | None = None, size: int = 256, warp: bool = False,
                    format: str = "jpeg", quality: int = 90, workers: int | None = None,
                    progress: bool = True, subdir: str | None = None, split: str | None = None,
                    shard_size: int | None = None, overwrite: bool = False,
                    log: Callable[[str], None] | None = None) -> PreparedDataset:
    """Turn a labelled image collection ``src`` into a prepared dataset in ``out``; return it opened.

    ``src``: a folder of class folders, a ``.tar``/``.tar.gz`` of one, the official ILSVRC-2012 files
    (a folder holding them, or the train/val tar; ``split`` picks one) or, with ``labels_file``, a flat
    folder of images. ``classes_file`` (synset list) fixes class order and names. Each image is decoded,
    converted to RGB, rescaled so its shorter side is ``size`` and centre-cropped to ``size x size``
    (``warp=True``: squashed to ``size x size``), then stored as JPEG (``quality``) or raw uint8.
    ``workers`` processes (default: all CPUs; 1 = in this process). ``progress``: a tqdm bar on a
    terminal, else a log line now and then. ``overwrite``: replace a dataset made with other settings.
    Re-running after an interruption finishes the job. Raises :class:`UserError` for a missing or
    unreadable ``src``, an unknown layout, bad options, an unwritable ``out`` or one inside the folder
    ``src`` (or holding it); a prepare that fails before any image is stored removes what it made.
    """
    if format not in FORMATS:
        raise BadOptionError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    # At most MAX_SIZE (4096): PreparedDataset refuses a larger meta.json size, so such a dataset could never
    # be opened; and every per-image and per-pixel buffer grows with size**2 (4096 is already 48 MiB per raw
    # image; 10**8 asked numpy for petabytes). Checked here, before anything is written to OUT.
    if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= MAX_SIZE:
        raise BadOptionError(f"size must be an integer in 8..{MAX_SIZE}, got {size!r}")
    if not 1 <= int(quality) <= 100:
        raise BadOptionError(f"JPEG quality must be 1..100, got {quality!r}")
    if shard_size is not None and shard_size < 1:
        raise BadOptionError(f"shard_size must be >= 1, got {shard_size!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise BadOptionError(f"workers must be an integer >= 1, got {workers!r}")
    workers = runtime.cpus() if workers is None else workers
    say = log or (lambda msg: None)
    if not str(out).strip():
        raise BadOptionError("OUT must name a folder, got an empty path (it would write into the current one)")
    # Everything that needs no listing is checked before anything is made: a mistake leaves no OUT behind.
    check_source_args(src, classes_file=classes_file, labels_file=labels_file, subdir=subdir, split=split)
    src, out = Path(src), Path(out)
    _check_writable(out)
    _check_apart(src, out, subdir=subdir, labels_file=labels_file)

    t0 = time.monotonic()
    source = open_source(src, classes_file=classes_file, labels_file=labels_file, subdir=subdir, split=split)
    settings = _settings(source, size=size, warp=warp, fmt=format, quality=int(quality))
    settings_id = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:32]
    not_read = (f"; {len(source.skipped)} of them left out before decoding (counted with the files that "
                "fail to decode in the skipped at the end)" if source.skipped else "")
    say(f"found {len(source) + len(source.skipped)} files in {len(set(source.labels.tolist()))} classes "
        f"({source.layout}: {source.description}) in {time.monotonic() - t0:.1f}s{not_read}")

    # OUT is made only now, after the listing: made earlier inside SRC it would have been listed as a class.
    made = _make_out(out)
    had_partial, had_shards = (out / PARTIAL).exists(), (out / SHARDS).exists()
    try:
        return _prepare(source, out, settings, settings_id, size=size, warp=warp, fmt=format,
                        quality=int(quality), workers=workers, progress=progress, shard_size=shard_size,
                        overwrite=overwrite, say=say)
    except BaseException:
        if not had_partial:
            _undo_failed(out, made, had_shards)
        raise


def _prepare(source: Source, out: Path, settings: dict, settings_id: str, *, size, warp, fmt, quality, workers,
             progress, shard_size, overwrite, say) -> PreparedDataset:
    """The part of :func:`prepare_dataset` that writes to ``out``."""
    meta_path = out / META
    if meta_path.is_file():
        try:
            old_id = json.loads(meta_path.read_text()).get("settings_id")
        except (OSError, ValueError):
            old_id = None
        if old_id == settings_id and not overwrite:
            say(f"{out} already holds this dataset; nothing to do")
            return PreparedDataset(out)
        if not overwrite:
            raise UserError(f"{out} already holds a prepared dataset made from other files or with other "
                            "settings; choose another OUT or pass --overwrite")
        _remove_outputs(out, everything=True)

    partial = out / PARTIAL
    plan_path = partial / "plan.json"
    plan = None
    if plan_path.is_file():
        try:
            plan = json.loads(plan_path.read_text())
        except (OSError, ValueError):
            plan = None
        if not plan or plan.get("settings_id") != settings_id:
            say(f"{out} holds an unfinished prepare with other settings or files; starting over")
            _remove_outputs(out, everything=True)
            plan = None
    if plan is None:
        n = len(source)
        ss = shard_size or int(min(MAX_SHARD, max(16, -(-n // (4 * workers)))))
        plan = {"settings_id": settings_id, "shard_size": ss, "found": n}
        (out / SHARDS).mkdir(parents=True, exist_ok=True)
        partial.mkdir(exist_ok=True)
        write_atomic(plan_path, json.dumps(plan).encode())
    (out / SHARDS).mkdir(exist_ok=True)
    ss = int(plan["shard_size"])
    chunks = [(s, min(s + ss, len(source))) for s in range(0, len(source), ss)]

    done = {c for c in range(len(chunks)) if _shard_done(out, c, fmt, settings_id)}
    todo = [c for c in range(len(chunks)) if c not in done]
    if done:
        say(f"resuming: {len(done)} of {count(len(chunks), 'shard')} already written")
    bar = Progress(len(source), "prepare", initial=sum(chunks[c][1] - chunks[c][0] for c in done),
                   enabled=progress, say=say)
    t1 = time.monotonic()
    try:
        used, written = _write_shards(source, out, chunks, todo, settings_id, size=size, warp=warp, fmt=fmt,
                                      quality=quality, workers=workers, bar=bar)
    finally:
        bar.close()
    dataset = _finalize(source, out, chunks, settings, settings_id, size=size, warp=warp, fmt=fmt,
                        quality=quality)
    # What this run did, not the whole dataset: a resumed prepare kept the finished shards, and no more
    # workers run than there are shards to write.
    line = f"wrote {count(written, 'image')} ({count(len(todo), 'shard')}) in {time.monotonic() - t1:.1f}s"
    if used:
        line += f" with {count(used, 'worker')}" if used > 1 else " in this process"
    if done:
        line += f"; kept {count(len(dataset) - written, 'image')} ({count(len(done), 'shard')}) from before"
    say(line)
    return dataset


# --------------------------------------------------------------------------- planning helpers

def _check_apart(src: Path, out: Path, *, subdir: str | None, labels_file) -> None:
    """Refuse an OUT inside the folder that is listed as class folders (it would be listed too: an extra
    class shifting every index, and a later prepare of SRC reading this dataset's files as images), and a
    folder SRC that is OUT. A SRC inside OUT is fine (the listing never sees OUT's own files), as before.
    Compared as given and with links resolved: the listing follows a link inside SRC to an OUT elsewhere."""
    if not src.is_dir():
        return
    if src.resolve() == out.resolve():
        raise UserError(f"SRC {src} is OUT: the prepared dataset goes into a folder of its own; choose an OUT "
                        "apart from SRC")
    if labels_file is not None or is_ilsvrc_folder(src, subdir):
        return
    listed = src / subdir if subdir else src
    for o, lst in ((out.resolve(), listed.resolve()), (out.absolute(), listed.absolute())):
        if o == lst or lst in o.parents:
            raise UserError(f"OUT {out} is inside SRC {src}, whose folders are read as classes: choose an "
                            "OUT outside SRC")


def _check_writable(out: Path) -> None:
    """OUT can be made and written to; nothing is created yet (see _make_out)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"OUT {out} exists and is not a folder")
    base = out
    while not base.exists() and base != base.parent:  # the nearest folder that is there already
        base = base.parent
    if not base.is_dir():
        raise UserError(f"OUT {out} is not writable: {base} is not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UserError(f"OUT {out} is not writable: permission denied on {base}")


def _make_out(out: Path) -> list[Path]:
    """Make OUT (and missing parents), check it takes a file; return the folders made, innermost first."""
    made = []
    p = out
    while not p.exists() and p != p.parent:
        made.append(p)
        p = p.parent
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        _remove_folders(made)
        raise UserError(f"OUT {out} is not writable: {e.strerror or e}") from None
    return made


def _remove_folders(made: list[Path]) -> None:
    for p in made:  # innermost first; rmdir removes only an empty folder, never what someone put there
        with contextlib.suppress(OSError):
            p.rmdir()


def _undo_failed(out: Path, made: list[Path], had_shards: bool) -> None:
    """After a failed prepare that started afresh: if no finished shard holds an image (nothing a re-run
    could keep), remove what this prepare made, its own file names only, and the folders it created."""
    if (out / META).exists():  # the dataset was finished (a failure after it, e.g. in printing): keep it
        return
    records = sorted((out / PARTIAL).glob("[0-9]*.json"))
    for rec in records:
        try:
            if json.loads(rec.read_text()).get("written"):
                return
        except (OSError, ValueError):
            continue
    shutil.rmtree(out / PARTIAL, ignore_errors=True)
    if not had_shards:
        for f in (out / SHARDS).glob("[0-9][0-9][0-9][0-9][0-9].*"):
            with contextlib.suppress(OSError):
                f.unlink()
        made = [out / SHARDS, *made]
    _remove_folders(made)


def _settings(source: Source, *, size, warp, fmt, quality) -> dict:
    """Everything that determines the output: a re-run with equal settings may reuse finished shards."""
    h = hashlib.sha256()
    for k in source.keys:
        h.update(k.encode("utf-8", "surrogateescape") + b"\0")
    h.update(source.labels.tobytes())
    settings = {"format_version": FORMAT_VERSION, "source": source.description, "layout": source.layout,
            "listing": source.settings, "files": h.hexdigest(), "found": len(source),
            "classes": hashlib.sha256(json.dumps(source.classes).encode()).hexdigest(),
            "size": size, "warp": bool(warp), "format": fmt, "quality": quality if fmt == "jpeg" else None}
    # (the files listed but not read, source.skipped, are not among them: they change nothing stored, and a
    # dataset prepared before they were listed stays this one)
    return settings


def _remove_outputs(out: Path, everything: bool) -> None:
    """Delete what a prepare writes in ``out`` (only our own file names; meta.json first)."""
    for name in (META, MEAN, LABELS, INDEX, FILES):
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()
    if everything:
        shutil.rmtree(out / SHARDS, ignore_errors=True)
        shutil.rmtree(out / PARTIAL, ignore_errors=True)


def _record_path(out: Path, chunk: int) -> Path:
    return out / PARTIAL / f"{chunk:05d}.json"


def _shard_done(out: Path, chunk: int, fmt: str, settings_id: str) -> bool:
    try:
        rec = json.loads(_record_path(out, chunk).read_text())
    except (OSError, ValueError):
        return False
    if rec.get("settings_id") != settings_id:
        return False
    if not (out / PARTIAL / f"{chunk:05d}.stats.npz").is_file():
        return False
    return rec["written"] == [] or (out / shard_name(chunk, fmt)).is_file()


# --------------------------------------------------------------------------- writing shards

def _write_shards(source: Source, out: Path, chunks, todo, settings_id, *, size, warp, fmt, quality,
                  workers, bar: Progress) -> tuple[int, int]:
    """Write shards ``todo``; return (worker processes used, 1 = this one; images written)."""
    if not todo:
        return 0, 0
    common = {"out": str(out), "settings_id": settings_id, "size": size, "warp": warp, "fmt": fmt,
              "quality": quality}

    def tasks():
        if source.sequential:  # one front-to-back read of the compressed archive feeds every worker
            for c, items in source.stream_chunks([chunks[c] for c in todo]):
                c = todo[c]
                yield {**common, "chunk": c, "start": chunks[c][0],
                       "keys": source.keys[chunks[c][0]:chunks[c][1]], "reader": ("bytes", items)}
        else:
            for c in todo:
                start, stop = chunks[c]
                yield {**common, "chunk": c, "start": start, "keys": source.keys[start:stop],
                       "reader": source.reader(start, stop)}

    written = 0

    def finished(result: dict) -> None:
        nonlocal written
        written += result["written"]
        bar.update(result["found"])

    if workers <= 1 or len(todo) == 1:
        for task in tasks():
            finished(_write_shard(task))
        return 1, written
    # fork where there is one: the workers need nothing but this module (PIL, numpy, files), and
    # spawn/forkserver would re-run a user's script without a __main__ guard in every worker.
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    used = min(workers, len(todo))
    with warnings.catch_warnings(), cf.ProcessPoolExecutor(
            max_workers=used, mp_context=ctx, initializer=_init_worker,
            initargs=(os.getpid(),)) as pool:
        # Python >= 3.12 warns about fork() in a process with threads (torch's, tqdm's): the workers
        # take no lock those threads could hold, so the warning does not apply.
        warnings.simplefilter("ignore", DeprecationWarning)
        pending: set[cf.Future] = set()
        try:
            for task in tasks():
                pending.add(pool.submit(_write_shard, task))
                while len(pending) >= workers + 2:  # bounded: a streamed archive is not read ahead far
                    done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                    for f in done:
                        finished(f.result())
            for f in cf.as_completed(pending):
                finished(f.result())
        except BaseException:
            for f in pending:
                f.cancel()
            raise
    return used, written


def _init_worker(parent: int | None = None) -> None:
    # SIGTERM ends a worker (its parent's death sends it): a forked worker inherits the CLI's handler that
    # turns SIGTERM into an interrupt, which a worker would survive
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(parent)


def _die_with_parent(parent: int | None) -> None:
    """Linux: this worker gets SIGTERM when the process that started it dies (even by SIGKILL), instead
    of running on forever with nobody to collect its work. Elsewhere nothing happens."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent is not None and os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _write_shard(task: dict) -> dict:
    """Worker: preprocess one shard's files, write its data file, statistics and record."""
    out, c, start, keys = Path(task["out"]), task["chunk"], task["start"], task["keys"]
    size, fmt = task["size"], task["fmt"]
    data_path = out / shard_name(c, fmt)
    tmp = data_path.with_name(data_path.name + ".tmp")
    stats = PixelStats(size)
    written, skipped, offsets, lengths = [], [], [], []
    with open(tmp, "wb") as f:
        if fmt == "raw":
            f.write(npy_header((len(keys), size, size, 3)))
        for pos, data in enumerate(read_items(task["reader"])):
            if isinstance(data, OSError):
                skipped.append({"path": keys[pos], "reason": str(data)})
                continue
            try:
                arr = preprocess(data, size, task["warp"])
            except BadImage as e:
                skipped.append({"path": keys[pos], "reason": str(e)})
                continue
            stats.add(arr)
            if fmt == "raw":
                f.write(memoryview(np.ascontiguousarray(arr)))
            else:
                b = encode_jpeg(arr, task["quality"])
                offsets.append(f.tell())
                lengths.append(len(b))
                f.write(b)
            written.append(start + pos)
        if fmt == "raw" and len(written) != len(keys):
            f.seek(0)
            f.write(npy_header((len(written), size, size, 3)))
        f.flush()
        os.fsync(f.fileno())
    if len(written) + len(skipped) != len(keys):  # pragma: no cover (a bug, not bad input)
        raise RuntimeError(f"shard {c}: {len(written)} written + {len(skipped)} skipped != {len(keys)}")
    os.replace(tmp, data_path)
    atomic_save_npz(out / PARTIAL / f"{c:05d}.stats.npz", **stats.state())
    record = {"settings_id": task["settings_id"], "chunk": c, "written": written, "skipped": skipped,
              "offsets": offsets, "lengths": lengths, "bytes": data_path.stat().st_size}
    write_atomic(_record_path(out, c), json.dumps(record).encode())
    return {"chunk": c, "found": len(keys), "written": len(written)}


# --------------------------------------------------------------------------- the end: index + meta.json

def _finalize(source: Source, out: Path, chunks, settings, settings_id, *, size, warp, fmt,
              quality) -> PreparedDataset:
    stats = PixelStats(size)
    written, shard_of, local, offsets, lengths, shards = [], [], [], [], [], []
    skipped = list(source.skipped)  # found in the listing but not read: first
    for c in range(len(chunks)):
        rec = json.loads(_record_path(out, c).read_text())
        with np.load(out / PARTIAL / f"{c:05d}.stats.npz") as st:
            stats.merge(PixelStats.from_state(st))
        n = len(rec["written"])
        written += rec["written"]
        skipped += rec["skipped"]
        shard_of.append(np.full(n, c, np.int32))
        local.append(np.arange(n, dtype=np.int32))
        offsets += rec["offsets"]
        lengths += rec["lengths"]
        shards.append({"file": shard_name(c, fmt), "count": n, "bytes": rec["bytes"]})
    found = len(source) + len(source.skipped)
    if len(written) + len(skipped) != found:  # pragma: no cover
        raise RuntimeError(f"{len(written)} written + {len(skipped)} skipped != {found} found")
    if not written:
        raise UserError(f"none of the {found} files found could be decoded "
                        f"(first: {skipped[0]['path']}: {skipped[0]['reason']})")
    written_idx = np.asarray(written, np.int64)
    labels = source.labels[written_idx]
    index = {"shard": np.concatenate(shard_of), "local": np.concatenate(local)}
    if fmt == "jpeg":
        index["offset"] = np.asarray(offsets, np.int64)
        index["length"] = np.asarray(lengths, np.int64)
    res = stats.result()
    atomic_save_npy(out / MEAN, res["mean_image"])
    atomic_save_npy(out / LABELS, labels.astype(np.int64))
    atomic_save_npz(out / INDEX, **index)
    write_atomic(out / FILES, "\n".join(source.keys[i].replace("\n", "?") for i in written).encode(
        "utf-8", "surrogateescape"))
    counts = np.bincount(labels, minlength=len(source.classes))
    meta = {
        "format_version": FORMAT_VERSION,
        "count": len(written),
        "found": found,
        "classes": source.classes,
        "num_classes": len(source.classes),
        "class_counts": counts.tolist(),
        "source": source.description,
        "layout": source.layout,
        "size": size,
        "warp": bool(warp),
        "preprocessing": (f"squash to {size}x{size}" if warp else
                          f"shorter side to {size}, centre crop {size}x{size}") + " (bilinear, antialiased)",
        "format": fmt,
        "quality": quality if fmt == "jpeg" else None,
        "mean_rgb": res["mean_rgb"].tolist(),
        "std_rgb": res["std_rgb"].tolist(),
        "pca_eigval": res["pca_eigval"].tolist(),
        "pca_eigvec": res["pca_eigvec"].tolist(),
        "pca_units": PCA_UNITS,
        "mean_image": MEAN,
        "skipped": skipped,
        # folders reached again through a directory symlink (a loop, or a second link): listed once only
        "folders_listed_already": source.settings.get("folders_listed_already", []),
        "shards": shards,
        "settings_id": settings_id,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_atomic(out / META, json.dumps(meta, indent=1).encode())  # last: now the dataset is complete
    shutil.rmtree(out / PARTIAL, ignore_errors=True)
    for tmp in (out / SHARDS).glob("*.tmp*"):
        with contextlib.suppress(OSError):
            tmp.unlink()
    return PreparedDataset(out)
