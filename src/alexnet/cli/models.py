"""``alexnet models``: the registry, with parameter counts and input sizes."""

from __future__ import annotations

import torch

from alexnet.cli.common import format_table
from alexnet.models import count_parameters, create_model, list_models, model_info


def register(sub) -> None:
    p = sub.add_parser("models", help="list the registered models",
                       description="List the registered models with their parameter counts and input sizes.")
    p.set_defaults(func=run)


def run(args) -> int:
    rows = []
    for name in list_models():
        info = model_info(name)
        with torch.device("meta"):  # shapes only: no memory, no init cost
            params = count_parameters(create_model(name))
        rows.append([name, f"{params:,}", f"{info.input_size}x{info.input_size}", info.default_num_classes,
                     info.description])
    print(format_table(["model", "params", "input", "classes", "what it is"], rows, align="lrrrl"))
    return 0
