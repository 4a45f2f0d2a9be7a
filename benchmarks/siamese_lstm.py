"""Cost of the siamese LSTM pieces at CUHK03 pair-1 size.

Usage:
  python benchmarks/siamese_lstm.py [--images 7239 --ids 743 --rows 40 --dim 674 --hidden 50
                                     --steps 10 --skip_mining]

1. Hard-negative mining (tfreid.data.pairs.mine_pairs) on random features [images, rows, dim]
   with `ids` identities, half of each identity's images in each of two cameras: wall time and
   pair counts.
2. One siamese training step (100 pairs, contrastive loss, RMSProp) in a tf.function, for the
   LSTM model in both multi-scale modes (24/11/5 rows) and the 1-layer MLP baseline: time to
   trace + first step, then the median of --steps steps; the implied epoch time for the mined
   pair count.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfreid.data.pairs import mine_pairs  # noqa: E402
from tfreid.losses import contrastive_pair_loss  # noqa: E402
from tfreid.models.mlp_baseline import build_stripe_mlp  # noqa: E402
from tfreid.models.optimizer import siamese_optimizer  # noqa: E402
from tfreid.models.siamese import build_siamese  # noqa: E402
from tfreid.models.stripe_lstm import build_stripe_lstm  # noqa: E402


def _train_step_times(model, rows, dim, steps):
    opt = siamese_optimizer(1e-3)
    rng = np.random.default_rng(0)
    xp = tf.constant(rng.normal(size=(100, rows, dim)).astype(np.float32))
    xq = tf.constant(rng.normal(size=(100, rows, dim)).astype(np.float32))
    y = tf.constant(rng.integers(0, 2, 100).astype(np.float32))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(contrastive_pair_loss(y, model([xp, xq])))
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_weights), model.trainable_weights))
        return loss

    start = time.perf_counter()
    step().numpy()
    first = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step().numpy()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=7239)
    p.add_argument("--ids", type=int, default=743)
    p.add_argument("--rows", type=int, default=40)
    p.add_argument("--dim", type=int, default=674)
    p.add_argument("--hidden", type=int, default=50)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--skip_mining", action="store_true")
    args = p.parse_args()
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, TF {tf.__version__}")

    num_pairs = None
    if not args.skip_mining:
        rng = np.random.default_rng(0)
        pids = np.sort(rng.integers(0, args.ids, args.images))
        camids = 1 + (np.arange(args.images) % 2)
        feats = rng.random((args.images, args.rows, args.dim), dtype=np.float32)
        start = time.perf_counter()
        pairs = mine_pairs(feats, pids, camids, seed=0)
        took = time.perf_counter() - start
        num_pairs = len(pairs)
        print(f"mining: {args.images} images x {args.rows * args.dim} features: {took:.1f} s, "
              f"{pairs.num_positive} positive + {pairs.num_negative} negative pairs")
        del feats

    scales = (24, 11, 5) if args.rows == 40 else None
    models = {
        "lstm per_scale": build_stripe_lstm(args.rows, args.dim, args.hidden, scales=scales, mode="per_scale"),
        "lstm one_sequence": build_stripe_lstm(args.rows, args.dim, args.hidden, scales=scales,
                                               mode="one_sequence"),
        "mlp 1 layer": build_stripe_mlp(args.rows, args.dim, 1, hidden_units=args.hidden),
    }
    for name, emb in models.items():
        first, step = _train_step_times(build_siamese(emb), args.rows, args.dim, args.steps)
        epoch = f", epoch of {num_pairs} pairs ~ {step * num_pairs / 100 / 60:.1f} min" if num_pairs else ""
        print(f"{name:18s} {emb.count_params():>10,d} params: trace+first step {first:.1f} s, "
              f"step (100 pairs) {1000 * step:.0f} ms{epoch}")


if __name__ == "__main__":
    main()
