"""Quadruplet loss (Chen, Chen, Zhang & Huang, CVPR 2017), as in Chen, Duffner et al. 2021 Eq. 12."""

from __future__ import annotations

import keras
import tensorflow as tf

from tfreid.losses import distances as _dist
from tfreid.losses.triplet import triplet_from_distances
from tfreid.losses.wrapper import LossFunctionWrapper


def quadruplet_term(labels, embeddings, margin: float = 0.5, squared: bool = True) -> tf.Tensor:
    """Mean of max(d(i, j) - d(k, l) + m2, 0) over every valid quadruplet of the batch.

    Valid: i != j share identity c; k and l have two different identities, both != c. Pairs are
    unordered on both sides (d is symmetric, so ordered pairs give the same mean).

    Vectorised over (positive pair, negative pair) combinations, gathered with boolean masks:
    memory is O(#positive pairs x #negative pairs), e.g. 384 x 7936 = 3M for a 32x4 P x K batch
    of 128, instead of B^4 = 268M. Batches with very many positive pairs (few large identities)
    grow quadratically; the sampler's P x K batches stay small.

    Returns:
      Scalar; 0 when there is no valid quadruplet (fewer than three identities or no positive pair).
    """
    labels, embeddings = _dist.prepare(labels, embeddings, "quadruplet_loss")
    d = _dist.batch_distances(embeddings, squared=squared)
    pos, neg = _dist.identity_masks(labels)
    return _quadruplet_from_distances(labels, d, pos, neg, margin)


def _quadruplet_from_distances(labels, d, pos, neg, margin):
    b = tf.shape(labels)[0]
    upper = tf.linalg.band_part(tf.ones([b, b], tf.bool), 0, -1)  # i <= j; pos/neg exclude i == j
    pos_idx = tf.where(tf.logical_and(pos, upper))  # [P, 2]
    neg_idx = tf.where(tf.logical_and(neg, upper))  # [N, 2]
    d_pos = tf.gather_nd(d, pos_idx)  # [P]
    d_neg = tf.gather_nd(d, neg_idx)  # [N]
    c = tf.gather(labels, pos_idx[:, 0])  # identity of each positive pair
    lk = tf.gather(labels, neg_idx[:, 0])
    ll = tf.gather(labels, neg_idx[:, 1])
    valid = tf.logical_and(tf.not_equal(c[:, None], lk[None, :]),
                           tf.not_equal(c[:, None], ll[None, :]))  # [P, N]
    hinge = tf.maximum(d_pos[:, None] - d_neg[None, :] + margin, 0.0)
    return _dist.masked_mean(hinge, valid)


def quadruplet_loss(labels, embeddings, margin1: float = 1.0, margin2: float = 0.5,
                    squared: bool = True) -> tf.Tensor:
    """Quadruplet loss = triplet term (margin m1) + quadruplet term (margin m2).

    L = mean over triplets of max(d(i, j) - d(i, k) + m1, 0)
      + mean over quadruplets of max(d(i, j) - d(k, l) + m2, 0),
    d = ||f(.) - f(.)||^2 (squared=False: plain distance), i, j same identity, k of another, and
    l of a fourth identity different from both. Chen et al. 2017 learn the metric and adapt the
    margins; here, as in the Rank-Triplet paper's comparison, d is the embedding distance and the
    margins are fixed (m1 = 1, m2 = 0.5). Each term is averaged over its valid tuples (see
    `tfreid.losses.triplet_loss` and `quadruplet_term`).

    Args:
      labels: [B] identity labels.
      embeddings: [B, d] float embeddings.
      margin1: m1 of the triplet term.
      margin2: m2 of the quadruplet term.
      squared: squared (default) or plain Euclidean distance.

    Returns:
      Scalar loss; each term is 0 when it has no valid tuple.
    """
    labels, embeddings = _dist.prepare(labels, embeddings, "quadruplet_loss")
    d = _dist.batch_distances(embeddings, squared=squared)
    pos, neg = _dist.identity_masks(labels)
    return (triplet_from_distances(d, pos, neg, margin1)
            + _quadruplet_from_distances(labels, d, pos, neg, margin2))


@keras.saving.register_keras_serializable(package="tfreid")
class QuadrupletLoss(LossFunctionWrapper):
    """Keras wrapper of `quadruplet_loss` (y_true = labels [B], y_pred = embeddings [B, d])."""

    fn = staticmethod(quadruplet_loss)
