"""Training configuration: one typed dataclass whose defaults are the paper's recipe.

``TrainConfig()`` is the paper (section 5): SGD as the paper writes it (PaperSGD), batch 128, lr 0.01,
momentum 0.9, weight decay 5e-4, lr divided by 10 when the validation error stops improving (3 times at
most), 90 epochs, random 224 crops with reflections and PCA lighting (std 0.1), mean-image subtraction;
with one departure, a linear lr warm-up (5 epochs, at least 150 steps), without which the paper's net
dies in its first steps on data with few classes (docs/RECIPE.md). ``PAPER_RECIPE`` holds the
fields that give the paper's recipe (``TrainConfig.paper()``, or ``--warmup-epochs 0``; where the paper
leaves a choice, the plateau rule's patience and no cut before a run leaves chance, as docs/RECIPE.md reads it).
``TrainConfig.demo()`` is the built-in demo's recipe, which departs from the paper where a short CPU
run needs it (see ``DEMO_DEPARTURES``).

A config round-trips through plain dicts (``to_dict`` / ``from_dict``), YAML and TOML files, and is
validated on construction: a bad value raises :class:`alexnet.errors.BadOptionError` with one line.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from alexnet.errors import BadOptionError, UserError
from alexnet.models.init import INITS
from alexnet.models.layers import GROUPED_CONV_IMPLS
from alexnet.training.optim import OPTIMIZERS
from alexnet.training.schedule import SCHEDULES

PRECISIONS = ("auto", "fp32", "bf16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDAGRAPH_COMPILE_MODES = ("reduce-overhead", "max-autotune")  # the modes that capture CUDA graphs themselves
GROUPED_CONVS = GROUPED_CONV_IMPLS
AUGMENT_ON = ("auto", "batched", "workers")  # alexnet.data.Loader(augment=)
MEAN_MODES = ("image", "channel")
PATH_FIELDS = ("data", "val", "out")  # str | None fields that name a path: os.PathLike taken, "" refused
# Seeds are 0..2**63-1: what every consumer takes (numpy refuses negative seeds, torch.manual_seed refuses
# seeds beyond 64 bits) and what fits the int64 of a checkpoint or a JSON reader in another language.
MAX_SEED = 2**63 - 1


def check_seed(seed) -> None:
    """A :class:`BadOptionError` unless ``seed`` is an integer in 0..:data:`MAX_SEED` (the experiments' rule;
    :meth:`TrainConfig.validate` checks the same bound with its flag's words)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise BadOptionError(f"seed must be an integer in 0..{MAX_SEED} (2**63-1), got {seed!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run. Defaults: the paper's recipe."""

    # --- model
    arch: str = "alexnet"
    """Registered model name (``alexnet models``)."""
    model_options: dict = field(default_factory=dict)
    """Options of the model's builder, e.g. ``{"lrn": False}`` or ``{"activation": "tanh"}``."""

    init: str = "model"
    """``model``: the model's own initialisation (the paper's for ``alexnet``, PyTorch's for ``alexnet_owt``);
    ``kaiming``: He-normal (fan-out) weights, zero biases, the last layer N(0, 0.01)
    (:func:`alexnet.models.init.kaiming_init`)."""

    # --- data
    data: str | None = None
    """A prepared dataset directory (``alexnet prepare``); None: the built-in demo images."""
    val: str | None = None
    """A prepared validation dataset; None: hold out ``val_split`` of the training data."""
    val_split: float = 0.1
    """Fraction of the training data held out for validation when ``val`` is not given (0 = none);
    chosen reproducibly from ``seed``."""
    demo_images: int = 640
    """Number of built-in demo images (training + held-out), when ``data`` is None."""
    demo_classes: int = 10
    """Number of built-in demo classes (2..10), when ``data`` is None."""
    demo_size: int = 256
    """Stored size of the built-in demo images (random crops of ``crop_size`` are taken from them)."""
    crop_size: int | None = None
    """Square training/validation crop; None: the model's input size (224, 227 or 32)."""
    mean: str = "image"
    """Subtract the per-pixel mean image (``image``, the paper) or the per-channel mean (``channel``)."""
    lighting: float = 0.1
    """Std of the paper's PCA lighting noise alpha (0 = off)."""

    # --- optimisation
    epochs: int = 90
    """Passes over the training data."""
    batch_size: int = 128
    """Global batch: under torchrun it is split evenly over the processes."""
    optimizer: str = "paper"
    """``paper`` (v <- m v - wd lr w - lr g; w <- w + v), ``sgd`` (torch.optim.SGD) or ``nesterov``."""
    lr: float = 0.01
    """Initial learning rate."""
    momentum: float = 0.9
    """Momentum of the optimizer."""
    weight_decay: float = 5e-4
    """Weight decay (L2 penalty on the weights, in the update)."""
    bias_decay: bool = True
    """Apply weight decay to biases too (the formula as written; cuda-convnet and Caffe used none on biases)."""
    bias_lr_factor: float = 1.0
    """Biases' learning rate as a multiple of the weights' (the paper: 1, "an equal learning rate for all
    layers"; cuda-convnet's epsB and Caffe's ``lr_mult``: 2)."""
    schedule: str = "plateau"
    """``plateau`` (paper: lr / 10 when val top-1 error stops improving), ``step`` (Caffe: x lr_factor every
    ``step_size`` iterations), ``cosine`` or ``constant``."""
    patience: int = 5
    """Epochs without a new best validation top-1 error before ``plateau`` divides the lr."""
    lr_factor: float = 0.1
    """What ``plateau`` and ``step`` multiply the lr by."""
    max_reductions: int = 3
    """How many times ``plateau`` reduces the lr at most (paper: 3)."""
    step_size: int = 100_000
    """Iterations between reductions for ``step`` (bvlc_alexnet: 100,000 at batch 256)."""
    min_lr: float = 0.0
    """Final lr of ``cosine``."""
    warmup_epochs: float | None = None
    """Linear warm-up of the lr over this many epochs; ``None`` (the default): over 5 epochs or 150 steps,
    whichever is longer (:func:`warmup_steps`). ``0``: none, the paper's lr from the first step. The paper
    has no warm-up; why the default has one: docs/RECIPE.md."""

    # --- evaluation
    ten_crop: bool = True
    """At the end, also evaluate with the paper's 10 crops (4 corners + centre, and their reflections)."""

    # --- run
    seed: int = 0
    """Seed of the initialisation, data order, augmentation and validation split."""
    workers: int | None = None
    """Loader threads; None: the CPUs this process may use (shared between torchrun's local processes)."""
    device: str = "auto"
    """``auto`` (CUDA when available, else the CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    precision: str = "auto"
    """``auto`` (bf16 autocast on CUDA, fp32 on CPU), ``fp32`` or ``bf16`` (autocast)."""
    compile: bool | None = None
    """``torch.compile`` the model; None: on for CUDA, off for CPU."""
    compile_mode: str = "default"
    """``torch.compile`` mode when compiling: ``default``; ``reduce-overhead`` captures the model's steps in
    CUDA graphs (the host launches a step in microseconds); ``max-autotune`` also tries more kernels."""
    grouped_conv: str = "cudnn"
    """How the grouped convolutions (the two towers' conv2, conv4, conv5) run: ``cudnn`` (one convolution
    with groups), ``nchw`` (the same in NCHW inside a channels_last net) or ``split`` (one convolution per
    group). The same function and weights; only the speed differs."""
    augment_on: str = "auto"
    """Where the loader augments the training batches: "batched" (its threads only gather the stored
    bytes; the training thread copies and augments each batch in one step), "workers" (its threads,
    image by image) or "auto" (batched on CUDA, per image on a CPU). The same batches either way."""
    fused_optimizer: bool = False
    """Take the SGD update in one pass over each weight tensor (``paper``: compiled with ``torch.compile``;
    ``sgd``/``nesterov``: torch's ``fused=True``) instead of four multi-tensor passes. The same update up
    to rounding; opt-in until ``benchmarks/gpu.py`` has measured it."""
    cuda_graph: bool = False
    """Capture the whole training step (forward, backward, the update, the meter) as one CUDA graph that
    each step replays with one call (``alexnet.training.graph``); one process only, not with a
    ``compile_mode`` that makes CUDA graphs of its own. On a CPU the same step runs uncaptured. Opt-in
    until ``benchmarks/gpu.py`` has measured it."""
    channels_last: bool | None = None
    """NHWC memory format; None: on for CUDA, and on a CPU for nets without grouped convolutions."""
    out: str | None = None
    """Run directory; None: ``runs/<name>``."""
    name: str | None = None
    """Run name for the default run directory; None: derived from the data and model."""
    log_interval: int = 50
    """Steps between progress updates (the only host synchronisations of the step loop on CUDA)."""
    checkpoint_interval: int = 0
    """Also write the ``last`` checkpoint every this many steps (0: at the end of each epoch only)."""
    max_steps: int = 0
    """Stop after this many optimizer steps in all (0: no limit); for tests and benchmarks."""

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise BadOptionError (one line) for a value of the wrong type (:func:`check_field_types`: the
        field's annotation, integral floats and ints taken for int and float fields, paths as str) or
        outside what the trainer accepts."""
        from alexnet.models import model_info

        if not isinstance(self.model_options, dict):
            raise BadOptionError(f"model_options must be a mapping, got {_show(self.model_options)}")
        bad_keys = [k for k in self.model_options if not isinstance(k, str)]
        if bad_keys:
            raise BadOptionError(f"model_options must be named by strings (as --opt NAME=VALUE), got {bad_keys[0]!r}")
        # Types first (the value checks below compare them): 16.0 -> 16, 1 -> 1.0, a Path -> str.
        check_field_types(self, paths=PATH_FIELDS)
        model_info(self.arch)  # UnknownModelError for a bad name

        def positive(name: str, allow_zero: bool = False) -> None:
            value = getattr(self, name)
            if value < 0 or (value == 0 and not allow_zero):
                need = ">= 0" if allow_zero else "> 0"
                raise BadOptionError(f"{_flag(name)} must be {need}, got {value}")

        def one_of(name: str, choices: tuple[str, ...]) -> None:
            if getattr(self, name) not in choices:
                raise BadOptionError(f"{_flag(name)} must be one of {', '.join(choices)}; "
                                     f"got {getattr(self, name)!r}")

        for name in ("epochs", "batch_size", "lr", "bias_lr_factor", "patience", "step_size", "log_interval", "demo_images",
                     "demo_size"):
            positive(name)
        if self.warmup_epochs is not None:
            positive("warmup_epochs", allow_zero=True)
        for name in ("weight_decay", "lighting", "min_lr", "max_reductions",
                     "checkpoint_interval", "max_steps", "seed"):
            positive(name, allow_zero=True)
        # Upper bounds far past any recipe: a value beyond them is a typo (1e300), not a setting; found by
        # a hostile-input audit (--lr 1e308 overflowed inside torch; --warmup-epochs 1e300 kept the lr at 0;
        # --lighting 1e300 ended in "loss is not finite ... lower --lr").
        # (lrs up to 1e30: a float32 holds 3.4e38, and the tests diverge a run with lr 1e12 on purpose)
        for name, top in (("lr", 1e30), ("bias_lr_factor", 1e3), ("warmup_epochs", 1e6), ("epochs", 1e6),
                          ("lighting", 10.0), ("weight_decay", 1.0), ("min_lr", 1e30)):
            value = getattr(self, name)
            if value is not None and value > top:
                shown = f"{int(top):,}" if 1 <= top < 1e7 and top == int(top) else f"{top:g}"
                raise BadOptionError(f"{_flag(name)} must be at most {shown}, got {value:g}")
        if self.seed > MAX_SEED:  # torch.manual_seed takes 64-bit seeds; ours are added to the rank
            raise BadOptionError(f"--seed must be below 2**63, got {self.seed}")
        if not 0.0 <= self.momentum < 1.0:
            raise BadOptionError(f"--momentum must be in [0, 1), got {self.momentum}")
        if not 0.0 < self.lr_factor < 1.0:
            raise BadOptionError(f"--lr-factor must be in (0, 1), got {self.lr_factor}")
        if not 0.0 <= self.val_split < 1.0:
            raise BadOptionError(f"--val-split must be in [0, 1), got {self.val_split}")
        if not 2 <= self.demo_classes <= 10:
            raise BadOptionError(f"--demo-classes must be in 2..10, got {self.demo_classes}")
        if self.crop_size is not None and self.crop_size < 1:
            raise BadOptionError(f"--crop-size must be >= 1, got {self.crop_size}")
        if self.workers is not None and self.workers < 0:
            raise BadOptionError(f"--workers must be >= 0, got {self.workers}")
        one_of("optimizer", OPTIMIZERS)
        one_of("schedule", SCHEDULES)
        one_of("precision", PRECISIONS)
        one_of("compile_mode", COMPILE_MODES)
        one_of("grouped_conv", GROUPED_CONVS)
        one_of("augment_on", AUGMENT_ON)
        one_of("mean", MEAN_MODES)
        one_of("init", INITS)
        if self.cuda_graph and self.compile is not False and self.compile_mode in CUDAGRAPH_COMPILE_MODES:
            raise BadOptionError(f"--cuda-graph captures the whole step itself: use --compile-mode default "
                                 f"(--compile-mode {self.compile_mode} makes CUDA graphs of its own)")
        if self.optimizer == "nesterov" and self.momentum == 0:
            raise BadOptionError("--optimizer nesterov needs --momentum > 0")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", self.device):
            raise BadOptionError(f"--device must be auto, cpu, cuda, cuda:N or mps; got {self.device!r}")
        if self.name is not None and (not self.name or "/" in self.name or self.name.startswith(".")):
            raise BadOptionError(f"--name must be a plain directory name, got {self.name!r}")
        # Model options: build on the meta device (no memory, no init) to check names and values now.
        import torch

        from alexnet.models import create_model

        with torch.device("meta"):
            create_model(self.arch, num_classes=2, **self.model_options)

    # ------------------------------------------------------------------ dicts and files
    def to_dict(self) -> dict:
        """Plain dict of primitives (what the run directory and checkpoints store)."""
        return {f.name: (dict(v) if isinstance(v := getattr(self, f.name), dict) else v)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: dict, *, base: TrainConfig | None = None) -> TrainConfig:
        """A config from ``values`` (keys with ``-`` or ``_``), on top of ``base`` (default: the paper's).

        Values are coerced to the field's type ("1e-3" -> 0.001, "true" -> True); an unknown key or a value
        of the wrong type is a BadOptionError.
        """
        known = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        changes = {}
        for key, value in values.items():
            name = str(key).replace("-", "_")
            if name not in known:
                import difflib

                close = difflib.get_close_matches(name, known, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(known))}"
                raise BadOptionError(f"unknown training option {key!r}; {hint}")
            changes[name] = _coerce(name, value, hints[name])
        return dataclasses.replace(base or cls(), **changes)

    def replace(self, **changes) -> TrainConfig:
        """A copy with some fields changed (validated)."""
        return TrainConfig.from_dict(changes, base=self)

    @classmethod
    def paper(cls, **changes) -> TrainConfig:
        """The paper's recipe as written (the default without its warm-up; its open choices: docs/RECIPE.md)."""
        return cls.from_dict({**PAPER_RECIPE, **changes})

    @classmethod
    def demo(cls, **changes) -> TrainConfig:
        """The built-in demo's recipe (see DEMO_DEPARTURES for where it departs from the paper).

        Another ``arch`` drops the demo's model options (they are alexnet_owt's) unless given too."""
        base = dict(DEMO_RECIPE)
        if changes.get("arch", base["arch"]) != base["arch"]:
            base["model_options"] = {}
        return cls.from_dict({**base, **changes})


DEFAULT_WARMUP_EPOCHS = 5.0
DEFAULT_WARMUP_MIN_STEPS = 150
PAPER_RECIPE: dict = {"warmup_epochs": 0.0}
"""Where the default recipe departs from the paper's: applied to ``TrainConfig()``, the paper's."""


def warmup_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    """Steps of linear lr warm-up: ``warmup_epochs`` epochs, or by default 5 epochs but at least 150 steps.

    Why in steps too: the paper's net dies when its lr passes the top layer's stability limit before the
    network has had some tens of steps at a lower rate (measured: docs/RECIPE.md, "The default: a warm-up,
    and how long"); an epoch can be a handful of steps on a small dataset, so 5 epochs alone would not
    protect it, while on ImageNet 5 epochs are 50,000 steps."""
    if config.warmup_epochs is not None:
        return round(config.warmup_epochs * steps_per_epoch)
    return max(round(DEFAULT_WARMUP_EPOCHS * steps_per_epoch), DEFAULT_WARMUP_MIN_STEPS)

# The demo: a registered ImageNet-geometry model at its own 224 input size, on generated images, in a
# couple of minutes on a laptop CPU (docs/TIMINGS.md). Each choice was made by measurement (the figures,
# with their date and machine: docs/TRAINING.md, "The demo"): alexnet_owt, because the paper's net is much
# slower on a CPU (LRN and grouped convolutions); batch 16, because with the paper's 128 a few hundred
# images give a handful of steps, too few to leave the initial plateau; He init (fan-out) with lr 0.005,
# because even at batch 16 PyTorch's default init left some seeds on that plateau while He init brought
# every seed tried well below chance; no warm-up, because a short one made the worst seed worse.
DEMO_RECIPE: dict = {
    "arch": "alexnet_owt",
    "model_options": {"dropout": 0.0},
    "init": "kaiming",
    "demo_images": 640,
    "val_split": 0.2,
    "epochs": 4,
    "batch_size": 16,
    "lr": 0.005,
    "schedule": "cosine",
    "warmup_epochs": 0.0,  # none: a short warm-up made the worst seed worse (docs/TRAINING.md, "The demo")
    "name": "demo",
}

# Fields that decide what is learned (not where or how fast it runs), for ``departures``.
_RECIPE_FIELDS = ("arch", "model_options", "init", "crop_size", "mean", "lighting", "epochs", "batch_size", "optimizer",
                  "lr", "momentum", "weight_decay", "bias_decay", "bias_lr_factor", "schedule", "patience", "lr_factor",
                  "max_reductions", "warmup_epochs")


def departures(config: TrainConfig, *, demo: bool | None = None) -> list[str]:
    """Where ``config`` differs from the paper's recipe, one short phrase each (printed by every run).

    ``demo``: whether the run trains on the generated demo images (default: when ``config.data`` is None;
    a run given an in-memory dataset has no ``data`` either)."""
    paper = TrainConfig.paper()
    out = []
    if config.data is None if demo is None else demo:
        out.append(f"{config.demo_images} generated demo images of {config.demo_classes} classes")
    for name in _RECIPE_FIELDS:
        mine, theirs = getattr(config, name), getattr(paper, name)
        if name in ("patience", "lr_factor", "max_reductions") and config.schedule != "plateau":
            continue
        if mine != theirs:
            if name == "model_options":
                out.append("model options " + ", ".join(f"{k}={v}" for k, v in mine.items()))
            elif name == "crop_size":
                out.append(f"crop {mine}")
            elif name == "warmup_epochs" and mine is None:
                out.append(f"lr warm-up over {DEFAULT_WARMUP_EPOCHS:g} epochs or {DEFAULT_WARMUP_MIN_STEPS} steps, "
                           "whichever is longer (paper: none; --warmup-epochs 0 for the paper's; docs/RECIPE.md)")
            else:
                out.append(f"{name.replace('_', ' ')} {mine} (paper: {theirs})")
    return out


DEMO_DEPARTURES = (
    "alexnet_owt (torchvision's one-weird-trick AlexNet: over twice as fast on a CPU as the paper's net) "
    "without dropout",
    "640 generated images of 10 classes (128 held out), 4 epochs",
    "batch 16 instead of 128 (more steps from few images); He init and lr 0.005 with cosine decay (off the "
    "initial plateau within a hundred steps)",
)
"""Why the demo departs from the paper (docs/TRAINING.md and the demo's output say so)."""


def load_config_file(path: str | Path) -> dict:
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) file of training options into a dict."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a config file (YAML or TOML)")
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"config file {path} is not text (UTF-8)") from None
    try:
        if path.suffix.lower() == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover
                import tomli as tomllib
            values = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            from alexnet.untrusted import load_yaml

            values = load_yaml(text, str(path)) or {}
        else:
            raise UserError(f"config file must end in .yaml, .yml or .toml: {path}")
    except UserError:
        raise
    except Exception as e:  # yaml.YAMLError, tomllib.TOMLDecodeError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        mark = getattr(e, "problem_mark", None)  # YAML: where; TOML's message says it itself
        if mark is not None:
            first = f"{getattr(e, 'problem', None) or first} (line {mark.line + 1}, column {mark.column + 1})"
        raise UserError(f"{path}: not valid {path.suffix[1:].upper()}: {first}") from None
    if not isinstance(values, dict):
        raise UserError(f"{path}: expected a mapping of option: value at the top level")
    # A "train:" section is accepted too, so that one file can hold several commands' options.
    if set(values) == {"train"} and isinstance(values["train"], dict):
        values = values["train"]
    return values


def save_config_file(config: TrainConfig, path: str | Path) -> None:
    import yaml

    from alexnet.files import write_atomic

    write_atomic(path, yaml.safe_dump(config.to_dict(), sort_keys=False))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


_WHAT = {int: "an integer", float: "a finite number", bool: "true or false", str: "a string",
         dict: "a mapping of name: value", tuple: "a list", list: "a list"}
_PLURAL = {int: "integers", float: "finite numbers", bool: "true or false values", str: "strings"}


def _show(value) -> str:
    """``repr(value)`` on one line, at most 60 characters (an array's repr has several)."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def _optional(hint):
    """``(X, True)`` for ``X | None``, else ``(hint, False)``."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0], True
    return hint, False


@functools.cache
def _field_hints(cls: type) -> dict:
    return typing.get_type_hints(cls)


def check_field_types(config, *, label: Callable[[str], str] = _flag, paths: Collection[str] = ()) -> None:
    """Check each field of the dataclass instance ``config`` against its annotation and normalise it in
    place (frozen dataclasses too); a :class:`BadOptionError` of one line, naming the field as ``label``
    does (``--batch-size`` by default), for a value of the wrong type.

    The Python API's rule (``from_dict`` also takes text, from YAML and the command line): ``int`` takes
    an int or an integral float (16.0 -> 16), ``float`` an int or float that is finite (-> float), ``bool``
    only True or False, ``str`` a str; never a bool for a number, nor a str for a number or a bool.
    ``X | None`` also takes None; ``tuple[X, ...]`` / ``list[X]`` a tuple or list (-> the annotated one),
    each element checked as ``X``; ``dict`` a dict. ``paths``: str fields that name a file or folder,
    which take an ``os.PathLike`` too (-> str) and refuse the empty string. Other annotations: unchecked.
    Meant for any config dataclass (``ReluTanhConfig``, ``AblationConfig`` could call it from their
    ``validate`` with their own ``label``)."""
    hints = _field_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        checked = _check_type(label(f.name), value, hints[f.name], path=f.name in paths)
        if checked is not value:
            object.__setattr__(config, f.name, checked)


def _check_type(label: str, value, hint, *, path: bool = False):
    """``value`` as the type ``hint`` says (see :func:`check_field_types`), or a BadOptionError."""
    hint, optional = _optional(hint)
    if value is None and optional:
        return None
    origin, args = typing.get_origin(hint) or hint, typing.get_args(hint)
    if origin not in _WHAT:
        return value
    what = "a path" if path else _WHAT[origin]
    if origin in (tuple, list) and args:
        what = f"a list of {_PLURAL.get(args[0], 'values')}"
    bad = BadOptionError(f"{label} must be {what}{' or None' if optional else ''}, got {_show(value)}")
    if origin is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if isinstance(value, bool) or (origin is not str and isinstance(value, str)):
        raise bad  # True is an int and a str is a sequence, but neither is what such a field means
    if origin is int:
        if isinstance(value, numbers.Integral):
            return value if type(value) is int else int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad
    if origin is float:
        if not isinstance(value, numbers.Real):
            raise bad
        try:
            result = float(value)
        except OverflowError:  # an int beyond a float's range
            raise bad from None
        if not math.isfinite(result):
            raise bad
        return value if type(value) is float else result
    if origin is str:
        if path and isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str):
            raise bad
        if path and not value:
            raise BadOptionError(f"{label} must not be an empty path{' (leave it out for the default)' if optional else ''}")
        return value
    if origin is dict:
        if isinstance(value, dict):
            return value
        raise bad
    # tuple or list
    if not isinstance(value, (tuple, list)):
        raise bad
    kinds = [args[0]] * len(value) if args and (args[-1] is Ellipsis or origin is list) else list(args)
    if args and len(kinds) != len(value):  # a tuple[X, Y] of another length
        raise bad
    try:
        items = [_check_type(label, v, k) for v, k in zip(value, kinds, strict=True)] if args else list(value)
    except BadOptionError:
        raise bad from None  # named as the whole list
    if type(value) is origin and all(a is b for a, b in zip(items, value, strict=True)):
        return value
    return origin(items)


def _coerce(name: str, value, hint):
    """``value`` as the type ``hint`` (int, float, bool, str, dict, or ``X | None``), text included (YAML,
    TOML and the command line: "1e-3" -> 0.001, "true" -> True, "none" -> None)."""
    path = name in PATH_FIELDS
    hint, optional = _optional(hint)
    if optional:
        if path and isinstance(value, str) and not value:
            raise BadOptionError(f"{_flag(name)} must not be an empty path (leave it out for the default)")
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "auto", "")):
            return None
    what = "a path" if path else _WHAT.get(hint, str(hint))
    bad = BadOptionError(f"{_flag(name)} must be {what}, got {_show(value)}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise bad
    if hint is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                raise bad from None
        raise bad
    if hint is float:
        if isinstance(value, bool):
            raise bad
        try:
            result = float(value)
        except (TypeError, ValueError, OverflowError):
            raise bad from None
        if not math.isfinite(result):
            raise bad
        return result
    if hint is str:
        if path and isinstance(value, os.PathLike):
            return os.fspath(value)  # a bytes path: refused by check_field_types
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad
    if hint is dict:
        if isinstance(value, dict):
            return {str(k).replace("-", "_"): v for k, v in value.items()}
        raise bad
    return value
