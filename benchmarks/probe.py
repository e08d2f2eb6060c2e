"""The first training steps of a recipe, seen from inside: per layer, per step.

    python benchmarks/probe.py --data PREPARED [--steps 60] [--batch-size 128] [--lr 0.01]
        [--arch alexnet] [--init model] [--warmup-epochs 0] [--opt key=value] [--json PATH]

Builds the real :class:`alexnet.training.trainer.Trainer` (the same loader, augmentation, optimizer and
schedule as ``alexnet train``) and calls its own training step, with hooks that record for every ReLU
layer (conv1..conv5, fc6, fc7) the mean and std of its output, the fraction of outputs that are positive
and the share of *units* (a channel at a position, or a neuron) positive for at least one image of the
batch; and for every learned layer the norms of its weights, their gradient and the update the optimizer
applied, for the weights and the biases apart, and the biases' mean. The loss and the logits' spread are
recorded too. docs/RECIPE.md explains what these show for the paper's recipe.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from common import machine_info, write_json  # noqa: E402

from alexnet.cli.common import parse_options  # noqa: E402
from alexnet.training import TrainConfig  # noqa: E402
from alexnet.training.trainer import Trainer  # noqa: E402


def relu_layers(model: nn.Module) -> dict[str, nn.Module]:
    """ReLU modules named after the layer they follow (act1 -> conv1 ... act7 -> fc7)."""
    names = {}
    for name, m in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if isinstance(m, nn.ReLU) and leaf.startswith("act"):
            i = int(leaf[3:])
            names[f"conv{i}" if i <= 5 else f"fc{i}"] = m
    return names


def learned_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {name.rsplit(".", 1)[-1]: m for name, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear))}


def probe(config: TrainConfig, steps: int, *, every: int = 1, print_every: int = 5) -> list[dict]:
    trainer = Trainer(config, run_dir=None, progress=False, handle_signals=False)
    model = trainer.module
    acts: dict[str, dict] = {}

    def hook(name):
        def record(module, inputs, output):
            o = output.detach().float()
            flat = o.flatten(1)  # (B, units)
            acts[name] = {"mean": float(o.mean()), "std": float(o.std()),
                          "active": float((flat > 0).float().mean()),
                          "alive_units": float((flat > 0).any(0).float().mean())}
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in relu_layers(model).items()]
    logits_hook = {}
    last = list(learned_layers(model).values())[-1]
    handles.append(last.register_forward_hook(
        lambda m, i, o: logits_hook.update(std=float(o.detach().float().std(0).mean()),
                                           spread=float((o.max(1).values - o.min(1).values).detach().float().mean()))))
    layers = learned_layers(model)
    rows: list[dict] = []
    step = 0
    t0 = time.perf_counter()
    epoch = 0
    while step < steps:
        trainer.train_loader.set_epoch(epoch)
        trainer.train_model.train()
        for x, y in trainer.train_loader:
            record = step % every == 0
            before = {n: (m.weight.detach().clone(), m.bias.detach().clone()) for n, m in layers.items()} \
                if record else None
            trainer.train_step(x, y)
            loss = float(trainer.meter.sums[0]) / max(trainer.meter.images, 1)  # running mean of the epoch
            trainer.meter.reset()
            row = {"step": step + 1, "loss": loss, "lr": trainer.lr, "logits_std": logits_hook.get("std"),
                   "logits_spread": logits_hook.get("spread")}
            if record:
                row["acts"] = {n: dict(v) for n, v in acts.items()}
                row["layers"] = {}
                for n, m in layers.items():
                    w0, b0 = before[n]
                    row["layers"][n] = {
                        "w_norm": float(m.weight.norm()), "w_grad": float(m.weight.grad.norm()),
                        "w_update": float((m.weight.detach() - w0).norm()),
                        "b_mean": float(m.bias.mean()), "b_grad": float(m.bias.grad.norm()),
                        "b_update": float((m.bias.detach() - b0).norm()),
                    }
            rows.append(row)
            step += 1
            if print_every and (step % print_every == 0 or step == 1):
                alive = " ".join(f"{n}={v['alive_units']:.2f}" for n, v in acts.items())
                print(f"step {step:4d}  loss {loss:8.4f}  lr {trainer.lr:.4g}  logits spread "
                      f"{row['logits_spread']:.2f}  units alive: {alive}  ({time.perf_counter() - t0:.0f} s)",
                      flush=True)
            if not math.isfinite(loss) or step >= steps:
                break
        else:
            epoch += 1
            continue
        break
    for h in handles:
        h.remove()
    trainer.train_loader.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="a prepared dataset (alexnet prepare)")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--every", type=int, default=1, help="record layer norms every N steps")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any TrainConfig option, e.g. --set lr=0.001 --set init=kaiming")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE", help="model option")
    args = p.parse_args(argv)
    values = {"data": str(args.data), "val_split": 0.0, "device": "cpu", "compile": False, "ten_crop": False}
    for item in args.set:
        key, _, value = item.partition("=")
        values[key] = value
    if args.opt:
        values["model_options"] = parse_options(args.opt)
    config = TrainConfig.from_dict(values)
    rows = probe(config, args.steps, every=args.every)
    if args.json:
        write_json(args.json, {"machine": machine_info(), "config": config.to_dict(),
                               "steps": rows})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
