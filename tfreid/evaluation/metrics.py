"""CMC, mAP and mINP from a query x gallery distance matrix (Market-1501 protocol).

Protocol, per query:
  * gallery images with pid -1 are junk: removed from the ranking;
  * with `remove_same_camera`, gallery images with the query's pid AND camera are junk too;
  * everything else stays, distractors (pid 0) included; a positive is a remaining gallery
    image with the query's pid (pid 0 is not special-cased otherwise: Market-1501 has no
    pid-0 query, and datasets whose ids start at 0 keep working);
  * a query without any positive is skipped (counted in `num_skipped_queries`).

Ranking and ties: gallery images are ordered by ascending distance and, at equal distance, by
ascending gallery index, exactly like a stable argsort (torchreid's `np.argsort` on random
floats behaves the same in practice). Ranks below are 1-based positions after junk removal.

AP conventions, for a query whose n positives sit at ranks r_1 < ... < r_n
(precision at hit i: p_i = i / r_i):

  * ``"mean_precision"`` (torchreid, fast-reid): AP = (1/n) sum_i p_i.
  * ``"market"`` (the official Market-1501 `compute_AP.m`, trapezoid rule):
    AP = (1/n) sum_i (q_i + p_i) / 2, where q_i = (i - 1) / (r_i - 1) is the precision at the
    position just before the hit (q_i = 1 when r_i = 1).

Worked example: 2 positives at ranks 1 and 3 (ranking: hit, miss, hit).
  * mean_precision: (1/1 + 2/3) / 2 = 0.8333...
  * market: hit 1: q = 1, p = 1 -> 1; hit 2: q = 1/2, p = 2/3 -> 7/12;
    AP = (1 + 7/12) / 2 = 0.7917...
  * CMC: hit at rank 1, so cmc = [1, 1, 1, ...]; INP = n / r_n = 2/3 (Ye et al., TPAMI 2021).

Speed: queries are processed in blocks; per block the pid -1 columns are dropped, the
same-camera junk entries are set to +inf, each row is sorted once (values only: a vectorised SIMD sort, much cheaper than argsort), and the rank of
every positive is found by a vectorised binary search in its sorted row. Positive/junk pairs
come from a pid index of the gallery, so no [queries, gallery] boolean masks are built.
Rows where a positive ties in distance with another valid image get an exact count of the
tied images with a smaller gallery index. float32 distances are fastest.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import os
import warnings

import numpy as np

from tfreid.data.records import JUNK_PID
from tfreid.evaluation.distance import to_numpy

AP_CONVENTIONS = ("market", "mean_precision")
_BLOCK_ELEMENTS = 1 << 22  # distance entries per query block (16 MB of float32)
_REPORT_RANKS = (1, 5, 10, 20)


@dataclasses.dataclass
class EvalResult:
    """Evaluation of one distance matrix.

    Attributes:
      cmc: [max_rank] float64, fraction of valid queries with a positive within rank k+1.
      mAP: mean average precision over valid queries (convention `ap_convention`).
      mINP: mean inverse negative penalty over valid queries.
      num_valid_queries: queries with at least one positive.
      num_skipped_queries: queries without any positive (not in the averages).
      ap_convention: "market" or "mean_precision".
    """

    cmc: np.ndarray
    mAP: float
    mINP: float
    num_valid_queries: int
    num_skipped_queries: int
    ap_convention: str

    def rank(self, k: int) -> float:
        """CMC at 1-based rank k."""
        return float(self.cmc[k - 1])

    def as_dict(self) -> dict:
        """JSON-friendly dict (floats/lists/ints; NaN becomes None)."""
        def clean(x):
            return None if isinstance(x, float) and math.isnan(x) else x
        return {
            "cmc": [clean(float(v)) for v in self.cmc],
            **{f"rank{k}": clean(self.rank(k)) for k in _REPORT_RANKS if k <= len(self.cmc)},
            "mAP": clean(float(self.mAP)),
            "mINP": clean(float(self.mINP)),
            "num_valid_queries": int(self.num_valid_queries),
            "num_skipped_queries": int(self.num_skipped_queries),
            "ap_convention": self.ap_convention,
        }

    def __str__(self) -> str:
        ranks = " ".join(f"R{k} {100 * self.rank(k):5.1f}%" for k in _REPORT_RANKS
                         if k <= len(self.cmc))
        return (f"{ranks} mAP {100 * self.mAP:5.1f}% mINP {100 * self.mINP:5.1f}% "
                f"(AP: {self.ap_convention}; {self.num_valid_queries} valid, "
                f"{self.num_skipped_queries} skipped queries)")


def _ids(x, name: str, n: int | None) -> np.ndarray:
    x = to_numpy(x, name)
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {x.shape}")
    if x.size and not np.issubdtype(x.dtype, np.integer):
        if not (np.issubdtype(x.dtype, np.number) and np.all(x == np.round(x))):
            raise ValueError(f"{name} must hold integers, got dtype {x.dtype}")
    if n is not None and x.shape[0] != n:
        raise ValueError(f"{name} has length {x.shape[0]} but the distance matrix needs {n}")
    return x.astype(np.int64)


def validate_inputs(distmat, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50,
                    ap: str = "market"):
    """Checks and converts evaluation inputs; returns numpy arrays (distmat keeps float dtype).

    Raises:
      ValueError: naming the argument and the offending shape or value.
    """
    if ap not in AP_CONVENTIONS:
        raise ValueError(f"unknown AP convention ap={ap!r}; expected one of {AP_CONVENTIONS}")
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise ValueError(f"max_rank must be an integer >= 1, got {max_rank!r}")
    distmat = to_numpy(distmat, "distmat")
    if distmat.ndim != 2:
        raise ValueError(f"distmat must be 2-D [num_query, num_gallery], got shape {distmat.shape}")
    if not np.issubdtype(distmat.dtype, np.floating):
        if not np.issubdtype(distmat.dtype, np.number):
            raise ValueError(f"distmat must be numeric, got dtype {distmat.dtype}")
        distmat = distmat.astype(np.float64)
    q, g = distmat.shape
    if q == 0 or g == 0:
        raise ValueError(f"empty query or gallery set: distmat has shape {distmat.shape}")
    q_pids, q_camids = _ids(q_pids, "q_pids", q), _ids(q_camids, "q_camids", q)
    g_pids, g_camids = _ids(g_pids, "g_pids", g), _ids(g_camids, "g_camids", g)
    return distmat, q_pids, g_pids, q_camids, g_camids


def _row_searchsorted(sorted_rows: np.ndarray, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each (row, value): number of entries of sorted_rows[row] < value (binary search)."""
    n = sorted_rows.shape[1]
    lo = np.zeros(rows.shape[0], dtype=np.int64)
    hi = np.full(rows.shape[0], n, dtype=np.int64)
    for _ in range(max(1, int(n).bit_length())):
        active = lo < hi
        mid = (lo + hi) >> 1
        v = sorted_rows[rows, np.minimum(mid, n - 1)]
        go = (v < values) & active
        lo = np.where(go, mid + 1, lo)
        hi = np.where(go | ~active, hi, mid)
    return lo


def _tied_before(dist, q_idx, cols, values, q_pids, q_camids, g_pids, g_camids,
                 remove_same_camera) -> np.ndarray:
    """Number of valid gallery images j < col with distance == value, per positive."""
    g = dist.shape[1]
    out = np.empty(q_idx.shape[0], dtype=np.int64)
    step = max(1, _BLOCK_ELEMENTS // g)
    arange = np.arange(g)
    for s in range(0, q_idx.shape[0], step):
        qi, c, v = q_idx[s:s + step], cols[s:s + step], values[s:s + step]
        eq = dist[qi] == v[:, None]
        eq &= arange[None, :] < c[:, None]
        eq &= g_pids[None, :] != JUNK_PID
        if remove_same_camera:
            eq &= ~((g_pids[None, :] == q_pids[qi, None]) & (g_camids[None, :] == q_camids[qi, None]))
        out[s:s + step] = eq.sum(axis=1)
    return out


def evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50,
             ap: str = "market", remove_same_camera: bool = True,
             num_threads: int | None = None) -> EvalResult:
    """CMC, mAP and mINP of a distance matrix (the module docstring details the protocol).

    Ties: equal distances are ranked by gallery index (a stable argsort). AP conventions, on
    a query whose 2 positives are at ranks 1 and 3 (hit, miss, hit):
      * "mean_precision" = mean of hits-so-far / rank = (1/1 + 2/3) / 2 = 0.8333;
      * "market" = mean over hits of (precision before the hit + precision) / 2
        = ((1 + 1)/2 + (1/2 + 2/3)/2) / 2 = (1 + 7/12) / 2 = 0.7917.

    Args:
      distmat: [num_query, num_gallery] distances (smaller = more similar); numpy or tf.Tensor.
      q_pids, q_camids: [num_query] int person and camera ids of the queries.
      g_pids, g_camids: [num_gallery] int ids of the gallery (pid -1 = junk, 0 = distractor).
      max_rank: length of the returned CMC curve (>= 1).
      ap: "market" (official Market-1501 trapezoid rule) or "mean_precision" (torchreid).
      remove_same_camera: drop gallery images with the query's pid and camera (Market-1501);
        False for single-camera-pair protocols where every same-pid image is a match.
      num_threads: threads over query blocks (default: min(2, CPU count)); memory grows by
        one block (~16 MB of distances) per thread.

    Returns:
      EvalResult.

    Raises:
      ValueError: mismatched lengths, NaN distances, empty query/gallery, max_rank < 1,
        unknown `ap`.
    """
    distmat, q_pids, g_pids, q_camids, g_camids = validate_inputs(
        distmat, q_pids, g_pids, q_camids, g_camids, max_rank, ap)
    num_q, num_g = distmat.shape

    # Gallery indices grouped by pid: positives and same-camera junk of query i are
    # order[starts[i]:ends[i]].
    order = np.argsort(g_pids, kind="stable")
    sorted_pids = g_pids[order]
    starts = np.searchsorted(sorted_pids, q_pids, side="left")
    ends = np.where(q_pids == JUNK_PID, starts, np.searchsorted(sorted_pids, q_pids, side="right"))
    if np.isnan(distmat.min()):  # min propagates NaN: one cheap pass without a mask
        r, c = np.argwhere(np.isnan(distmat))[0]
        raise ValueError(f"distmat contains NaN (first at query {r}, gallery {c})")
    # pid -1 columns are junk for every query: drop them once per block (np.take).
    keep_cols = np.flatnonzero(g_pids != JUNK_PID)
    remap = np.full(num_g, -1, dtype=np.int64)
    remap[keep_cols] = np.arange(keep_cols.size)
    all_kept = keep_cols.size == num_g

    num_pos = np.zeros(num_q, dtype=np.int64)
    first = np.zeros(num_q, dtype=np.int64)   # 0-based rank of the first positive
    ap_sum = np.zeros(num_q, dtype=np.float64)
    last = np.zeros(num_q, dtype=np.int64)    # 0-based rank of the last positive
    step = max(1, _BLOCK_ELEMENTS // num_g)

    def run_block(s: int) -> None:  # fills disjoint slices, so blocks may run in threads
        e = min(s + step, num_q)
        block = distmat[s:e]
        lengths = ends[s:e] - starts[s:e]
        rows = np.repeat(np.arange(e - s), lengths)
        offsets = np.arange(rows.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        cols = order[offsets + np.repeat(starts[s:e], lengths)]
        if remove_same_camera:
            junk = g_camids[cols] == q_camids[s + rows]
        else:
            junk = np.zeros(rows.size, dtype=bool)
        pos_rows, pos_cols = rows[~junk], cols[~junk]
        if pos_rows.size == 0:
            return

        masked = np.array(block, copy=True) if all_kept else np.take(block, keep_cols, axis=1)
        masked[rows[junk], remap[cols[junk]]] = np.inf
        masked.sort(axis=1)
        values = block[pos_rows, pos_cols]
        rank = _row_searchsorted(masked, pos_rows, values)
        # Another valid image with exactly this distance? (junk entries are +inf, at the end.)
        n_valid = keep_cols.size - np.bincount(rows[junk], minlength=e - s)[pos_rows]
        nxt = np.minimum(rank + 1, masked.shape[1] - 1)
        tied = (rank + 1 < n_valid) & (masked[pos_rows, nxt] == values)
        if tied.any():
            rank[tied] += _tied_before(distmat, s + pos_rows[tied], pos_cols[tied], values[tied],
                                       q_pids, q_camids, g_pids, g_camids, remove_same_camera)

        # Hits of each query in ranking order: sort by (row, rank).
        srt = np.argsort(pos_rows * (num_g + 1) + rank, kind="stable")
        pos_rows, rank = pos_rows[srt], rank[srt]
        counts = np.bincount(pos_rows, minlength=e - s)
        hit = np.arange(rank.size) - np.repeat(np.cumsum(counts) - counts, counts) + 1
        precision = hit / (rank + 1.0)
        if ap == "market":
            before = np.divide(hit - 1.0, rank, out=np.ones_like(precision), where=rank > 0)
            precision = (before + precision) / 2.0
        num_pos[s:e] = counts
        ap_sum[s:e] = np.bincount(pos_rows, weights=precision, minlength=e - s)
        first[s:e][pos_rows[hit == 1]] = rank[hit == 1]
        is_last = hit == counts[pos_rows]
        last[s:e][pos_rows[is_last]] = rank[is_last]

    blocks = range(0, num_q, step)
    if num_threads is None:
        num_threads = min(2, os.cpu_count() or 1)
    if num_threads > 1 and len(blocks) > 1:  # np.sort / np.take release the GIL
        with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
            list(pool.map(run_block, blocks))
    else:
        for s in blocks:
            run_block(s)

    valid = num_pos > 0
    n_valid_q = int(valid.sum())
    if n_valid_q == 0:
        warnings.warn("no query has a positive in the gallery; CMC/mAP/mINP are undefined")
        return EvalResult(np.full(max_rank, np.nan), math.nan, math.nan, 0, num_q, ap)
    hist = np.bincount(first[valid], minlength=num_g)[:max_rank]
    cmc = np.zeros(max_rank, dtype=np.float64)
    cmc[:hist.size] = hist
    cmc = np.cumsum(cmc) / n_valid_q
    mean_ap = float(np.mean(ap_sum[valid] / num_pos[valid]))
    minp = float(np.mean(num_pos[valid] / (last[valid] + 1.0)))
    return EvalResult(cmc, mean_ap, minp, n_valid_q, num_q - n_valid_q, ap)
