"""Runs in a subprocess of tests/test_distribute.py (logical devices must be configured before
TensorFlow initialises): one training step on 2 logical CPU devices under MirroredStrategy vs one
device on the same global batch. Prints one JSON line of the largest differences."""

import json
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfreid import distribute, losses  # noqa: E402
from tfreid.models.siamese import build_siamese  # noqa: E402
from tfreid.training.cnn import CNNTrainConfig, make_loss_fn  # noqa: E402

SIAMESE = "siamese_pair"  # the stripe trainer's step: pairs [x_i, x_j] -> distances, summed loss


def build():
    inputs = keras.Input((16, 8, 3))
    x = keras.layers.Conv2D(6, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(8)(x))


def one_step(strategy, loss, weights, images, labels, precision=None):
    distribute.set_mixed_precision(precision)
    with strategy.scope():
        model = build()
        model.set_weights(weights)
        optimizer = distribute.wrap_optimizer(keras.optimizers.SGD(0.5), precision)
        if loss == SIAMESE:
            pair_loss = losses.get("contrastive_pair", margin=0.5).call
            forward, inputs = build_siamese(model), [tf.constant(images), tf.constant(images[::-1])]
            labels = (labels == labels[::-1]).astype(np.float32)

            def loss_fn(y, d):
                return tf.reduce_sum(pair_loss(y, d))
        else:
            forward, inputs = model, tf.constant(images)
            loss_fn = make_loss_fn(CNNTrainConfig(loss=loss))
        step = distribute.make_train_step(strategy, forward, None, loss_fn, optimizer,
                                          model.trainable_variables, weight_decay=5e-4)
    # SGD: the update is the gradient itself (Adam's first step, lr * g / |g|, would blow up
    # float summation-order differences of near-zero gradients).
    out = step(inputs, tf.constant(labels))
    distribute.set_mixed_precision(None)
    return float(out[0]), [np.asarray(w) for w in model.get_weights()]


def main(losses, precision=None):
    keras.utils.set_random_seed(0)
    weights = build().get_weights()
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (16, 16, 8, 3)).astype(np.float32)
    labels = np.repeat(np.arange(4), 4).astype(np.int32)
    rng.shuffle(labels)  # identities spread over both replicas' halves
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    result = {}
    for loss in losses:
        one_loss, one_w = one_step(tf.distribute.get_strategy(), loss, weights, images, labels, precision)
        two_loss, two_w = one_step(mirrored, loss, weights, images, labels, precision)
        half_loss, _ = one_step(tf.distribute.get_strategy(), loss, weights, images[:8], labels[:8], precision)
        result[loss] = {"loss": one_loss, "mirrored_loss": two_loss, "half_batch_loss": half_loss,
                        "max_weight_diff": max(float(np.abs(a - b).max()) for a, b in zip(one_w, two_w)),
                        "max_update": max(float(np.abs(a - b).max()) for a, b in zip(one_w, weights)),
                        "replicas": mirrored.num_replicas_in_sync}
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1].split(","), sys.argv[2] if len(sys.argv) > 2 else None)
