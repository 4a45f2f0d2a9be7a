"""Evaluation of a ready model (zoo entry or run folder) on a dataset's test split.

What `tools/evaluate.py` prints and what `tfreid.zoo.publish` writes into a card: the same
function, so a card's metrics are reproduced by the command stored next to them.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from tfreid.data.records import ReIDSplit, arrays
from tfreid.evaluation import distance_matrix
from tfreid.evaluation.protocols import fuse_scores
from tfreid.evaluation.rerank import k_reciprocal_features
from tfreid.serving import EmbeddingModel
from tfreid.evaluation.report import format_report, test_report

SUMMARY_KEYS = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")


def embed_test_images(model: EmbeddingModel, query_paths, gallery_paths, batch_size: int = 64,
                      progress: bool = False) -> tuple[tuple, tuple]:
    """The one path from test image files to embeddings, for every evaluation (trainers' test
    reports, tools/evaluate.py, zoo cards, pictures).

    Returns:
      ((query serving embeddings [q, dim], {branch: raw [q, k_b]}), (the same for the gallery)).
    """
    return tuple(model.embed_files(paths, batch_size, with_raw=True, progress=progress)
                 for paths in (query_paths, gallery_paths))


def evaluate_model(model: EmbeddingModel, split: ReIDSplit, *, ap: str = "market",
                   single_shot_draws: int = 10, rerank: bool = False, multi_query: bool = True,
                   batch_size: int = 64, progress: bool = False) -> dict:
    """Embeds split.query / split.gallery from their files and evaluates.

    Args:
      model: an `EmbeddingModel` (`tfreid.zoo.load`, `tfreid.zoo.from_run`).
      split: the dataset; only its test query / gallery are used.
      ap: "market" or "mean_precision" (AP convention).
      single_shot_draws: single-gallery-shot draws (seeds 0..n-1; CUHK03 protocol: 10).
      rerank: also evaluate k-reciprocal re-ranked serving embeddings (Zhong et al. 2017).
      multi_query: keep the multi-query results (query images of one identity and camera
        averaged into one query).
      batch_size: images per model call.
      progress: show a progress bar.

    Returns:
      JSON-friendly dict: "embedding" (test_report of Euclidean distances of the serving
      embeddings, what `rank` and TF Serving give), "embedding_reranked" (with rerank),
      "channels" {branch: test_report of its raw, un-normalised embedding, as the trainers
      evaluate it}, for models of several channels "fused" (per-query min-max score fusion of
      the channels, the siamese LSTM paper's protocol); "settings"; "num_query", "num_gallery";
      "flip_average" (the model's serving setting, `tfreid.serving`).
    """
    if single_shot_draws < 1:
        raise ValueError(f"single_shot_draws must be >= 1, got {single_shot_draws}")
    q_paths, q_pids, q_cams = arrays(split.query)
    g_paths, g_pids, g_cams = arrays(split.gallery)
    if len(q_paths) == 0 or len(g_paths) == 0:
        raise ValueError(f"dataset {split.name!r} has an empty test query ({len(q_paths)}) or "
                         f"gallery ({len(g_paths)})")
    (q_emb, q_raw), (g_emb, g_raw) = embed_test_images(model, q_paths, g_paths, batch_size,
                                                       progress)

    def report(dist):
        out = test_report(dist, q_pids, g_pids, q_cams, g_cams,
                          single_shot_seeds=range(single_shot_draws), ap=ap)
        if not multi_query:
            out.pop("multi_query")
        return out

    result = {"model": model.name, "dataset": split.name, "num_query": len(q_paths),
              "num_gallery": len(g_paths), "flip_average": model.pipeline.flip_average,
              "settings": {"ap": ap, "single_shot_draws": single_shot_draws, "rerank": rerank,
                           "multi_query": multi_query},
              "embedding": report(distance_matrix(q_emb, g_emb))}
    if rerank:
        result["embedding_reranked"] = report(k_reciprocal_features(q_emb, g_emb))
    # Raw (un-normalised) branch embeddings: what the trainers evaluate (metrics.json).
    dists = {name: distance_matrix(q_raw[name], g_raw[name]) for name in q_raw}
    result["channels"] = {name: report(d) for name, d in dists.items()}
    if len(dists) > 1:
        result["fused"] = report(fuse_scores(list(dists.values())))
    return result


def summarize(result: dict) -> dict:
    """The headline numbers of an `evaluate_model` result (what a card stores):
    {section: {protocol: {rank1, rank5, rank10, rank20, mAP, mINP}}}, fractions in [0, 1]."""
    def compact(rep):
        return {proto: {k: round(float(v), 6) for k, v in part.items()
                        if k in SUMMARY_KEYS and v is not None}
                for proto, part in rep.items()}

    out = {}
    for section in ("embedding", "embedding_reranked", "fused"):
        if section in result:
            out[section] = compact(result[section])
    for name, rep in result.get("channels", {}).items():
        out[f"channel_{name}"] = compact(rep)
    return out


CARD_COMPARISON = ("each metric within one query of the card: |measured - card| <= 1 / (queries "
                   "of its protocol), since float results differ by CPU (e.g. Intel vs AMD) and a "
                   "distance tie within float noise can move one query; rank and AP are compared "
                   "alike")


def query_counts(result: dict) -> dict[str, int]:
    """{protocol: number of queries} of an `evaluate_model` result (single-shot: per draw)."""
    report = result["embedding"]
    counts = {proto: int(part["num_valid_queries"]) for proto, part in report.items()
              if "num_valid_queries" in part}
    counts.setdefault("single_shot", counts.get("all_gallery", int(result["num_query"])))
    return counts


def compare_summaries(measured: dict, reference: dict, queries: dict[str, int],
                      tolerance_queries: float = 1.0) -> list[str]:
    """Metrics of `reference` that `measured` misses by more than `tolerance_queries` queries.

    A metric over n queries moves by 1/n when one query's rank (or AP, at most) changes, so the
    tolerance is `tolerance_queries / n` per protocol (see `CARD_COMPARISON`).

    Args:
      measured, reference: `summarize` dicts (fractions).
      queries: {protocol: number of queries}, e.g. from `query_counts`.
      tolerance_queries: how many queries' worth a metric may differ by.

    Returns:
      One line per differing or missing number (empty when they agree).
    """
    problems = []
    for section, protos in reference.items():
        for proto, values in protos.items():
            allowed = tolerance_queries / max(int(queries.get(proto, 1)), 1) + 1e-9
            for key, ref in values.items():
                got = measured.get(section, {}).get(proto, {}).get(key)
                if got is None:
                    problems.append(f"{section}/{proto}/{key}: card {ref:.4f}, not measured")
                elif abs(got - ref) > allowed:
                    problems.append(f"{section}/{proto}/{key}: card {100 * ref:.2f}%, measured "
                                    f"{100 * got:.2f}% (allowed {100 * allowed:.2f} points: "
                                    f"{tolerance_queries:g} of {queries.get(proto)} queries)")
    return problems


def format_result(result: dict, log: Callable[[str], None] = print) -> None:
    """Prints every section of an `evaluate_model` result (percentages)."""
    titles = [("embedding", "serving embedding (Euclidean)"),
              ("embedding_reranked", "serving embedding, k-reciprocal re-ranking"),
              ("fused", "channels score-fused (paper protocol)")]
    titles += [(f"channels/{c}", f"channel {c} (raw embedding)") for c in result.get("channels", {})]
    log(f"{result['model']} on {result['dataset']}: {result['num_query']} query, "
        f"{result['num_gallery']} gallery images, AP convention {result['settings']['ap']}"
        f"{', test-time flip averaging' if result.get('flip_average') else ''}")
    for key, title in titles:
        section = result
        for part in key.split("/"):
            section = section.get(part) if isinstance(section, dict) else None
        if section is None:
            continue
        lines = format_report(section) if "multi_query" in section else \
            format_report({**section, "multi_query": _nan_report()}).rsplit("\n", 1)[0]
        log(f"{title}:\n{lines}")


def _nan_report() -> dict:
    return {"mAP": np.nan}
