"""A CNN embedding experiment end to end: P x K training -> test report (with re-ranking).

Writes into the run folder (`tfreid.rundir.RunDir`): the training loop's files, the training
index picture (paper Fig. 5), model.keras (images [B, H, W, 3] float 0-255 -> embedding
[B, dim]) and metrics.json (test report, plain and with k-reciprocal re-ranking).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

from tfreid import viz, zoo
from tfreid.data.records import ReIDSplit, arrays, train_val_test_parts
from tfreid.evaluation import distance_matrix
from tfreid.evaluation.rerank import k_reciprocal_features
from tfreid.model_eval import embed_test_images
from tfreid.training.cnn import CNNTrainConfig, train_cnn
from tfreid.evaluation.report import format_report, test_report
from tfreid.rundir import RunDir


def run_cnn_experiment(split: ReIDSplit, config: CNNTrainConfig, out_dir: str | Path, *,
                       num_val_ids: int = 100, resume: bool = False, weights_dir: str | None = None,
                       log: Callable[[str], None] = print) -> dict:
    """Trains config.loss on split's training identities and evaluates the best epoch.

    Returns:
      The metrics dict also written to out_dir/metrics.json ("test", "test_reranked",
      "epochs", "train_seconds_this_run", "config").
    """
    out_dir = Path(out_dir)
    parts = train_val_test_parts(split, num_val_ids, config.seed)
    start = time.perf_counter()
    model, history = train_cnn(config, parts["train"], parts["val_query"], parts["val_gallery"],
                               out_dir, resume=resume, weights_dir=weights_dir, log=log)
    seconds = time.perf_counter() - start
    run = RunDir(out_dir)
    viz.plot_training_index(history, run.training_index, title=f"{config.backbone} / {config.loss}")
    model.save(run.model)
    q_paths, q_pids, q_cams = arrays(parts["query"])
    g_paths, g_pids, g_cams = arrays(parts["gallery"])
    # The saved model on the test image files, as tools/evaluate.py sees it (raw embedding).
    (_, q_raw), (_, g_raw) = embed_test_images(zoo.from_run(out_dir), q_paths, g_paths)
    (q_emb,), (g_emb,) = q_raw.values(), g_raw.values()
    metrics = {
        "dataset": split.name,
        "test": test_report(distance_matrix(q_emb, g_emb), q_pids, g_pids, q_cams, g_cams),
        "test_reranked": test_report(k_reciprocal_features(q_emb, g_emb), q_pids, g_pids, q_cams, g_cams),
        "epochs": len(history),
        "train_seconds_this_run": round(seconds, 1),
        "config": dataclasses.asdict(config),
    }
    log(f"test:\n{format_report(metrics['test'])}")
    log(f"test, k-reciprocal re-ranking:\n{format_report(metrics['test_reranked'])}")
    run.write_json(run.metrics, metrics)
    return metrics
