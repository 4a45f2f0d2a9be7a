"""CMC / mAP / mINP from ranked neighbour lists (top-k of each query), without a distance matrix.

A gallery search engine (`tfreid.search.GalleryIndex`) returns, per query, the indices of its k
nearest gallery items, nearest first. `evaluate_ranked` scores such lists with the protocol of
`tfreid.evaluation.metrics.evaluate` (junk: pid -1, and with `remove_same_camera` the query's pid
seen by the query's camera; ranks are 1-based positions after junk removal; same AP
conventions), using memory O(queries x k) instead of O(queries x gallery).

Truncation. The number of positives n of a query is counted over the WHOLE gallery (from its
pids and cameras), so a positive beyond the k-th neighbour counts as not retrieved:

  * CMC at rank r is exact while r <= k minus the junk items within the top k;
  * AP sums the precisions of the retrieved positives over n (a lower bound of the full AP);
  * INP = n / (rank of the last positive) when the last positive is within the top k, else 0.

When k covers the gallery (and the lists are ordered by (distance, gallery index), as
`GalleryIndex.search` returns them) the result equals `evaluate` on the dense matrix.
Pure numpy; no TensorFlow.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from tfreid.data.records import JUNK_PID
from tfreid.evaluation.metrics import AP_CONVENTIONS, EvalResult


def _as_ids(x, name: str, n: int | None = None) -> np.ndarray:
    x = np.asarray(x).reshape(-1)
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"{name} must be integer ids, got dtype {x.dtype}")
    if n is not None and x.size != n:
        raise ValueError(f"{name} has {x.size} entries, expected {n}")
    return x.astype(np.int64)


def positives_per_query(q_pids, q_camids, g_pids, g_camids,
                        remove_same_camera: bool = True) -> np.ndarray:
    """Number of gallery positives of each query (same pid, not junk), int64 [num_query]."""
    q_pids, q_camids = _as_ids(q_pids, "q_pids"), _as_ids(q_camids, "q_camids", len(q_pids))
    g_pids, g_camids = _as_ids(g_pids, "g_pids"), _as_ids(g_camids, "g_camids", len(g_pids))
    out = np.zeros(len(q_pids), np.int64)
    if not len(g_pids):
        return out
    pids, counts = np.unique(g_pids, return_counts=True)
    at = np.clip(np.searchsorted(pids, q_pids), 0, len(pids) - 1)
    out = np.where((pids[at] == q_pids) & (q_pids != JUNK_PID), counts[at], 0).astype(np.int64)
    if remove_same_camera:
        pairs, pair_counts = np.unique(np.stack([g_pids, g_camids], 1), axis=0, return_counts=True)
        keys = pairs[:, 0] * (1 << 32) + pairs[:, 1]
        q_keys = q_pids * (1 << 32) + q_camids
        at = np.clip(np.searchsorted(keys, q_keys), 0, len(keys) - 1)
        out -= np.where((keys[at] == q_keys) & (q_pids != JUNK_PID), pair_counts[at], 0)
    return out


def evaluate_ranked(ranked, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50,
                    ap: str = "market", remove_same_camera: bool = True,
                    num_positives: np.ndarray | None = None) -> EvalResult:
    """CMC, mAP and mINP of ranked neighbour lists (see the module docstring for truncation).

    Args:
      ranked: int [num_query, k] gallery indices, nearest first; -1 = no neighbour (ignored).
      q_pids, q_camids: [num_query] int ids of the queries.
      g_pids, g_camids: [num_gallery] int ids of the whole gallery (pid -1 = junk).
      max_rank: length of the CMC curve.
      ap: "market" or "mean_precision" (see `tfreid.evaluation.metrics`).
      remove_same_camera: the Market-1501 junk rule.
      num_positives: optional precomputed `positives_per_query` (int [num_query]).

    Returns:
      EvalResult (queries without any positive in the gallery are skipped, as in `evaluate`).

    Raises:
      ValueError: shapes that disagree, indices outside the gallery, max_rank < 1, unknown ap.
    """
    ranked = np.asarray(ranked)
    if ranked.ndim != 2 or not np.issubdtype(ranked.dtype, np.integer):
        raise ValueError(f"ranked must be int [num_query, k], got {ranked.dtype} {ranked.shape}")
    if ap not in AP_CONVENTIONS:
        raise ValueError(f"unknown ap convention {ap!r}; expected one of {AP_CONVENTIONS}")
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    num_q = ranked.shape[0]
    q_pids, q_camids = _as_ids(q_pids, "q_pids", num_q), _as_ids(q_camids, "q_camids", num_q)
    g_pids = _as_ids(g_pids, "g_pids")
    g_camids = _as_ids(g_camids, "g_camids", len(g_pids))
    if ranked.size and (ranked.max() >= len(g_pids) or ranked.min() < -1):
        raise ValueError(f"ranked holds indices outside the gallery of {len(g_pids)} items "
                         f"(range {ranked.min()}..{ranked.max()})")
    if num_positives is None:
        num_positives = positives_per_query(q_pids, q_camids, g_pids, g_camids, remove_same_camera)

    idx = np.maximum(ranked, 0)
    gp, gc = g_pids[idx], g_camids[idx]
    junk = (ranked < 0) | (gp == JUNK_PID)
    same = gp == q_pids[:, None]
    if remove_same_camera:
        junk |= same & (gc == q_camids[:, None])
    pos = same & ~junk
    rank = np.cumsum(~junk, axis=1) - 1            # 0-based rank after junk removal
    hit = np.cumsum(pos, axis=1)                   # hits so far (the hit number at a positive)
    precision = np.divide(hit, rank + 1.0, out=np.zeros(hit.shape), where=pos)
    if ap == "market":
        before = np.divide(hit - 1.0, rank, out=np.ones_like(precision), where=pos & (rank > 0))
        precision = (before + precision) / 2.0
    ap_sum = np.where(pos, precision, 0.0).sum(axis=1)
    found = hit[:, -1] if ranked.shape[1] else np.zeros(num_q, np.int64)
    big = np.iinfo(np.int64).max
    first = np.where(pos, rank, big).min(axis=1) if ranked.shape[1] else np.full(num_q, big)
    last = np.where(pos, rank, -1).max(axis=1) if ranked.shape[1] else np.full(num_q, -1)

    valid = num_positives > 0
    n_valid = int(valid.sum())
    if n_valid == 0:
        warnings.warn("no query has a positive in the gallery; CMC/mAP/mINP are undefined")
        return EvalResult(np.full(max_rank, np.nan), math.nan, math.nan, 0, num_q, ap)
    hist = np.bincount(np.minimum(first[valid], max_rank), minlength=max_rank + 1)[:max_rank]
    cmc = np.cumsum(hist) / n_valid
    mean_ap = float(np.mean(ap_sum[valid] / num_positives[valid]))
    complete = valid & (found == num_positives)
    inp = np.divide(num_positives, last + 1.0, out=np.zeros(num_q), where=complete)
    return EvalResult(cmc.astype(np.float64), mean_ap, float(np.mean(inp[valid])), n_valid,
                      num_q - n_valid, ap)
