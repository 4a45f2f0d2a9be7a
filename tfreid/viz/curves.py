"""Curves: training index, training history and CMC curves of several models."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from tfreid.viz.images import save_figure

TRAINING_INDEX = (("map", "batch mAP"), ("r1", "batch rank-1"), ("misranked", "mis-ranked pairs"))


def plot_training_index(history: Sequence[dict], path: str | Path, title: str = "") -> Path:
    """The online training index of Chen, Duffner et al. (Fig. 5) per epoch, as a PNG.

    Args:
      history: per-epoch dicts with "train_batch_{map,r1,misranked}" and, when there was a
        validation batch, "val_batch_{map,r1,misranked}" (as written by training.cnn).
      path: PNG file to write.
      title: figure title.

    Returns:
      The path written.
    """
    epochs = [h["epoch"] + 1 for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, (key, label) in zip(axes, TRAINING_INDEX):
        for part, style in (("train", "-"), ("val", "--")):
            values = [h.get(f"{part}_batch_{key}") for h in history]
            if any(v is not None for v in values):
                ax.plot(epochs, values, style, marker="o", ms=3, label=part)
        ax.set_xlabel("epoch")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_cmc(curves: dict[str, Sequence[float]], path: str | Path, title: str = "",
             max_rank: int = 20) -> Path:
    """CMC curves of several models on one plot.

    Args:
      curves: label -> CMC values (fractions, rank 1 first).
      path: PNG file to write.
      max_rank: last rank drawn.

    Returns:
      The path written.
    """
    if not curves:
        raise ValueError("plot_cmc needs at least one curve")
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    fig, ax = plt.subplots(figsize=(5.5, 4))
    last = 1
    for label, cmc in curves.items():
        cmc = list(cmc)[:max_rank]
        if not cmc:
            plt.close(fig)
            raise ValueError(f"CMC curve {label!r} is empty")
        last = max(last, len(cmc))
        ax.plot(range(1, len(cmc) + 1), [100 * v for v in cmc], marker="o", ms=3,
                label=f"{label} (R1 {100 * cmc[0]:.1f})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0.5, last + 0.5)
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_history(history: Sequence[dict], path: str | Path, title: str = "") -> Path:
    """Training loss and validation rank-1 / mAP per epoch (a history.jsonl of training.loop)."""
    epochs = [h["epoch"] + 1 for h in history]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax_loss.plot(epochs, [h["loss"] for h in history], marker="o", ms=3)
    ax_loss.set_title("training loss")
    for key, label in (("val_rank1", "validation rank-1"), ("val_map", "validation mAP")):
        ax_val.plot(epochs, [100 * h[key] for h in history], marker="o", ms=3, label=label)
    ax_val.set_title("validation (%)")
    ax_val.legend()
    for ax in (ax_loss, ax_val):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


CMC_PROTOCOLS = ("all_gallery", "single_shot", "multi_query")


def cmc_curves(metrics: dict, label: str | None = None, protocol: str = "all_gallery",
               main_only: bool = False) -> dict[str, list[float]]:
    """CMC curves of a metrics.json written by tools/train.py (stripe or CNN run).

    Args:
      metrics: the parsed metrics.json. Stripe runs hold "channels" (and "input_features",
        "fused"); CNN runs hold "test" and "test_reranked".
      label: name of the model in the legend (default: from the run's config).
      protocol: which CMC of each report: "all_gallery", "single_shot" or "multi_query".
      main_only: only the run's headline curve (fused scores, or the single channel, or the
        CNN without re-ranking), for plots that compare several runs.

    Returns:
      Ordered dict label -> CMC fractions (rank 1 first), for `plot_cmc`.
    """
    if protocol not in CMC_PROTOCOLS:
        raise ValueError(f"protocol must be one of {CMC_PROTOCOLS}, got {protocol!r}")
    config = metrics.get("config", {})

    def cmc(report: dict, where: str) -> list[float]:
        if protocol not in report or "cmc" not in report[protocol]:
            raise ValueError(f"metrics {where} has no {protocol!r} CMC; keys: {sorted(report)}")
        return list(report[protocol]["cmc"])

    if "channels" in metrics:
        name = label or {"lstm": "siamese LSTM", "mlp": "stripe MLP"}.get(
            config.get("architecture", "lstm"), "stripe model")
        channels = list(metrics["channels"])
        curves = {}
        if main_only:
            if "fused" in metrics:
                return {name: cmc(metrics["fused"], "['fused']")}
            return {name: cmc(metrics["channels"][channels[0]], f"['channels'][{channels[0]!r}]")}
        for c in channels:
            if c in metrics.get("input_features", {}):
                curves[f"{c} input features (Euclidean)"] = cmc(
                    metrics["input_features"][c], f"['input_features'][{c!r}]")
        for c in channels:
            curves[f"{name} ({c})"] = cmc(metrics["channels"][c], f"['channels'][{c!r}]")
        if "fused" in metrics:
            curves[f"{name} (fused)"] = cmc(metrics["fused"], "['fused']")
        return curves
    if "test" in metrics:
        name = label or "/".join(str(config[k]) for k in ("backbone", "loss") if k in config) or "CNN"
        curves = {name: cmc(metrics["test"], "['test']")}
        if not main_only and "test_reranked" in metrics:
            curves[f"{name} + re-ranking"] = cmc(metrics["test_reranked"], "['test_reranked']")
        return curves
    raise ValueError("metrics has neither 'channels' (stripe run) nor 'test' (CNN run); "
                     f"keys: {sorted(metrics)}")
