"""Rank-Triplet loss (Chen, Duffner, Stoian, Dufour & Baskurt 2021, Algorithm 1 and Eq. 9).

Every image i of a batch is a query against the other B - 1 images. With D_ij the squared
Euclidean distance and m the margin:

1. shift the distances of i's positives (same identity) by +m and rank all j != i by them;
2. AP of that ranking by the paper's Eq. 6,
       AP = 1/M sum_{t=1..M} t / pi_t - 1 / (2 pi_M) + 1 / (2 M),
   pi_t the 1-based rank of the t-th positive, M the number of positives; R1 = [rank 1 is positive];
3. for each positive j and each negative k ranked before it (a mis-ranked pair) the weight
   w_jk = dAP_jk + dR1_jk is the gain in AP + R1 if j and k swapped places (a constant);
4. E = 1/Q sum_i 1/K_i sum_(j,k) [D_ij - D_ik + m] w_jk, K_i the number of mis-ranked pairs of
   query i (a query with K_i = 0 contributes 0) and Q the number of queries that have at least
   one positive in the batch (the queries a retrieval evaluation would count). Because k is
   ranked before j, D_ik <= D_ij + m, so the bracket is never negative.

The paper's "baseline" is the same sum with w_jk = 1 (`weighted=False`).

Closed-form swap gains. Let positive j be the t-th positive at rank p and the negative k sit at
rank q < p with c positives ranked before q. After the swap j is the (c+1)-th positive at rank q,
the positives between q and p keep their ranks but their index t grows by one, nobody else moves:
    d(sum t/pi) = (c + 1)/q - P(q) + P(p) - (1 + t)/p,    P(r) = sum_{positives s, pi_s <= r} 1/pi_s
and, only if j was the last positive, the last rank becomes max(q, pi_{M-1}) (pi_0 = 0):
    d(-1/(2 pi_M)) = 1/(2 pi_M) - 1/(2 max(q, pi_{M-1})).
dR1_jk = 1 if q == 1 (the positive moves to the top) else 0. The loss only needs, per rank, the
row/column sums of w (prefix sums), so it costs O(B^2) after the sort; the full [B, B, B] gain
matrix is exposed for tests (`swap_gain_matrix`).

Exact ties of the shifted distances are broken by batch index (one stable sort). A tied
(positive, negative) pair has a zero bracket, so the policy only changes K_i and the weights of
other pairs; with float distances such ties need D_ij + m == D_ik exactly.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfreid.losses import distances as _dist
from tfreid.losses.wrapper import LossFunctionWrapper


def rank_batch(labels: tf.Tensor, d: tf.Tensor, margin: float):
    """Ranks every query's gallery (the rest of the batch) by margin-shifted distances.

    Args:
      labels: [B] identity labels.
      d: [B, B] distances.
      margin: added to the distances of positives before ranking.

    Returns:
      order [B, B] int32: order[i, r] is the batch index at rank r + 1 of query i (i itself last),
      pos_r, neg_r [B, B] float: 1 where the item at that rank is a positive / negative of i.
    """
    same = tf.equal(labels[:, None], labels[None, :])
    eye = _dist.eye_mask(labels)
    shifted = tf.where(eye, tf.constant(float("inf"), d.dtype), d + margin * tf.cast(same, d.dtype))
    order = tf.argsort(tf.stop_gradient(shifted), axis=1, stable=True)  # ties: lower index first
    kind = tf.gather(tf.cast(same, tf.int32) + tf.cast(eye, tf.int32), order, batch_dims=1)
    return order, tf.cast(tf.equal(kind, 1), d.dtype), tf.cast(tf.equal(kind, 0), d.dtype)


def _ranks(x: tf.Tensor) -> tf.Tensor:
    """[1, N] float ranks 1..N of x [Q, N]; a constant when N is static."""
    if x.shape[1] is not None:
        return tf.constant(np.arange(1, x.shape[1] + 1)[None, :], x.dtype)
    return tf.cast(tf.range(1, tf.shape(x)[1] + 1), x.dtype)[None, :]


def _top_rank(x: tf.Tensor) -> tf.Tensor:
    """[1, N] indicator of rank 1 for x [Q, N]."""
    return tf.cast(tf.equal(_ranks(x), 1.0), x.dtype)


def _rank_terms(pos_r):
    """Per-rank quantities of the closed form, for rank-ordered positive indicators [Q, N].

    Returns a dict of [Q, N] or [Q, 1] tensors: inv_rank 1/r, cum_pos (t of a positive, c of a
    negative), num_pos M, inv_m 1/M (0 if M = 0), pi_last pi_M, is_last, g (the per-rank term:
    a negative at q contributes +g_q and a positive at p contributes -g_p to d(sum t/pi)), and
    last_gain (the change of -1/(2 pi_M) if the last positive moves to rank q).
    """
    ranks = _ranks(pos_r)
    dtype = pos_r.dtype
    inv_rank = 1.0 / ranks
    cum_pos = tf.cumsum(pos_r, axis=1)
    num_pos = cum_pos[:, -1:]
    pos_ranks = pos_r * ranks
    pi_last = tf.reduce_max(pos_ranks, axis=1, keepdims=True)  # 0 if M = 0
    not_last = tf.cast(cum_pos < num_pos, dtype)
    pi_prev = tf.reduce_max(pos_ranks * not_last, axis=1, keepdims=True)  # 0 if M < 2
    inv_pi_last = tf.math.divide_no_nan(tf.ones_like(pi_last), pi_last)
    return dict(
        inv_rank=inv_rank, cum_pos=cum_pos, num_pos=num_pos,
        inv_m=tf.math.divide_no_nan(tf.ones_like(num_pos), num_pos),
        pi_last=pi_last, inv_pi_last=inv_pi_last, is_last=pos_r * (1.0 - not_last),
        # (c + 1)/q - P(q) for a negative; -(P(p) - (1 + t)/p) for a positive: the same formula.
        g=(cum_pos + 1.0) * inv_rank - tf.cumsum(pos_r * inv_rank, axis=1),
        last_gain=0.5 * inv_pi_last - 0.5 / tf.maximum(ranks, pi_prev))


def average_precision_eq6(pos_r: tf.Tensor) -> tf.Tensor:
    """AP of ranked lists by the paper's Eq. 6.

    Args:
      pos_r: [Q, N] 0/1 float, 1 where rank r + 1 holds a positive.

    Returns:
      [Q] AP; 0 for a list without positives.
    """
    q = _rank_terms(pos_r)
    ap = (q["inv_m"] * tf.reduce_sum(pos_r * q["cum_pos"] * q["inv_rank"], axis=1, keepdims=True)
          - 0.5 * q["inv_pi_last"] + 0.5 * q["inv_m"])
    return ap[:, 0]


def swap_gain_matrix(pos_r: tf.Tensor, neg_r: tf.Tensor) -> tf.Tensor:
    """Closed-form dAP + dR1 of swapping the item at rank p (positive) with rank q < p (negative).

    Args:
      pos_r, neg_r: [Q, N] 0/1 float rank-ordered positive / negative indicators (an item that is
        neither, such as the query itself, is ignored).

    Returns:
      [Q, N, N] gains w[i, p, q], zero unless p holds a positive and q < p a negative.
    """
    q = _rank_terms(pos_r)
    n = tf.shape(pos_r)[1]
    d_ap = (q["g"][:, None, :] - q["g"][:, :, None]) * q["inv_m"][:, :, None]
    d_ap += q["is_last"][:, :, None] * q["last_gain"][:, None, :]
    d_r1 = _top_rank(pos_r)[:, None, :]
    before = tf.linalg.band_part(tf.ones([n, n], pos_r.dtype), -1, 0) - tf.eye(n, dtype=pos_r.dtype)
    mask = pos_r[:, :, None] * neg_r[:, None, :] * before[None]  # q < p
    return (d_ap + d_r1) * mask


def _pair_coefficients(pos_r, neg_r, weighted: bool):
    """Per-rank coefficients of sum_(j,k) [D_j - D_k + m] w_jk in O(N) per query.

    With a_p = sum_q w[p, q] (row sums over earlier negatives) and b_q = sum_p w[p, q] (column
    sums over later positives) the sum is sum_r D_r (a_r - b_r) + m sum_p a_p.

    Returns:
      (coef [Q, N] = a - b, total [Q] = sum_p a_p, K [Q] number of mis-ranked pairs).
    """
    neg_before = tf.cumsum(neg_r, axis=1, exclusive=True)  # n_p
    k = tf.reduce_sum(pos_r * neg_before, axis=1)
    if not weighted:
        pos_after = tf.reduce_sum(pos_r, axis=1, keepdims=True) - tf.cumsum(pos_r, axis=1)
        return pos_r * neg_before - neg_r * pos_after, k, k
    q = _rank_terms(pos_r)
    g, pos_after = q["g"], q["num_pos"] - q["cum_pos"]  # m_q for a negative at q
    top_is_neg = neg_r[:, :1]
    g_neg_before = tf.cumsum(neg_r * g, axis=1, exclusive=True)
    g_pos_after = tf.cumsum(pos_r * g, axis=1, exclusive=True, reverse=True)
    last_before = tf.cumsum(neg_r * q["last_gain"], axis=1, exclusive=True)
    a = pos_r * ((g_neg_before - neg_before * g) * q["inv_m"] + q["is_last"] * last_before + top_is_neg)
    top = _top_rank(pos_r)
    b = neg_r * ((pos_after * g - g_pos_after) * q["inv_m"]
                 + tf.minimum(pos_after, 1.0) * q["last_gain"] + top * pos_after)
    return a - b, tf.reduce_sum(a, axis=1), k


def rank_triplet_loss(labels, embeddings, margin: float = 1.0, weighted: bool = True,
                      squared: bool = True) -> tf.Tensor:
    """Rank-Triplet loss (weighted=True) or its unweighted baseline (weighted=False).

    See the module docstring for the definition. Gradients flow through the distances only; the
    ranking and the swap gains are constants.

    Args:
      labels: [B] identity labels.
      embeddings: [B, d] float embeddings.
      margin: m, added to positives' distances before ranking and inside the bracket. Default 1,
        the margin of the other squared-distance losses here (triplet, quadruplet m1, batch-hard).
      weighted: use dAP + dR1 weights (Rank-Triplet) or weight 1 (the paper's baseline).
      squared: squared (default, as in the paper) or plain Euclidean distance.

    Returns:
      Scalar loss; 0 for batches without positives or without negatives.
    """
    labels, embeddings = _dist.prepare(labels, embeddings, "rank_triplet_loss")
    d = _dist.batch_distances(embeddings, squared=squared)
    order, pos_r, neg_r = rank_batch(labels, d, margin)
    coef, total, k = tf.nest.map_structure(tf.stop_gradient, _pair_coefficients(pos_r, neg_r, weighted))
    d_r = tf.gather(d, order, batch_dims=1)  # distances in rank order; the gradient flows back
    numer = tf.reduce_sum(d_r * coef, axis=1) + margin * total
    num_queries = tf.reduce_sum(tf.reduce_max(pos_r, axis=1))  # queries with a positive
    return tf.math.divide_no_nan(tf.reduce_sum(tf.math.divide_no_nan(numer, k)), num_queries)


def batch_ranking_stats(labels, embeddings, margin: float = 0.0, squared: bool = True) -> dict:
    """The paper's online training index (Fig. 5) of one batch: every image queries the rest.

    Args:
      labels: [B] identity labels.
      embeddings: [B, d] float embeddings.
      margin: added to positives' distances before ranking; 0 (default) gives the plain
        retrieval ranking, the loss's margin gives the ranking the loss sees.
      squared: squared or plain Euclidean distance (same ranking at margin 0).

    Returns:
      dict of scalar tensors: "mAP" (mean Eq. 6 AP) and "R1" over queries with a positive,
      "misranked_pairs" (total number of (positive, earlier negative) pairs over all queries),
      "num_queries" (queries with a positive).
    """
    labels, embeddings = _dist.prepare(labels, embeddings, "batch_ranking_stats")
    d = tf.stop_gradient(_dist.batch_distances(embeddings, squared=squared))
    _, pos_r, neg_r = rank_batch(labels, d, margin)
    valid = tf.cast(tf.reduce_any(pos_r > 0, axis=1), d.dtype)
    n = tf.reduce_sum(valid)
    misranked = tf.reduce_sum(pos_r * tf.cumsum(neg_r, axis=1, exclusive=True))
    return {
        "mAP": tf.math.divide_no_nan(tf.reduce_sum(average_precision_eq6(pos_r) * valid), n),
        "R1": tf.math.divide_no_nan(tf.reduce_sum(pos_r[:, 0] * valid), n),
        "misranked_pairs": misranked,
        "num_queries": n,
    }


@keras.saving.register_keras_serializable(package="tfreid")
class RankTripletLoss(LossFunctionWrapper):
    """Keras wrapper of `rank_triplet_loss` (y_true = labels [B], y_pred = embeddings [B, d])."""

    fn = staticmethod(rank_triplet_loss)


@keras.saving.register_keras_serializable(package="tfreid")
class RankTripletBaselineLoss(RankTripletLoss):
    """The paper's baseline: the Rank-Triplet mis-ranked triplets, each with weight 1."""

    default_name = "rank_triplet_baseline_loss"
    option_defaults = {"weighted": False}
