"""One Keras training step of a CNN embedding, with and without XLA (`jit_compile`), beside
the same step in PyTorch when it is installed.

The issue's reference (batch 128 at 256x128, MobileNetV2, batch-hard, 2 CPU cores): Keras
4.0 s per step, PyTorch 2.x 9.3-10.1 s, Keras with jit_compile=True 32.9 s, which is why the CPU
default stays off XLA. This script keeps that measurement reproducible at a small default size
so `make bench` stays short; the reference size is --batch=128 --height=256 --width=128.
The PyTorch step (torchvision's MobileNetV2 features, average pooling, a 1280 -> 256 linear
layer, the same batch-hard loss on squared distances, Adam) runs when `torch` and `torchvision`
import (they are not tfreid dependencies: `pip install torch torchvision`); it is skipped, with
a line saying so, otherwise.

With --train_from=LAYER[,LAYER...] it instead times the partial fine-tuning step of
`--train_from` (tools/train.py): only the network from LAYER up is trained, on its cached input
maps, so one step is the top's forward and backward pass; each cut is printed beside the whole
network, as a ratio (the measurement behind the CNN recipe's cut and input size).

Usage: python benchmarks/train_step.py [--batch 32] [--height 128] [--width 64] [--steps 3]
       python benchmarks/train_step.py --batch=128 --train_from=block_13_expand,block_6_expand
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import json
import subprocess
import sys

import numpy as np


def median_step_seconds(jit: bool, batch: int, size, steps: int,
                        train_from: str | None = None) -> tuple[float, float]:
    """(first step incl. tracing/compilation, median of the next `steps`) in seconds; with
    train_from, of the trainable top alone on random maps of its input shape."""
    import keras
    import tensorflow as tf

    from tfreid import losses
    from tfreid.models.embedding import build_embedding_model
    from tfreid.models.split import split_embedding_model

    keras.utils.set_random_seed(0)
    model = build_embedding_model("mobilenetv2", (*size, 3), 256, weights=None)
    rng = np.random.default_rng(0)
    if train_from:
        model = split_embedding_model(model, train_from)[1]
        images = tf.constant(rng.normal(0, 1, (batch, *model.inputs[0].shape[1:])).astype(np.float32))
    else:
        images = tf.constant(rng.uniform(0, 255, (batch, *size, 3)).astype(np.float32))
    optimizer = keras.optimizers.Adam(1e-4)
    optimizer.build(model.trainable_variables)
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


def torch_median_step_seconds(batch: int, size, steps: int) -> tuple[float, float] | None:
    """As median_step_seconds, for the same network and loss in PyTorch; None without torch.

    Runs in a fresh process: torchvision and TensorFlow do not load into one process.
    """
    command = [sys.executable, __file__, "--torch_only", f"--batch={batch}", f"--height={size[0]}",
               f"--width={size[1]}", f"--steps={steps}"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the PyTorch step failed:\n{done.stderr[-2000:]}")
    timed = json.loads(done.stdout.strip().splitlines()[-1])
    return None if timed is None else tuple(timed)


def _torch_step_seconds(batch: int, size, steps: int) -> tuple[float, float] | None:
    try:
        import torch
        import torchvision
    except ImportError:
        return None
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    model = torch.nn.Sequential(torchvision.models.mobilenet_v2(weights=None).features,
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(1280, 256))
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), 1e-4)
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.uniform(0, 1, (batch, 3, *size)).astype(np.float32))
    labels = torch.from_numpy(np.repeat(np.arange(batch // 4), 4))

    def step():
        emb = model(images)
        dist = torch.cdist(emb, emb).square()
        same = labels[:, None] == labels[None, :]
        hardest_positive = (dist * same).max(dim=1).values
        hardest_negative = dist.masked_fill(same, float("inf")).min(dim=1).values
        loss = torch.relu(hardest_positive - hardest_negative + 1.0).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss)

    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--train_from", default="", help="comma-separated cut layers")
    parser.add_argument("--torch_only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = (args.height, args.width)
    if args.torch_only:  # the PyTorch arm's own process: one JSON line, (first, median) or null
        print(json.dumps(_torch_step_seconds(args.batch, size, args.steps)))
        return
    if args.train_from:
        print(f"MobileNetV2 + batch-hard, batch {args.batch} at {size}, median of {args.steps} "
              "steps, no XLA")
        _, whole = median_step_seconds(False, args.batch, size, args.steps)
        print(f"  whole network          {whole:6.2f} s per step", flush=True)
        for cut in args.train_from.split(","):
            _, top = median_step_seconds(False, args.batch, size, args.steps, cut)
            print(f"  from {cut:17s} {top:6.2f} s per step  ({whole / top:4.1f}x faster)",
                  flush=True)
        return
    print(f"MobileNetV2 + batch-hard, batch {args.batch} at {size}, median of {args.steps} steps")
    keras_plain = None
    for jit in (False, True):
        first, median = median_step_seconds(jit, args.batch, size, args.steps)
        keras_plain = keras_plain or median
        print(f"  Keras jit_compile={jit!s:5}: first step {first:6.1f} s, then {median:6.2f} s per "
              f"step ({median / keras_plain:4.1f}x Keras plain)", flush=True)
    timed = torch_median_step_seconds(args.batch, size, args.steps)
    if timed is None:
        print("  PyTorch: not installed, skipped")
    else:
        first, median = timed
        print(f"  PyTorch              : first step {first:6.1f} s, then {median:6.2f} s per "
              f"step ({median / keras_plain:4.1f}x Keras plain)", flush=True)


if __name__ == "__main__":
    main()
