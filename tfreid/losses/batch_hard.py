"""Batch-hard triplet loss (Hermans, Beyer & Leibe 2017, "In Defense of the Triplet Loss")."""

from __future__ import annotations

import keras
import tensorflow as tf

from tfreid.losses import distances as _dist
from tfreid.losses.wrapper import LossFunctionWrapper


def batch_hard_triplet_loss(labels, embeddings, margin: float = 1.0, soft_margin: bool = False,
                            squared: bool = True) -> tf.Tensor:
    """Per anchor, its hardest positive and hardest negative in the batch (Chen et al. Eq. 11).

    For each anchor a with at least one positive and one negative:
        l_a = h(max_p d(a, p) - min_n d(a, n))
    with h(x) = max(x + m, 0), or h(x) = softplus(x) = log(1 + e^x) when soft_margin=True
    (Hermans et al.'s soft margin; `margin` is then unused). The loss is the mean of l_a over
    such anchors. Ties in max/min do not matter for the value; the gradient is shared by the
    tied entries (TF splits it evenly among them).

    Hermans et al. use plain Euclidean distances (squared=False) with the soft margin; the
    default here is the squared distance of the Rank-Triplet paper, so the losses compare alike.

    Args:
      labels: [B] identity labels.
      embeddings: [B, d] float embeddings.
      margin: m (default 1).
      soft_margin: softplus instead of the hinge.
      squared: squared (default) or plain Euclidean distance.

    Returns:
      Scalar loss; 0 when no anchor has both a positive and a negative.
    """
    labels, embeddings = _dist.prepare(labels, embeddings, "batch_hard_triplet_loss")
    d = _dist.batch_distances(embeddings, squared=squared)
    pos, neg = _dist.identity_masks(labels)
    big = tf.reduce_max(d) + 1.0
    # Distances are >= 0, so 0 is a neutral fill for max and `big` for min.
    hardest_pos = tf.reduce_max(tf.where(pos, d, tf.zeros_like(d)), axis=1)
    hardest_neg = tf.reduce_min(tf.where(neg, d, tf.fill(tf.shape(d), big)), axis=1)
    x = hardest_pos - hardest_neg
    per_anchor = tf.nn.softplus(x) if soft_margin else tf.maximum(x + margin, 0.0)
    valid = tf.logical_and(tf.reduce_any(pos, axis=1), tf.reduce_any(neg, axis=1))
    return _dist.masked_mean(per_anchor, valid)


@keras.saving.register_keras_serializable(package="tfreid")
class BatchHardTripletLoss(LossFunctionWrapper):
    """Keras wrapper of `batch_hard_triplet_loss` (y_true = labels [B], y_pred = embeddings [B, d])."""

    fn = staticmethod(batch_hard_triplet_loss)
