"""Evaluation: distances, CMC / mAP / mINP, protocols and k-reciprocal re-ranking.

Pure numpy/scipy; importing this package does not import TensorFlow.
"""

from tfreid.evaluation.distance import distance_matrix, iter_distance_blocks, topk
from tfreid.evaluation.metrics import AP_CONVENTIONS, EvalResult, evaluate

__all__ = ["AP_CONVENTIONS", "EvalResult", "distance_matrix", "evaluate", "iter_distance_blocks",
           "topk", "protocols", "rerank"]


def __getattr__(name):
    if name in ("protocols", "rerank"):
        import importlib
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
