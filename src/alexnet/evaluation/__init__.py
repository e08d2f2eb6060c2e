"""Evaluation (top-1/top-5 error with 1 or 10 crops) and prediction."""

from alexnet.evaluation.evaluate import EvalResult, evaluate, evaluate_batches
from alexnet.evaluation.predict import Prediction, class_probabilities, predict

__all__ = ["EvalResult", "Prediction", "class_probabilities", "evaluate", "evaluate_batches", "predict"]
