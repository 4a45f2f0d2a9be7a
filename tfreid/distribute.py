"""Training on several devices or machines with tf.distribute, and mixed precision.

Strategies (`make_strategy`, the `--strategy` flag of tools/train.py):

  * "default": one device (TensorFlow's default strategy; nothing changes);
  * "mirrored": `tf.distribute.MirroredStrategy`, every local GPU (or logical CPU device);
  * "multi_worker": `tf.distribute.MultiWorkerMirroredStrategy`, one process per machine, the
    cluster described by the `TF_CONFIG` environment variable, e.g. on worker 1 of 2:
      TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
                  "task": {"type": "worker", "index": 1}}'
    Every worker runs the same command, each with its own --out (a run folder per worker:
    checkpoints, history, model; the models are equal). A worker that dies makes the others fail
    in their next collective (TensorFlow's health check); restart every worker with --resume:
    they agree on the last epoch all of them checkpointed (`min_across_workers`) and continue
    from it in step (tests/tools/test_multi_worker.py kills one of two real workers).

The global batch. A P x K batch of B images is split into B / N images per replica. The list-wise
losses (Rank-Triplet ranks every image against the WHOLE batch; batch-hard, triplet, quadruplet
and contrastive mine or enumerate pairs over it) must see all B, so `global_batch_loss` makes each
replica all-gather the embeddings and labels (`ReplicaContext.all_gather`, in replica order =
batch order) and compute the loss of the global batch, divided by N. The gradient of all_gather
sums the replicas' upstream gradients and hands each replica its own rows, so replica r's
gradient is dL/d(its rows) and the optimizer's cross-replica SUM of the weight gradients is
exactly the one-device gradient of L on the B images (tests/test_distribute.py checks this to
1e-5). BatchNormalization layers are synchronised while training on several replicas
(`synchronized_batch_norm`): their batch statistics are those of the global batch, so their
moving averages stay equal on every replica and worker. What does NOT match one device:
per-replica random augmentation draws differ.

Mixed precision (`--mixed_precision=float16|bfloat16`): the Keras global policy
"mixed_float16" / "mixed_bfloat16" (compute in 16 bits, variables in float32); the embeddings
are cast to float32 before the loss and the batch ranking, and float16 uses dynamic loss scaling
(`keras.optimizers.LossScaleOptimizer`). Meant for GPUs; on CPU it is slower.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Callable, Sequence

import keras
import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker")
PRECISIONS = {"float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


def make_strategy(name: str = "default") -> tf.distribute.Strategy:
    """The tf.distribute strategy of a `--strategy` value (see the module docstring).

    Raises:
      ValueError: an unknown name, or "multi_worker" without a valid TF_CONFIG.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        try:
            cluster = json.loads(os.environ["TF_CONFIG"])["cluster"]["worker"]
        except (KeyError, ValueError, TypeError) as err:
            raise ValueError("--strategy=multi_worker needs TF_CONFIG with cluster.worker and "
                             f"task (see tfreid.distribute); got {os.environ.get('TF_CONFIG')!r}"
                             ) from err
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING)
        del cluster
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")


def _batch_norm_layers(layer: keras.layers.Layer) -> list:
    found = [layer] if isinstance(layer, keras.layers.BatchNormalization) else []
    for child in getattr(layer, "layers", []):
        found += _batch_norm_layers(child)
    return found


@contextlib.contextmanager
def synchronized_batch_norm(model: keras.Model, strategy: tf.distribute.Strategy):
    """Within the block, every BatchNormalization layer of `model` normalises a training batch
    with the statistics of the global batch (all replicas), when `strategy` has several.

    Without it each replica would update its own moving averages from its B / N images, and the
    workers' models would drift apart. The layers are restored on exit (a saved model does not
    ask for a replica context).
    """
    layers = _batch_norm_layers(model) if strategy.num_replicas_in_sync > 1 else []
    before = [layer.synchronized for layer in layers]
    for layer in layers:
        layer.synchronized = True
    try:
        yield
    finally:
        for layer, value in zip(layers, before):
            layer.synchronized = value


def min_across_workers(strategy: tf.distribute.Strategy) -> Callable[[int], int]:
    """value -> the smallest of every replica's value (a collective: every worker must call it).

    With one replica it returns the value unchanged.
    """
    def agree(value: int) -> int:
        if strategy.num_replicas_in_sync == 1:
            return value
        gathered = strategy.run(lambda: gather(tf.constant([value], tf.int64)))
        return int(tf.reduce_min(strategy.experimental_local_results(gathered)[0]))
    return agree


def set_mixed_precision(precision: str | None) -> None:
    """Sets the Keras global dtype policy: None/"float32" -> float32, "float16", "bfloat16"."""
    if precision in (None, "", "float32"):
        keras.mixed_precision.set_global_policy("float32")
        return
    if precision not in PRECISIONS:
        raise ValueError(f"mixed_precision must be float16, bfloat16 or empty, got {precision!r}")
    keras.mixed_precision.set_global_policy(PRECISIONS[precision])


def num_replicas() -> int:
    """Replicas in sync of the current replica context (1 outside any strategy)."""
    ctx = tf.distribute.get_replica_context()
    return 1 if ctx is None else int(ctx.num_replicas_in_sync)


def gather(x: tf.Tensor) -> tf.Tensor:
    """x [b, ...] of this replica -> [N b, ...] of all replicas, in replica order (identity for 1)."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return x
    local_devices = tf.distribute.get_strategy().extended.worker_devices
    if not x.device and len(local_devices) == 1:
        # all_gather sends each tensor to its own device; with one device per worker
        # (MultiWorkerMirroredStrategy) the step runs under no device scope, so a tensor made in
        # it names none ("destinations can not be empty"): pin it to the worker's device.
        with tf.device(local_devices[0]):
            x = tf.identity(x)
    return ctx.all_gather(x, axis=0)


def global_batch_loss(loss_fn: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
                      ) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """(labels [b], outputs [b, d]) -> this replica's share L(global batch) / N of the loss.

    Outputs are cast to float32 first (mixed precision: losses and ranking in float32).
    Summing the replicas' values (or their gradients) gives the one-device loss (gradient).
    """
    def fn(labels, outputs):
        outputs = tf.cast(outputs, tf.float32)
        return loss_fn(gather(labels), gather(outputs)) / num_replicas()
    return fn


def make_train_step(strategy: tf.distribute.Strategy, forward: keras.Model, head,
                    loss_fn: Callable, optimizer, trainable: Sequence[tf.Variable],
                    weight_decay: float = 0.0, stats_fn: Callable | None = None):
    """One optimiser step on a global batch, under `strategy` (see the module docstring).

    Args:
      strategy: from `make_strategy`; variables must have been created in its scope.
      forward: inputs -> outputs [b, ...]: images or cached maps [b, ...] -> embeddings [b, d]
        (CNN, stripe rows), or a siamese pair [x_i [b, ...], x_j [b, ...]] -> distances [b].
      head: optional layer embeddings -> logits (classification loss), else None.
      loss_fn: (labels [B], outputs [B, *]) -> scalar on the GLOBAL batch.
      optimizer: a Keras optimizer (a LossScaleOptimizer for float16).
      trainable: the variables to update.
      weight_decay: L2 coefficient added to the gradients (as in tfreid.training.cnn).
      stats_fn: optional (labels [B], embeddings [B, d] float32) -> tuple of scalars, computed on
        the global batch (e.g. the batch ranking index).

    Returns:
      tf.function (inputs, labels) -> (loss, *stats) as Python-reducible scalars. The inputs
      are a global batch: a tf.Tensor or a list of them (each split across replicas here), or
      a distributed value from `strategy.experimental_distribute_dataset`.
    """
    replica_loss = global_batch_loss(loss_fn)
    if not optimizer.built:  # slots made here, in the strategy's scope, not inside the step
        with strategy.scope():
            optimizer.build(list(trainable))
    scaled = hasattr(optimizer, "scale_loss") and isinstance(
        optimizer, keras.optimizers.LossScaleOptimizer)

    def replica_step(inputs, labels):
        n = num_replicas()
        with tf.GradientTape() as tape:
            emb = forward(inputs, training=True)
            out = head(emb) if head is not None else emb
            loss = replica_loss(labels, out)
            target = optimizer.scale_loss(loss) if scaled else loss
        grads = tape.gradient(target, trainable)
        if weight_decay:  # the optimizer sums replicas: each adds 1/N of the decay
            grads = [g + (weight_decay / n) * tf.cast(v, g.dtype) for g, v in zip(grads, trainable)]
        optimizer.apply_gradients(zip(grads, trainable))
        stats = () if stats_fn is None else tuple(stats_fn(gather(labels),
                                                           gather(tf.cast(emb, tf.float32))))
        return (loss, *stats)

    def split(x):
        """A global tf.Tensor batch -> per-replica slices (a no-op for one replica)."""
        if strategy.num_replicas_in_sync == 1 or not isinstance(x, tf.Tensor):
            return x
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.split(x, ctx.num_replicas_in_sync)[ctx.replica_id_in_sync_group])

    @tf.function(reduce_retracing=True)
    def step(inputs, labels):
        values = strategy.run(replica_step, args=(inputs, labels))
        loss = strategy.reduce(tf.distribute.ReduceOp.SUM, values[0], axis=None)
        rest = [strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for v in values[1:]]
        return (loss, *rest)

    def run(inputs, labels):
        if strategy.num_replicas_in_sync > 1:
            inputs, labels = tf.nest.map_structure(split, (inputs, labels))
        return step(inputs, labels)
    return run


def wrap_optimizer(optimizer, precision: str | None):
    """Dynamic loss scaling for float16 (bfloat16 and float32 need none)."""
    if precision == "float16":
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
