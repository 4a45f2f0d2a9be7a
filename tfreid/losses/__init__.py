"""Metric-learning losses for re-identification.

Each batch loss is a pure function `f(labels [B], embeddings [B, d]) -> scalar` plus a thin
Keras class registered under the "tfreid" package (a `LossFunctionWrapper` of the function),
so that models compile, save and reload (y_true = labels, y_pred = embeddings). Exceptions: the
per-pair siamese loss `contrastive_pair_loss(y_true, distances) -> [B]` and
`classification_loss(labels, logits)`. A batch-level loss class refuses `sample_weight` and any
reduction but the default (see `tfreid.losses.wrapper`); the per-pair one takes both.
Distances are squared Euclidean by default (the ||.||^2 of Chen, Duffner et al. 2021).

`get(name, **kwargs)` builds a loss from a short name, e.g. for a `--loss` flag.
"""

from tfreid.losses.batch_hard import BatchHardTripletLoss, batch_hard_triplet_loss
from tfreid.losses.classification import ClassificationHead, ClassificationLoss, classification_loss
from tfreid.losses.contrastive import (
    BatchContrastiveLoss,
    ContrastivePairLoss,
    batch_contrastive_loss,
    contrastive_pair_loss,
)
from tfreid.losses.distances import batch_distances, batch_squared_distances
from tfreid.losses.quadruplet import QuadrupletLoss, quadruplet_loss, quadruplet_term
from tfreid.losses.rank_triplet import (
    RankTripletBaselineLoss,
    RankTripletLoss,
    average_precision_eq6,
    batch_ranking_stats,
    rank_triplet_loss,
    swap_gain_matrix,
)
from tfreid.losses.triplet import TripletLoss, triplet_loss
from tfreid.losses.wrapper import LossFunctionWrapper

LOSSES = {
    "contrastive": BatchContrastiveLoss,
    "contrastive_pair": ContrastivePairLoss,
    "triplet": TripletLoss,
    "batch_hard": BatchHardTripletLoss,
    "quadruplet": QuadrupletLoss,
    "classification": ClassificationLoss,
    "rank_triplet": RankTripletLoss,
    "rank_triplet_baseline": RankTripletBaselineLoss,
}


def get(name: str, **kwargs):
    """Returns a new loss instance by short name (a key of `LOSSES`), with its keyword arguments."""
    try:
        cls = LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; expected one of {sorted(LOSSES)}") from None
    return cls(**kwargs)


__all__ = [
    "LOSSES",
    "BatchContrastiveLoss",
    "BatchHardTripletLoss",
    "ClassificationHead",
    "ClassificationLoss",
    "ContrastivePairLoss",
    "LossFunctionWrapper",
    "QuadrupletLoss",
    "RankTripletBaselineLoss",
    "RankTripletLoss",
    "TripletLoss",
    "average_precision_eq6",
    "batch_contrastive_loss",
    "batch_distances",
    "batch_hard_triplet_loss",
    "batch_ranking_stats",
    "batch_squared_distances",
    "classification_loss",
    "contrastive_pair_loss",
    "get",
    "quadruplet_loss",
    "quadruplet_term",
    "rank_triplet_loss",
    "swap_gain_matrix",
    "triplet_loss",
]
