"""Forward + backward time of every tfreid loss, and of one MobileNetV2 training step.

Usage:
  python benchmarks/losses.py [--batch 128 --dim 256 --runs 30 --train_steps 3 --out results.json]

Each loss is timed inside one tf.function that returns the loss and its gradient with respect to
the embeddings [batch, dim] of a P x K batch (K = 4), after warm-up; the median of --runs calls is
reported. The training step is MobileNetV2 (weights=None, include_top=False) at --height x --width
+ global average pooling + Dense(dim), Adam, batch-hard loss, median of --train_steps steps after
one warm-up step. Printed ratios: Rank-Triplet / batch-hard (target <= 2) and Rank-Triplet as a
percentage of the training step (target < 5 %).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfreid import losses as L  # noqa: E402


def _median_time(fn, runs: int, warmup: int) -> float:
    for _ in range(warmup):
        _block(fn())
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        _block(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _block(out):
    # .numpy() forces the computation to finish before the clock stops.
    tf.nest.map_structure(lambda t: t.numpy(), out)


def loss_functions(num_ids: int, dim: int, seed: int):
    rng = np.random.default_rng(seed)
    logits_w = tf.constant(rng.normal(scale=0.05, size=(dim, num_ids)).astype(np.float32))
    return {
        "contrastive": lambda y, e: L.batch_contrastive_loss(y, e),
        "triplet": lambda y, e: L.triplet_loss(y, e),
        "batch_hard": lambda y, e: L.batch_hard_triplet_loss(y, e),
        "quadruplet": lambda y, e: L.quadruplet_loss(y, e),
        "classification": lambda y, e: L.classification_loss(y, tf.matmul(e, logits_w)),
        "rank_triplet_baseline": lambda y, e: L.rank_triplet_loss(y, e, weighted=False),
        "rank_triplet": lambda y, e: L.rank_triplet_loss(y, e),
        "ranking_stats": None,  # forward only, the trainer's online index
    }


def time_losses(batch: int, dim: int, k: int, runs: int, seed: int) -> dict:
    """Median and minimum seconds per loss; losses are timed in interleaved rounds so that a
    change of machine load affects them alike."""
    rng = np.random.default_rng(seed)
    num_ids = batch // k
    labels = tf.constant(np.repeat(np.arange(num_ids), k)[rng.permutation(batch)].astype(np.int32))
    emb = tf.constant(rng.normal(size=(batch, dim)).astype(np.float32))
    steps = {}
    for name, fn in loss_functions(num_ids, dim, seed).items():
        if fn is None:
            steps[name] = tf.function(lambda: L.batch_ranking_stats(labels, emb))
            continue

        def body(fn=fn):
            with tf.GradientTape() as tape:
                tape.watch(emb)
                value = fn(labels, emb)
            return value, tape.gradient(value, emb)
        steps[name] = tf.function(body)
    for step in steps.values():  # trace and warm up
        for _ in range(3):
            _block(step())
    times = {name: [] for name in steps}
    for _ in range(runs):
        for name, step in steps.items():
            start = time.perf_counter()
            _block(step())
            times[name].append(time.perf_counter() - start)
    results = {name: {"median": statistics.median(t), "min": min(t)} for name, t in times.items()}
    for name, r in results.items():
        print(f"  {name:24s} median {r['median'] * 1e3:8.2f} ms   min {r['min'] * 1e3:8.2f} ms", flush=True)
    return results


def time_train_step(batch: int, dim: int, k: int, height: int, width: int, steps: int, seed: int) -> float:
    keras.utils.set_random_seed(seed)
    backbone = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(height, width, 3))
    x = keras.layers.GlobalAveragePooling2D()(backbone.output)
    model = keras.Model(backbone.input, keras.layers.Dense(dim)(x))
    opt = keras.optimizers.Adam(1e-4)
    rng = np.random.default_rng(seed)
    images = tf.constant(rng.uniform(-1, 1, size=(batch, height, width, 3)).astype(np.float32))
    labels = tf.constant(np.repeat(np.arange(batch // k), k).astype(np.int32))

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            loss = L.batch_hard_triplet_loss(labels, model(images, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return _median_time(train_step, steps, warmup=1)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--k", type=int, default=4, help="images per identity in the P x K batch")
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--train_steps", type=int, default=3, help="timed MobileNetV2 steps (0 = skip)")
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="", help="optional JSON file for the figures")
    args = p.parse_args(argv)
    if args.batch % args.k:
        p.error(f"--batch {args.batch} must be a multiple of --k {args.k}")

    devices = [d.device_type for d in tf.config.list_physical_devices()]
    print(f"tfreid loss benchmark: batch {args.batch} x {args.dim}-d, P x K with K = {args.k}, "
          f"median of {args.runs}; TF {tf.__version__}, devices {devices}, {os.cpu_count()} CPU cores, "
          f"{platform.processor() or platform.machine()}")
    print("forward + backward per loss (ranking_stats: forward only):")
    res = {"losses_s": time_losses(args.batch, args.dim, args.k, args.runs, args.seed)}
    rt, bh = res["losses_s"]["rank_triplet"]["median"], res["losses_s"]["batch_hard"]["median"]
    rt_min, bh_min = res["losses_s"]["rank_triplet"]["min"], res["losses_s"]["batch_hard"]["min"]
    res["rank_triplet_over_batch_hard"] = {"median": rt / bh, "min": rt_min / bh_min}
    print(f"Rank-Triplet / batch-hard: {rt / bh:.2f}x on medians, {rt_min / bh_min:.2f}x on minima "
          "(target <= 2x)")
    if args.train_steps > 0:
        step = time_train_step(args.batch, args.dim, args.k, args.height, args.width, args.train_steps, args.seed)
        res["train_step_s"] = step
        res["rank_triplet_percent_of_step"] = 100.0 * rt / step
        print(f"MobileNetV2 training step ({args.height}x{args.width}, batch {args.batch}, Adam, batch-hard): "
              f"{step:.2f} s (median of {args.train_steps})")
        print(f"Rank-Triplet as % of the training step: {100.0 * rt / step:.3f}% (target < 5%)")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), **res}, f, indent=2)
    return res


if __name__ == "__main__":
    main()
