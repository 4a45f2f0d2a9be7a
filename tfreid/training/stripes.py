"""Training of the stripe-feature models (siamese LSTM, Eq. 8-9 MLP baselines) on one channel:
the `tfreid.training.fit` recipe of a stripe model (batch source: siamese pairs, or P x K rows).

The inputs are precomputed stripe features [N, R, d] of one channel (LOMO or Color Names).
Two objectives:
- "contrastive": the paper's set-up. Siamese pairs (every positive pair plus, per image, twice
  as many hard negatives mined in the input feature space), batches of 100 pairs, contrastive
  loss (margin 0.5) summed over the pairs, RMSProp (rho 0.95, element-wise clip 5).
- "rank_triplet" / "rank_triplet_baseline" / "batch_hard": P x K batches of stripe features
  with a list-wise or batch loss on the embeddings (Chen, Duffner et al. 2021), same optimizer.
After every epoch the held-out validation identities are ranked (query: their first camera,
gallery: their second) and the best rank-1 epoch is kept (early stopping).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfreid import losses
from tfreid.data.pairs import PairSampler
from tfreid.data.pipeline import PKSampler
from tfreid.distribute import make_train_step
from tfreid.models.mlp_baseline import build_stripe_mlp
from tfreid.models.optimizer import siamese_optimizer
from tfreid.models.siamese import build_siamese
from tfreid.models.stripe_lstm import build_stripe_lstm
from tfreid.training.fit import Recipe, ValidationIds, embed_arrays, fit, rank_embeddings

EMBED_BATCH = 512  # stripe rows are small: a larger inference batch than the CNN's

ARCHITECTURES = ("lstm", "mlp")
OBJECTIVES = ("contrastive", "rank_triplet", "rank_triplet_baseline", "batch_hard")


@dataclasses.dataclass
class StripeTrainConfig:
    """Hyper-parameters of one channel's stripe model (each is a flag of tools/train.py)."""

    architecture: str = "lstm"
    hidden_units: int = 50
    lstm_mode: str = "per_scale"
    mlp_layers: int = 1
    mlp_units: int | None = None
    mlp_activation: str = "tanh"
    objective: str = "contrastive"
    margin: float = 0.5
    learning_rate: float = 1e-3
    lr_decay: float = 0.95
    batch_size: int = 100
    p: int = 16  # identities per P x K batch (list objectives)
    k: int = 4
    epochs: int = 20
    patience: int = 5
    negatives_per_positive: int = 2
    seed: int = 0

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        for name in ("hidden_units", "mlp_layers", "batch_size", "p", "k", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.mlp_units is not None and self.mlp_units < 1:
            raise ValueError(f"mlp_units must be >= 1 or None (R * hidden_units), got {self.mlp_units}")


@dataclasses.dataclass
class ViewSplit:
    """Features of a query/gallery evaluation split of one channel.

    Attributes:
      query, gallery: float32 [n, R, d].
      q_pids, g_pids, q_camids, g_camids: int [n].
    """

    query: np.ndarray
    gallery: np.ndarray
    q_pids: np.ndarray
    g_pids: np.ndarray
    q_camids: np.ndarray
    g_camids: np.ndarray

    @property
    def ids(self) -> ValidationIds:
        return ValidationIds(self.q_pids, self.g_pids, self.q_camids, self.g_camids)


def build_stripe_model(config: StripeTrainConfig, num_rows: int, feature_dim: int,
                       scales: Sequence[int] | None = None, name: str = "stripe_model") -> keras.Model:
    """The embedding branch [B, R, d] -> [B, k] that `config` describes."""
    if config.architecture == "lstm":
        return build_stripe_lstm(num_rows, feature_dim, config.hidden_units, scales=scales,
                                 mode=config.lstm_mode, seed=config.seed, name=name)
    return build_stripe_mlp(num_rows, feature_dim, config.mlp_layers, units=config.mlp_units,
                            activation=config.mlp_activation, hidden_units=config.hidden_units,
                            seed=config.seed, name=name)


def rank_split(model: keras.Model, split: ViewSplit, max_rank: int = 20):
    """EvalResult of ranking split.gallery for split.query by Euclidean embedding distance."""
    return rank_embeddings(embed_arrays(model, split.query, EMBED_BATCH),
                           embed_arrays(model, split.gallery, EMBED_BATCH), split.ids, max_rank)


def train_stripe_model(config: StripeTrainConfig, train_features: np.ndarray, train_pids: np.ndarray,
                       train_camids: np.ndarray, validation: ViewSplit, out_dir: str | Path, *,
                       scales: Sequence[int] | None = None, resume: bool = False,
                       name: str = "stripe_model", initial_weights: list | None = None,
                       log: Callable[[str], None] = print) -> tuple[keras.Model, list[dict]]:
    """Trains one channel's embedding with early stopping on validation rank-1.

    Args:
      config: hyper-parameters.
      train_features: float32 [N, R, d]; train_pids, train_camids: int [N].
      validation: held-out identities, ranked after every epoch.
      out_dir: run folder (checkpoints, best.weights.h5, history.jsonl, tensorboard/).
      scales: rows per scale for the LSTM (e.g. (24, 11, 5) for LOMO), None for one scale.
      resume: continue a killed run from its last checkpoint.
      name: the embedding model's name (unique when several are combined into one model).
      initial_weights: start from these weights (`get_weights()` of a model of the same
        architecture, e.g. trained on another dataset: transfer) instead of a random init.
      log: progress printer.

    Returns:
      (embedding model with the best epoch's weights, per-epoch history).
    """
    train_features = np.asarray(train_features, np.float32)
    if train_features.ndim != 3:
        raise ValueError(f"train_features must be [N, rows, dim], got shape {train_features.shape}")
    n, num_rows, dim = train_features.shape
    if validation.query.shape[1:] != (num_rows, dim) or validation.gallery.shape[1:] != (num_rows, dim):
        raise ValueError(f"validation features {validation.query.shape[1:]} / {validation.gallery.shape[1:]} "
                         f"do not match the training features' (rows, dim) = {(num_rows, dim)}")
    keras.utils.set_random_seed(config.seed)
    model = build_stripe_model(config, num_rows, dim, scales, name=name)
    if initial_weights is not None:
        shapes = [tuple(w.shape) for w in model.get_weights()]
        given = [tuple(np.shape(w)) for w in initial_weights]
        if shapes != given:
            raise ValueError(f"{name}: initial weights of shapes {given} do not fit the model's "
                             f"{shapes}; use the source model's architecture flags")
        model.set_weights(initial_weights)
    features_tensor = tf.convert_to_tensor(train_features)

    if config.objective == "contrastive":
        sampler = PairSampler(train_features, train_pids, train_camids, batch_size=config.batch_size,
                              seed=config.seed, negatives_per_positive=config.negatives_per_positive)
        steps_per_epoch = -(-len(sampler.pairs(0)) // config.batch_size)
        log(f"pairs per epoch: {len(sampler.pairs(0))} ({sampler.pairs(0).num_positive} positive)")
        # The siamese distance of each pair, the contrastive loss summed over the batch's pairs.
        forward = build_siamese(model)
        pair_loss = losses.get("contrastive_pair", margin=float(config.margin)).call

        def objective(label, distance):
            return tf.reduce_sum(pair_loss(label, distance))

        def batches(epoch: int):
            return (([x_i, x_j], label) for (x_i, x_j), label in sampler.dataset(epoch))
    else:
        pk_sampler = PKSampler(train_pids, config.p, config.k, config.seed)
        steps_per_epoch = pk_sampler.steps_per_epoch
        forward = model
        # From the loss registry; `.call` is the loss function with its options bound.
        objective = losses.get(config.objective, margin=float(config.margin)).call
        labels_all = np.asarray(train_pids, np.int32)

        def batches(epoch: int):
            return ((tf.gather(features_tensor, index), tf.constant(labels_all[index]))
                    for index in pk_sampler.epoch(epoch))
    optimizer = siamese_optimizer(config.learning_rate, config.lr_decay, steps_per_epoch)
    step = make_train_step(tf.distribute.get_strategy(), forward, None, objective, optimizer,
                           model.trainable_variables)
    recipe = Recipe(batches, step, ["loss"], steps_per_epoch,
                    embed_validation=lambda: (embed_arrays(model, validation.query, EMBED_BATCH),
                                              embed_arrays(model, validation.gallery, EMBED_BATCH)),
                    validation_ids=validation.ids)
    history = fit(model, optimizer, recipe, out_dir, epochs=config.epochs,
                  patience=config.patience, resume=resume, log=log)
    return model, history
