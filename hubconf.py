"""torch.hub entry points: ``torch.hub.load("<owner>/alexnet", "alexnet", num_classes=1000)``.

Every registered model is exposed under its registry name.
"""

import os
import sys

dependencies = ["torch", "torchvision"]

# The package lives in src/ (src layout); make it importable when torch.hub loads this file from a clone.
_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src")
if os.path.isdir(_SRC) and _SRC not in sys.path:
    sys.path.insert(0, _SRC)

from alexnet.models import create_model, list_models  # noqa: E402


def _entry(name):
    def build(**kwargs):
        return create_model(name, **kwargs)

    build.__name__ = name
    build.__doc__ = f"Build the registered model {name!r} (see `alexnet models`)."
    return build


for _name in list_models():
    globals()[_name] = _entry(_name)
