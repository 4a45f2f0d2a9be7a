"""One Keras training step of a CNN embedding, with and without XLA (`jit_compile`).

The issue's reference (batch 128 at 256x128, MobileNetV2, batch-hard, 2 CPU cores): Keras
4.0 s per step, PyTorch 2.x 9.3-10.1 s, Keras with jit_compile=True 32.9 s, which is why the CPU
default stays off XLA. This script keeps that measurement reproducible at a small default size
so `make bench` stays short; the reference size is --batch=128 --height=256 --width=128.

Usage: python benchmarks/train_step.py [--batch 32] [--height 128] [--width 64] [--steps 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from tfreid import losses
from tfreid.models.embedding import build_embedding_model


def median_step_seconds(jit: bool, batch: int, size, steps: int) -> tuple[float, float]:
    """(first step incl. tracing/compilation, median of the next `steps`) in seconds."""
    keras.utils.set_random_seed(0)
    model = build_embedding_model("mobilenetv2", (*size, 3), 256, weights=None)
    optimizer = keras.optimizers.Adam(1e-4)
    optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(0, 255, (batch, *size, 3)).astype(np.float32))
    labels = tf.constant(np.repeat(np.arange(batch // 4), 4).astype(np.int32))

    @tf.function(jit_compile=jit)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = losses.batch_hard_triplet_loss(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    start = time.perf_counter()
    step(images, labels).numpy()
    first = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step(images, labels).numpy()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    size = (args.height, args.width)
    print(f"MobileNetV2 + batch-hard, batch {args.batch} at {size}, median of {args.steps} steps")
    for jit in (False, True):
        first, median = median_step_seconds(jit, args.batch, size, args.steps)
        print(f"  jit_compile={jit!s:5}: first step {first:6.1f} s, then {median:6.2f} s per step",
              flush=True)


if __name__ == "__main__":
    main()
