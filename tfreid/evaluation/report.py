"""The test report every trainer writes: all-gallery CMC/mAP, single-shot CMC, multi-query."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tfreid.evaluation import evaluate
from tfreid.evaluation.protocols import multi_query, single_shot_cmc

REPORT_RANKS = (1, 5, 10, 20)


def test_report(distmat: np.ndarray, q_pids, g_pids, q_camids, g_camids, *,
                single_shot_seeds: Sequence[int] = range(10), ap: str = "market") -> dict:
    """Evaluates one test distance matrix under the project's protocols.

    Args:
      distmat: [q, g] distances (smaller = more similar).
      q_pids, q_camids: [q]; g_pids, g_camids: [g].
      single_shot_seeds: one single-gallery-shot draw per seed (CUHK03 protocol: 0..9).
      ap: AP convention of the all-gallery evaluation ("market" or "mean_precision").

    Returns:
      JSON-friendly dict with "all_gallery" (EvalResult.as_dict), "single_shot" (mean CMC over
      the draws, with rank1/5/10/20 and per-draw CMC) and "multi_query" (query images of one
      identity and camera averaged into one query).
    """
    max_rank = min(50, distmat.shape[1])
    all_gallery = evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=max_rank, ap=ap)
    shot = single_shot_cmc(distmat, q_pids, g_pids, q_camids, g_camids, seeds=single_shot_seeds,
                           max_rank=min(max_rank, len(np.unique(g_pids))))
    merged, mq_pids, mq_camids = multi_query(distmat, q_pids, q_camids)
    multi = evaluate(merged, mq_pids, g_pids, mq_camids, g_camids, max_rank=max_rank, ap=ap)
    return {
        "all_gallery": all_gallery.as_dict(),
        "single_shot": {**shot.as_dict(),
                        **{f"rank{k}": shot.rank(k) for k in REPORT_RANKS if k <= len(shot.cmc)}},
        "multi_query": multi.as_dict(),
    }


def format_report(report: dict) -> str:
    """Human-readable lines of a test_report (percentages)."""
    lines = []
    for key, title in (("all_gallery", "all-gallery"), ("single_shot", "single-shot (10 draws)"),
                       ("multi_query", "multi-query")):
        part = report[key]
        ranks = "  ".join(f"R{k} {100 * part[f'rank{k}']:5.1f}" for k in REPORT_RANKS
                          if f"rank{k}" in part)
        lines.append(f"{title:24s} {ranks}  mAP {100 * part['mAP']:5.1f}")
    return "\n".join(lines)
