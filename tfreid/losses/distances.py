"""Shared pieces of the batch losses: input checks, pairwise distances and identity masks.

All batch losses take `labels` [B] (any integer or float dtype; Keras casts `y_true` to float)
and `embeddings` [B, d]. Distances are squared Euclidean by default, which keeps gradients
finite at zero distance; the plain Euclidean distance uses a masked ("safe") square root.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def prepare(labels, embeddings, name: str = "loss"):
    """Flattens labels and checks that labels and embeddings agree.

    Args:
      labels: identity labels, shape [B] or [B, 1].
      embeddings: float tensor [B, d].
      name: name of the calling loss, used in error messages.

    Returns:
      (labels [B], embeddings [B, d]) with embeddings converted to a float tensor.

    Raises:
      ValueError: if the ranks or (statically known) batch sizes do not match.
    """
    embeddings = tf.convert_to_tensor(embeddings)
    if not embeddings.dtype.is_floating:
        embeddings = tf.cast(embeddings, tf.float32)
    labels = tf.convert_to_tensor(labels)
    if embeddings.shape.rank != 2:
        raise ValueError(
            f"{name}: embeddings (y_pred) must have shape [batch, dim], got shape {embeddings.shape}")
    if labels.shape.rank is not None and labels.shape.rank > 1:
        if labels.shape.rank != 2 or labels.shape[-1] not in (1, None):
            raise ValueError(
                f"{name}: labels (y_true) must have shape [batch] or [batch, 1], got shape {labels.shape}")
    labels = tf.reshape(labels, [-1])
    b_lab, b_emb = labels.shape[0], embeddings.shape[0]
    if b_lab is not None and b_emb is not None and b_lab != b_emb:
        raise ValueError(
            f"{name}: labels (y_true) have batch size {b_lab} but embeddings (y_pred) have {b_emb}")
    return labels, embeddings


def batch_squared_distances(embeddings: tf.Tensor) -> tf.Tensor:
    """Squared Euclidean distances between all rows of a training batch.

    Args:
      embeddings: float tensor [B, d].

    Returns:
      [B, B] tensor, D[i, j] = ||e_i - e_j||^2, >= 0, with an exact zero diagonal.
    """
    sq = tf.reduce_sum(tf.square(embeddings), axis=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * tf.matmul(embeddings, embeddings, transpose_b=True)
    d2 = tf.maximum(d2, 0.0)  # round-off can make the expansion slightly negative
    return tf.linalg.set_diag(d2, tf.zeros_like(sq))


def safe_sqrt(d2: tf.Tensor) -> tf.Tensor:
    """sqrt with a zero (not NaN/inf) gradient where d2 == 0."""
    positive = d2 > 0
    return tf.where(positive, tf.sqrt(tf.where(positive, d2, tf.ones_like(d2))), tf.zeros_like(d2))


def batch_distances(embeddings: tf.Tensor, squared: bool = True) -> tf.Tensor:
    """Squared (default) or plain Euclidean distances [B, B] within a training batch [B, d].

    Differentiable TensorFlow; the numpy distances of evaluation (query x gallery, chunked) are
    `tfreid.evaluation.distance_matrix`.
    """
    d2 = batch_squared_distances(embeddings)
    return d2 if squared else safe_sqrt(d2)


def identity_masks(labels: tf.Tensor):
    """Boolean masks of a batch.

    Args:
      labels: [B] identity labels.

    Returns:
      (positive [B, B], negative [B, B]): positive[i, j] is True when i != j share an identity,
      negative[i, j] when their identities differ.
    """
    same = tf.equal(labels[:, None], labels[None, :])
    return tf.logical_and(same, tf.logical_not(eye_mask(labels))), tf.logical_not(same)


def eye_mask(labels: tf.Tensor) -> tf.Tensor:
    """[B, B] boolean identity matrix: a constant when B is static (these losses are dominated by
    per-op overhead at re-id batch sizes), else built from a range."""
    if labels.shape[0] is not None:
        return tf.constant(np.eye(labels.shape[0], dtype=bool))
    idx = tf.range(tf.shape(labels)[0])
    return tf.equal(idx[:, None], idx[None, :])


def masked_mean(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Mean of `values` where `mask` is True; 0 (not NaN) when the mask is empty."""
    mask = tf.cast(mask, values.dtype)
    return tf.math.divide_no_nan(tf.reduce_sum(values * mask), tf.reduce_sum(mask))
