"""The pictures of a training run folder (tools/train.py, tools/demo.py): CMC curves, ranked
lists of test queries and, for stripe LSTM runs, gate heat maps.

A run folder holds metrics.json and model.keras: raw images [B, H, W, 3] -> {channel: embedding}
for stripe runs (the branches it declares, see `tfreid.models.stripe_deploy`), or images ->
embedding for CNN runs.
TensorFlow is imported only when a model is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from tfreid.data.records import ReIDSplit, arrays
from tfreid.rundir import RunDir
from tfreid.viz.curves import cmc_curves, plot_cmc
from tfreid.viz.gates import lomo_row_spans, plot_gate_heatmaps
from tfreid.viz.ranked import plot_ranked_lists


def read_metrics(path: str | Path) -> dict:
    """metrics.json of a run (a run folder or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = RunDir(path).metrics
    if not path.is_file():
        raise FileNotFoundError(f"no metrics file at {path} (expected a run folder of tools/train.py "
                                "or its metrics.json)")
    return json.loads(path.read_text())


def run_split(run_dir: str | Path, dataset: str | None = None, data_dir: str | None = None,
              options: dict | None = None) -> ReIDSplit:
    """The dataset a run was trained on, from its flags.json (tools/train.py).

    Args:
      run_dir: the run folder.
      dataset, data_dir: override the run's --dataset / --data_dir (needed for runs without a
        flags.json, e.g. the demo's: dataset falls back to metrics.json's "dataset").
      options: loader options (None: those the run recorded for its own dataset).
    """
    from tfreid.data import datasets

    run = RunDir(run_dir)
    saved = run.read_flags() or {}
    dataset = dataset or saved.get("dataset")
    if dataset is None and run.metrics.is_file():
        dataset = read_metrics(run_dir).get("dataset")
    if dataset is None:
        raise ValueError(f"{run_dir} has no flags.json naming its dataset; pass the dataset name")
    if options is None:
        options = datasets.recorded_options(dataset, saved) if saved.get("dataset") == dataset else {}
    return datasets.build(dataset, data_dir or saved.get("data_dir"), **options)


def load_run_model(path: str | Path):
    """keras.Model of a run's model.keras (`tfreid.serving.load_keras_model`)."""
    from tfreid.serving import load_keras_model

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model at {path} (expected model.keras of a tools/train.py run)")
    return load_keras_model(path)


def _stripe_parts(model, run_dir: Path, channels: Sequence[str]) -> dict:
    """{channel: (feature layer, embedding model)} of a stripe run's model (the branches it
    declares, `tfreid.models.stripe_deploy.stripe_branches`)."""
    from tfreid.models.stripe_deploy import stripe_branches

    try:
        return stripe_branches(model, channels)
    except ValueError as err:
        raise ValueError(f"{RunDir(run_dir).model}: {err}") from err


def _test_distances(model, channels: Sequence[str] | None, q_paths, g_paths, log) -> np.ndarray:
    """Test distances [q, g] of a run's model, from the serving embeddings' raw branches (the
    path of tools/evaluate.py); several stripe channels are score-fused as in metrics.json."""
    from tfreid.evaluation import distance_matrix
    from tfreid.evaluation.protocols import fuse_scores
    from tfreid.model_eval import embed_test_images
    from tfreid.serving import EmbeddingModel

    log(f"embedding {len(q_paths)} query and {len(g_paths)} gallery images")
    (_, q_raw), (_, g_raw) = embed_test_images(EmbeddingModel(model), q_paths, g_paths)
    dists = [distance_matrix(q_raw[b], g_raw[b]) for b in (channels or list(q_raw))]
    return dists[0] if len(dists) == 1 else fuse_scores(dists)


def _has_lstm(model) -> bool:
    import keras

    return any(isinstance(layer, keras.layers.LSTM) for layer in model.layers)


def write_run_pictures(run_dir: str | Path, split: ReIDSplit, out_dir: str | Path, *,
                       num_queries: int = 6, top_k: int = 10, num_gate_images: int = 6,
                       cmc_protocol: str = "all_gallery",
                       log: Callable[[str], None] = print) -> list[Path]:
    """Writes the pictures of a run on the test split of `split`.

    Files in out_dir: cmc.png (the run's curves from metrics.json), ranked_lists.png (queries
    evenly spread over the test queries with a true match, top_k gallery images each; stripe
    runs rank by the fused distances of all channels), and for stripe LSTM runs
    gate_heatmaps.png (LOMO, or the only channel; all three scales) plus
    gate_heatmaps_<channel>.png for each further channel.

    Args:
      run_dir: run folder with metrics.json and model.keras.
      split: the dataset the run was trained on (its query / gallery are ranked).
      out_dir: where the PNGs go (created).
      num_queries, top_k: rows and gallery images per row of the ranked lists.
      num_gate_images: query images in the gate heat maps (evenly spread over the queries).
      cmc_protocol: "all_gallery", "single_shot" or "multi_query".
      log: progress messages (print shows progress bars while featurising).

    Returns:
      The paths written.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    metrics = read_metrics(run_dir)
    q_paths, q_pids, q_cams = arrays(split.query)
    g_paths, g_pids, g_cams = arrays(split.gallery)
    if len(q_paths) == 0 or len(g_paths) == 0:
        raise ValueError(f"split {split.name!r} has {len(q_paths)} query and {len(g_paths)} gallery "
                         "images; ranked lists need both")
    dataset = metrics.get("dataset", split.name)
    pictures = [plot_cmc(cmc_curves(metrics, protocol=cmc_protocol), out_dir / "cmc.png",
                         title=f"{dataset} test split, {cmc_protocol.replace('_', '-')} CMC")]
    model = load_run_model(RunDir(run_dir).model)
    if "channels" in metrics:
        channels = list(metrics["channels"])
        parts = _stripe_parts(model, run_dir, channels)
        name = " + ".join(channels)
    else:
        config = metrics.get("config", {})
        channels, parts = None, {}
        name = "/".join(str(config[k]) for k in ("backbone", "loss") if k in config) or "CNN"
    distmat = _test_distances(model, channels, q_paths, g_paths, log)
    pictures.append(plot_ranked_lists(
        q_paths, g_paths, distmat, q_pids, g_pids, q_cams, g_cams, out_dir / "ranked_lists.png",
        top_k=top_k, num_queries=num_queries,
        title=f"{dataset} test split, {name}: top-{top_k} gallery images per query "
              "(green: same person, red: another; the query's own camera excluded for its identity)"))

    from tfreid.experiments.stripes import featurize
    from tfreid.models.lstm_gates import gate_norms

    lstm_channels = sorted((c for c, (_, emb) in parts.items() if _has_lstm(emb)),
                           key=lambda c: c != "lomo")
    count = min(num_gate_images, len(q_paths))
    chosen = np.unique(np.linspace(0, len(q_paths) - 1, count).round().astype(int))
    for k, channel in enumerate(lstm_channels):
        layer, emb = parts[channel]
        # The gates read the LSTM's input: the stripe features of the chosen queries.
        features = featurize(layer, [q_paths[i] for i in chosen], log=lambda m: None)
        norms = gate_norms(emb, features).numpy()
        is_lomo = channel == "lomo"
        pictures.append(plot_gate_heatmaps(
            [q_paths[i] for i in chosen], norms,
            out_dir / ("gate_heatmaps.png" if k == 0 else f"gate_heatmaps_{channel}.png"),
            scales=layer.config.rows_per_scale if is_lomo else None,
            row_spans=lomo_row_spans(layer.config) if is_lomo else None,
            labels=[f"id {q_pids[i]} c{q_cams[i]}" for i in chosen],
            title=f"{dataset}: LSTM gates per {channel} row"))
    return pictures


def plot_cmc_of_runs(metrics_paths: Sequence[str | Path], path: str | Path,
                     labels: Sequence[str] | None = None, protocol: str = "all_gallery",
                     title: str = "") -> Path:
    """One CMC plot of several runs' headline curves (see `cmc_curves(main_only=True)`).

    Args:
      metrics_paths: run folders or their metrics.json files.
      path: PNG file to write.
      labels: legend entry per run (default: the model of each run; repeated ones numbered).
      protocol: "all_gallery", "single_shot" or "multi_query".
    """
    if labels is not None and len(labels) != len(metrics_paths):
        raise ValueError(f"got {len(labels)} labels for {len(metrics_paths)} metrics files")
    if not metrics_paths:
        raise ValueError("plot_cmc_of_runs needs at least one metrics file")
    curves = {}
    for k, source in enumerate(metrics_paths):
        found = cmc_curves(read_metrics(source), label=None if labels is None else labels[k],
                           protocol=protocol, main_only=True)
        for label, cmc in found.items():
            unique = label if label not in curves else f"{label} [{k + 1}]"
            curves[unique] = cmc
    return plot_cmc(curves, path, title=title or f"{protocol.replace('_', '-')} CMC")
