"""AlexNet (Krizhevsky, Sutskever & Hinton, 2012) in PyTorch: the paper's network and its variants,
data preparation, training recipe, evaluation, inspection and weight conversion.

Quick use::

    import alexnet
    model = alexnet.create_model("alexnet", num_classes=1000)
    alexnet.list_models()
"""

from alexnet.errors import UserError
from alexnet.evaluation.predict import predict
from alexnet.models import count_parameters, list_models, model_info, summarize
from alexnet.weights.load import create_model, load

__version__ = "0.1.0"

__all__ = ["UserError", "__version__", "count_parameters", "create_model", "list_models", "load", "model_info",
           "predict", "summarize"]
