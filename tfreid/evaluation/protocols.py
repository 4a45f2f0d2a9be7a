"""Evaluation protocols built on `evaluate`: CUHK03 single-shot, random splits, multi-query, fusion.

- `single_shot_cmc`: classic CUHK03 / VIPeR-style single-gallery-shot CMC. For each seed, one
  gallery image per identity is drawn at random, the queries are evaluated against that reduced
  gallery, and the CMC curves are averaged over the draws (Li et al., CVPR 2014).
- `random_splits` + `average_results`: VIPeR (10 x 316/316) and CUHK01 (485/486) report the mean
  over random identity splits.
- `multi_query`: the siamese LSTM paper (Varior et al., ECCV 2016) averages the scores of all
  query images of an identity (in one camera): one query row per (pid, camera).
- `fuse_scores`: the same paper, Sec. 3.2 "Testing": each feature channel's distances for a query
  are rescaled to [0, 1] (min-max over the gallery), then averaged.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from tfreid.data.records import JUNK_PID
from tfreid.evaluation.distance import to_numpy
from tfreid.evaluation.metrics import EvalResult, evaluate, validate_inputs


@dataclasses.dataclass
class SingleShotResult:
    """Single-gallery-shot CMC averaged over draws.

    Attributes:
      cmc: [max_rank] mean CMC over the draws.
      cmc_per_draw: [num_draws, max_rank].
      mAP: mean over draws of the mAP (with one positive per query, AP = 1 / rank).
      seeds: the seed of each draw.
      results: the EvalResult of each draw.
    """

    cmc: np.ndarray
    cmc_per_draw: np.ndarray
    mAP: float
    seeds: tuple[int, ...]
    results: tuple[EvalResult, ...]

    def rank(self, k: int) -> float:
        return float(self.cmc[k - 1])

    def as_dict(self) -> dict:
        return {"cmc": self.cmc.tolist(), "cmc_per_draw": self.cmc_per_draw.tolist(),
                "mAP": float(self.mAP), "seeds": list(self.seeds)}

    def __str__(self) -> str:
        ranks = " ".join(f"R{k} {100 * self.rank(k):5.1f}%" for k in (1, 5, 10, 20)
                         if k <= len(self.cmc))
        return f"single-shot {ranks} (mean of {len(self.seeds)} draws)"


def single_shot_cmc(distmat, q_pids, g_pids, q_camids, g_camids, seeds: Sequence[int] = range(10),
                    max_rank: int = 50, remove_same_camera: bool = True) -> SingleShotResult:
    """CMC with one randomly drawn gallery image per identity, averaged over seeded draws.

    Every gallery pid except -1 (junk) counts as an identity, pid 0 included. The draw of
    seed s uses ``np.random.default_rng(s)``: for the gallery sorted by (pid, index), one
    uniformly random image per pid.

    Args:
      distmat: [q, g] distances; q_pids/q_camids [q]; g_pids/g_camids [g].
      seeds: one draw per seed (the project protocol: 0..9).
      max_rank: CMC length.
      remove_same_camera: as in `evaluate`.

    Returns:
      SingleShotResult.
    """
    distmat, q_pids, g_pids, q_camids, g_camids = validate_inputs(
        distmat, q_pids, g_pids, q_camids, g_camids, max_rank)
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("seeds is empty: need at least one draw")
    cand = np.flatnonzero(g_pids != JUNK_PID)
    if cand.size == 0:
        raise ValueError("the gallery has no image with a pid other than -1 to draw from")
    cand = cand[np.argsort(g_pids[cand], kind="stable")]
    pids, start, count = np.unique(g_pids[cand], return_index=True, return_counts=True)
    results = []
    for seed in seeds:
        pick = cand[start + np.floor(np.random.default_rng(seed).random(pids.size) * count)
                    .astype(np.int64)]
        pick.sort()
        results.append(evaluate(distmat[:, pick], q_pids, g_pids[pick], q_camids, g_camids[pick],
                                max_rank=max_rank, ap="mean_precision",
                                remove_same_camera=remove_same_camera))
    per_draw = np.stack([r.cmc for r in results])
    return SingleShotResult(per_draw.mean(axis=0), per_draw, float(np.mean([r.mAP for r in results])),
                            seeds, tuple(results))


def random_splits(pids, num_splits: int = 10, num_test: int | None = None,
                  seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random identity splits (VIPeR: 10 x 316/316; CUHK01: 485 train / 486 test).

    Args:
      pids: identities (any order, duplicates ignored).
      num_splits: number of splits.
      num_test: test identities per split (default: half, rounded up).
      seed: seed of ``np.random.default_rng`` for all splits.

    Returns:
      [(train_pids sorted, test_pids sorted)] * num_splits.
    """
    ids = np.unique(to_numpy(pids, "pids"))
    if num_test is None:
        num_test = (ids.size + 1) // 2
    if num_splits < 1 or not 0 < num_test <= ids.size:
        raise ValueError(f"need num_splits >= 1 and 0 < num_test <= {ids.size} identities, got "
                         f"num_splits={num_splits}, num_test={num_test}")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(num_splits):
        perm = rng.permutation(ids)
        out.append((np.sort(perm[num_test:]), np.sort(perm[:num_test])))
    return out


def average_results(results: Sequence[EvalResult]) -> EvalResult:
    """Mean CMC / mAP / mINP over splits; query counts are summed over the splits.

    Raises:
      ValueError: empty input, different CMC lengths or different AP conventions.
    """
    results = list(results)
    if not results:
        raise ValueError("average_results needs at least one EvalResult")
    lengths = {len(r.cmc) for r in results}
    conventions = {r.ap_convention for r in results}
    if len(lengths) > 1 or len(conventions) > 1:
        raise ValueError(f"cannot average results with CMC lengths {sorted(lengths)} and AP "
                         f"conventions {sorted(conventions)}")
    return EvalResult(np.mean([r.cmc for r in results], axis=0),
                      float(np.mean([r.mAP for r in results])),
                      float(np.mean([r.mINP for r in results])),
                      sum(r.num_valid_queries for r in results),
                      sum(r.num_skipped_queries for r in results),
                      conventions.pop())


def multi_query(distmat, q_pids, q_camids, reduce: str = "mean"):
    """Merges the query images of each (pid, camera) into one query by averaging their rows.

    Args:
      distmat: [q, g] distances.
      q_pids, q_camids: [q] ids of the queries.
      reduce: "mean" (the siamese LSTM paper) or "min" (best single image).

    Returns:
      (distmat [u, g] float64 for float64 input else float32, pids [u], camids [u]), one row
      per distinct (pid, camera), sorted by (pid, camera).
    """
    if reduce not in ("mean", "min"):
        raise ValueError(f"unknown reduce={reduce!r}; expected 'mean' or 'min'")
    distmat = to_numpy(distmat, "distmat")
    if distmat.ndim != 2 or distmat.shape[0] == 0:
        raise ValueError(f"distmat must be non-empty 2-D [q, g], got shape {distmat.shape}")
    q_pids = to_numpy(q_pids, "q_pids").astype(np.int64)
    q_camids = to_numpy(q_camids, "q_camids").astype(np.int64)
    if q_pids.shape != (distmat.shape[0],) or q_camids.shape != (distmat.shape[0],):
        raise ValueError(f"q_pids {q_pids.shape} and q_camids {q_camids.shape} must have length "
                         f"{distmat.shape[0]} (rows of distmat)")
    order = np.lexsort((q_camids, q_pids))
    p, c = q_pids[order], q_camids[order]
    starts = np.flatnonzero(np.r_[True, (p[1:] != p[:-1]) | (c[1:] != c[:-1])])
    dtype = np.float64 if distmat.dtype == np.float64 else np.float32
    rows = distmat[order].astype(dtype, copy=False)
    if reduce == "mean":
        merged = np.add.reduceat(rows, starts, axis=0) / np.diff(np.r_[starts, rows.shape[0]])[:, None]
    else:
        merged = np.minimum.reduceat(rows, starts, axis=0)
    return merged.astype(dtype, copy=False), p[starts], c[starts]


def fuse_scores(distmats: Sequence, weights: Sequence[float] | None = None) -> np.ndarray:
    """Score-level fusion: per query row, min-max rescale each channel to [0, 1], then average.

    A row whose distances are all equal becomes all zeros (it carries no ranking information).

    Args:
      distmats: sequence of [q, g] distance matrices (one per feature channel).
      weights: optional non-negative weight per channel (normalised to sum 1); default equal.

    Returns:
      [q, g] float32 fused distances in [0, 1].
    """
    mats = [to_numpy(d, f"distmats[{i}]") for i, d in enumerate(distmats)]
    if not mats:
        raise ValueError("fuse_scores needs at least one distance matrix")
    shapes = {m.shape for m in mats}
    if len(shapes) > 1 or mats[0].ndim != 2:
        raise ValueError(f"all distance matrices must be 2-D with one shape, got {sorted(shapes)}")
    w = np.ones(len(mats)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(mats),) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be {len(mats)} non-negative numbers with a positive sum, "
                         f"got {weights}")
    w = w / w.sum()
    out = np.zeros(mats[0].shape, dtype=np.float32)
    for i, (m, wi) in enumerate(zip(mats, w)):
        m = m.astype(np.float32)
        if np.isnan(m).any():
            raise ValueError(f"distmats[{i}] contains NaN")
        lo, hi = m.min(axis=1, keepdims=True), m.max(axis=1, keepdims=True)
        span = hi - lo
        out += wi * np.divide(m - lo, span, out=np.zeros_like(m), where=span > 0)
    return out


def mean_std_over_splits(per_split: Sequence[dict]) -> dict:
    """Mean and spread of nested metric dicts, one per split (e.g. each split's metrics.json).

    Args:
      per_split: dicts of the same nesting whose leaves are numbers (other leaves are ignored).

    Returns:
      The same nesting with each numeric leaf present in every split replaced by
      {"mean", "std" (population, ddof=0), "values" [one per split]}.

    Raises:
      ValueError: no splits.
    """
    per_split = list(per_split)
    if not per_split:
        raise ValueError("mean_std_over_splits needs at least one split")

    def merge(nodes):
        if all(isinstance(n, dict) for n in nodes):
            keys = [k for k in nodes[0] if all(k in n for n in nodes[1:])]
            out = {k: merge([n[k] for n in nodes]) for k in keys}
            return {k: v for k, v in out.items() if v is not None}
        if all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in nodes):
            values = np.asarray(nodes, np.float64)
            return {"mean": float(values.mean()), "std": float(values.std()),
                    "values": [float(v) for v in values]}
        return None

    return merge(per_split)
