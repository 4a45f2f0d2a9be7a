"""Triplet loss over all valid triplets of a batch (Chen, Duffner et al. 2021, Eq. 8)."""

from __future__ import annotations

import keras
import tensorflow as tf

from tfreid.losses import distances as _dist
from tfreid.losses.wrapper import LossFunctionWrapper


def triplet_loss(labels, embeddings, margin: float = 1.0, squared: bool = True) -> tf.Tensor:
    """Mean of max(d(a, p) - d(a, n) + m, 0) over every valid triplet of the batch.

    A triplet (a, p, n) is valid when p != a has a's identity and n another identity. The mean
    runs over all valid triplets, including those already satisfied (zero loss). d is the
    squared Euclidean distance ||f(a) - f(p)||^2 as in the paper (squared=False: plain distance).
    The B^3 triplet tensor is fine for re-id batch sizes (128^3 = 2M entries).

    Args:
      labels: [B] identity labels.
      embeddings: [B, d] float embeddings.
      margin: m (default 1, the paper's m1 of the quadruplet comparison).
      squared: squared (default) or plain Euclidean distance.

    Returns:
      Scalar loss; 0 when the batch has no valid triplet.
    """
    labels, embeddings = _dist.prepare(labels, embeddings, "triplet_loss")
    d = _dist.batch_distances(embeddings, squared=squared)
    pos, neg = _dist.identity_masks(labels)
    return triplet_from_distances(d, pos, neg, margin)


def triplet_from_distances(d: tf.Tensor, pos: tf.Tensor, neg: tf.Tensor, margin: float) -> tf.Tensor:
    """`triplet_loss` given the distance matrix d [B, B] and the identity masks [B, B]."""
    hinge = tf.maximum(d[:, :, None] - d[:, None, :] + margin, 0.0)  # [a, p, n]
    valid = tf.logical_and(pos[:, :, None], neg[:, None, :])
    return _dist.masked_mean(hinge, valid)


@keras.saving.register_keras_serializable(package="tfreid")
class TripletLoss(LossFunctionWrapper):
    """Keras wrapper of `triplet_loss` (y_true = labels [B], y_pred = embeddings [B, d])."""

    fn = staticmethod(triplet_loss)
