"""Contrastive losses: per pair (siamese networks) and over all pairs of a batch.

* `contrastive_pair_loss` — Hadsell, Chopra & LeCun (CVPR 2006), as used by the siamese LSTM
  (Varior et al., ECCV 2016): L = (1 - Y) * 1/2 * D^2 + Y * 1/2 * max(0, m - D)^2 with Y = 0 for
  a same-person pair, Y = 1 otherwise, D the Euclidean distance of the two branch outputs.
* `batch_contrastive_loss` — the contrastive loss of Chen, Duffner et al. (2021), Eq. 10, over
  every unordered pair of a batch of embeddings.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfreid.losses import distances as _dist
from tfreid.losses.wrapper import LossFunctionWrapper


def contrastive_pair_loss(y_true, distances, margin: float = 0.5) -> tf.Tensor:
    """Per-pair contrastive loss of Hadsell et al. 2006.

    Args:
      y_true: [batch] or [batch, 1]; 0 = same person, 1 = different people.
      distances: [batch] or [batch, 1] Euclidean distances D >= 0 of the pairs.
      margin: m, the distance beyond which a negative pair costs nothing.

    Returns:
      [batch] losses (1 - Y) * 0.5 * D^2 + Y * 0.5 * max(0, m - D)^2.
    """
    distances = tf.convert_to_tensor(distances)
    if not distances.dtype.is_floating:
        distances = tf.cast(distances, tf.float32)
    if distances.shape.rank is not None and distances.shape.rank > 1:
        if distances.shape.rank != 2 or distances.shape[-1] not in (1, None):
            raise ValueError(
                "contrastive_pair_loss: distances (y_pred) must have shape [batch] or [batch, 1], "
                f"got {distances.shape}")
    distances = tf.reshape(distances, [-1])
    y = tf.reshape(tf.cast(y_true, distances.dtype), [-1])
    if y.shape[0] is not None and distances.shape[0] is not None and y.shape[0] != distances.shape[0]:
        raise ValueError(
            f"contrastive_pair_loss: y_true has {y.shape[0]} pairs but distances have {distances.shape[0]}")
    hinge = tf.maximum(margin - distances, 0.0)
    return (1.0 - y) * 0.5 * tf.square(distances) + y * 0.5 * tf.square(hinge)


@keras.saving.register_keras_serializable(package="tfreid")
class ContrastivePairLoss(LossFunctionWrapper):
    """Keras wrapper of `contrastive_pair_loss` (y_true = 0 same / 1 different [B] or [B, 1],
    y_pred = pair distances [B] or [B, 1]): a per-sample loss, so `sample_weight` [B] weights
    the pairs. The reduction defaults to "sum": the siamese LSTM paper sums the loss over the
    pairs.
    """

    fn = staticmethod(contrastive_pair_loss)
    per_sample = True
    default_reduction = "sum"


def batch_contrastive_loss(labels, embeddings, margin: float = 1.0, squared: bool = True) -> tf.Tensor:
    """Contrastive loss over all unordered pairs of a batch (Chen, Duffner et al. 2021, Eq. 10).

    With d(i, j) = ||f(x_i) - f(x_j)||^2 (squared=True, the paper's notation) the loss of a pair is
        d(i, j)                  if i and j show the same identity,
        max(0, m - d(i, j))      otherwise,
    averaged over the B (B - 1) / 2 pairs i < j. With squared=False it is the Hadsell form on the
    plain distance D: D^2 for positives and max(0, m - D)^2 for negatives.

    Args:
      labels: [B] identity labels.
      embeddings: [B, d] float embeddings.
      margin: m (default 1).
      squared: distance choice, see above.

    Returns:
      Scalar loss; 0 for B < 2.
    """
    labels, embeddings = _dist.prepare(labels, embeddings, "batch_contrastive_loss")
    d = _dist.batch_distances(embeddings, squared=squared)
    pos, neg = _dist.identity_masks(labels)
    if squared:
        per_pair = tf.where(pos, d, tf.maximum(margin - d, 0.0))
    else:
        per_pair = tf.where(pos, tf.square(d), tf.square(tf.maximum(margin - d, 0.0)))
    b = tf.shape(labels)[0]
    upper = tf.linalg.band_part(tf.ones([b, b], tf.bool), 0, -1)  # i <= j
    upper = tf.logical_and(upper, tf.logical_or(pos, neg))  # drop the diagonal
    return _dist.masked_mean(per_pair, upper)


@keras.saving.register_keras_serializable(package="tfreid")
class BatchContrastiveLoss(LossFunctionWrapper):
    """Keras wrapper of `batch_contrastive_loss` (y_true = labels [B], y_pred = embeddings [B, d])."""

    fn = staticmethod(batch_contrastive_loss)
