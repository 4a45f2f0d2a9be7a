"""A CNN embedding experiment end to end: P x K training -> test report (with re-ranking).

Run folder layout (`out_dir`):
  checkpoints/, best.weights.h5, history.jsonl, tensorboard/   (see training.loop)
  training_index.png    the online training index per epoch (paper Fig. 5)
  model.keras           images [B, H, W, 3] float 0-255 -> embedding [B, dim]
  metrics.json          test report, plain and with k-reciprocal re-ranking
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Callable

from tfreid.data.records import ReIDSplit, arrays, train_val_test_parts
from tfreid.evaluation import distance_matrix
from tfreid.evaluation.rerank import k_reciprocal_features
from tfreid.training.cnn import CNNTrainConfig, embed_images, train_cnn
from tfreid.training.report import format_report, test_report


def run_cnn_experiment(split: ReIDSplit, config: CNNTrainConfig, out_dir: str | Path, *,
                       num_val_ids: int = 100, resume: bool = False, weights_dir: str | None = None,
                       log: Callable[[str], None] = print) -> dict:
    """Trains config.loss on split's training identities and evaluates the best epoch.

    Returns:
      The metrics dict also written to out_dir/metrics.json ("test", "test_reranked",
      "epochs", "train_seconds_this_run", "config").
    """
    from tfreid import viz

    out_dir = Path(out_dir)
    parts = train_val_test_parts(split, num_val_ids, config.seed)
    start = time.perf_counter()
    model, history = train_cnn(config, parts["train"], parts["val_query"], parts["val_gallery"],
                               out_dir, resume=resume, weights_dir=weights_dir, log=log)
    seconds = time.perf_counter() - start
    viz.plot_training_index(history, out_dir / "training_index.png",
                            title=f"{config.backbone} / {config.loss}")
    size = (config.height, config.width)
    q_paths, q_pids, q_cams = arrays(parts["query"])
    g_paths, g_pids, g_cams = arrays(parts["gallery"])
    q_emb, g_emb = embed_images(model, q_paths, size), embed_images(model, g_paths, size)
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
    model.save(out_dir / "model.keras")
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics
