"""torch.hub entry points: ``torch.hub.load("<owner>/alexnet", "alexnet", num_classes=1000)``.

Every registered model is exposed under its registry name, with torchvision's two ways of asking for
weights:

- ``pretrained=False`` / ``weights=None`` (the defaults): the untrained net (``alexnet.models.create_model``);
- ``pretrained=True`` (or ``weights="DEFAULT"``): the model's published weights (``alexnet_owt``:
  torchvision's, downloaded once); a model without any is refused (pass ``weights=PATH``);
- ``weights=...``: anything ``alexnet.create_model(name, weights=...)`` takes: a published name
  (``"torchvision"``), a weights file, a checkpoint, a run directory of ``alexnet train``.

Other keyword arguments are the model's options and ``num_classes``.
"""

import os
import sys

dependencies = ["torch", "torchvision"]

# The package lives in src/ (src layout); make it importable when torch.hub loads this file from a clone.
_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src")
if os.path.isdir(_SRC) and _SRC not in sys.path:
    sys.path.insert(0, _SRC)

from alexnet.models import list_models  # noqa: E402


def _entry(name):
    def build(pretrained: bool = False, weights=None, progress: bool = True, **kwargs):
        import alexnet

        return alexnet.create_model(name, pretrained=pretrained, weights=weights, progress=progress, **kwargs)

    build.__name__ = name
    build.__doc__ = (f"The registered model {name!r} (see `alexnet models`): untrained by default; "
                     "pretrained=True for its published weights, weights=PATH for a weights file.")
    return build


for _name in list_models():
    globals()[_name] = _entry(_name)
