"""The one trainer skeleton: every trainer is a `Recipe` run by `fit`.

An epoch of every trainer is the same: batches from a source (P x K images, cached backbone
maps, stripe-feature rows or siamese pairs) go through one gradient step
(`tfreid.distribute.make_train_step`); then the held-out identities are embedded and ranked
(`rank_embeddings`), and the loop checkpoints, keeps the best validation rank-1 epoch and stops
early (`ResumableLoop`). `tfreid.training.cnn` and `tfreid.training.stripes` differ only in the
`Recipe` they build: the batch source, the step, and how the validation images are embedded.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfreid.evaluation import distance_matrix, evaluate
from tfreid.training.loop import EarlyStopping, ResumableLoop, epoch_means


@dataclasses.dataclass(frozen=True)
class ValidationIds:
    """Identities of a held-out query / gallery split: int [q] and [g] arrays."""

    q_pids: np.ndarray
    g_pids: np.ndarray
    q_camids: np.ndarray
    g_camids: np.ndarray


def embed_arrays(model: keras.Model, inputs: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Embeddings [N, k] float32 of model inputs [N, ...] (stripe features, cached maps), in
    inference mode, batch by batch."""
    out = [model(tf.convert_to_tensor(inputs[i:i + batch_size], tf.float32), training=False).numpy()
           for i in range(0, len(inputs), batch_size)]
    return np.concatenate(out, axis=0) if out else np.zeros((0, model.output_shape[-1]), np.float32)


def rank_embeddings(query: np.ndarray, gallery: np.ndarray, ids: ValidationIds,
                    max_rank: int = 20):
    """EvalResult of ranking the gallery [g, d] for each query [q, d] by Euclidean distance
    (Market-1501 AP, the same-camera rule of `tfreid.evaluation.evaluate`)."""
    return evaluate(distance_matrix(query, gallery), ids.q_pids, ids.g_pids, ids.q_camids,
                    ids.g_camids, max_rank=min(max_rank, len(gallery)))


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What varies between trainers.

    Attributes:
      batches: epoch -> that epoch's batches, each a tuple of `step`'s arguments; a function of
        (seed, epoch) only, so that a resumed run sees the batches the killed one would have.
      step: one gradient step, batch -> (loss, *stats) scalars.
      step_names: the names of the step's values, the first "loss".
      steps_per_epoch: batches per epoch.
      embed_validation: () -> (query [q, d], gallery [g, d]) embeddings of the held-out
        identities with the current weights.
      validation_ids: their identities.
      more_validation: optional () -> further validation metrics (e.g. the online training
        index on a fixed batch).
      prepare: optional () -> None, the expensive set-up of the sources (e.g. cached backbone
        maps), run after the loop's resume check (a refused run does no work) and before the
        first epoch (so that epoch's time is training only).
    """

    batches: Callable[[int], Iterable[tuple]]
    step: Callable[..., object]
    step_names: Sequence[str]
    steps_per_epoch: int
    embed_validation: Callable[[], tuple[np.ndarray, np.ndarray]]
    validation_ids: ValidationIds
    more_validation: Callable[[], Mapping[str, float]] | None = None
    prepare: Callable[[], None] | None = None


def fit(model: keras.Model, optimizer: keras.optimizers.Optimizer, recipe: Recipe,
        out_dir: str | Path, *, epochs: int, patience: int, resume: bool = False,
        log: Callable[[str], None] = print,
        agree_epoch: Callable[[int], int] | None = None) -> list[dict]:
    """Trains with `recipe` in a ResumableLoop on validation rank-1 and restores the best epoch.

    Args:
      model: the checkpointed model (its weights are the best epoch's on return).
      optimizer: the step's optimizer (checkpointed with the model).
      recipe: the trainer's batch source, step and validation embedding.
      out_dir: run folder (see `tfreid.rundir.RunDir`).
      epochs: epochs at most; patience: early-stopping patience (0 = off).
      resume: continue a killed run from its last checkpoint.
      log: progress printer.
      agree_epoch: for several workers, the epoch all of them hold (`distribute.min_across_workers`).

    Returns:
      Per-epoch history: the step's means, "learning_rate", "val_rank1", "val_map" and
      recipe.more_validation's metrics.
    """
    loop = ResumableLoop(model, optimizer, out_dir, epochs,
                         EarlyStopping("val_rank1", "max", patience), resume=resume, log=log,
                         agree_epoch=agree_epoch)

    def train_epoch(epoch: int) -> dict:
        means = epoch_means(recipe.batches(epoch), recipe.step, recipe.step_names,
                            recipe.steps_per_epoch, log)
        return {**means, "learning_rate": float(optimizer.learning_rate)}

    def validate(epoch: int) -> dict:
        result = rank_embeddings(*recipe.embed_validation(), recipe.validation_ids)
        metrics = {"val_rank1": float(result.cmc[0]), "val_map": float(result.mAP)}
        if recipe.more_validation is not None:
            metrics.update(recipe.more_validation())
        return metrics

    if recipe.prepare is not None:
        recipe.prepare()
    history = loop.run(train_epoch, validate)
    loop.restore_best()
    return history
