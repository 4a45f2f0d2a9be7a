"""Embedding throughput of an exported model: images/s at batch 64, end to end from uint8 images.

Exports a zoo model or a run folder as a TF Serving SavedModel into a temporary folder, loads it
with `tf.saved_model.load` (as TF Serving would, no tfreid code in the call path) and times:
  - serving_default: uint8 images [64, H, W, 3] (random, --height x --width, default 160x64,
    CUHK03-like) cast to float32 and embedded (all preprocessing in the graph);
  - embed_encoded: the same images as JPEG bytes (decode + resize + features in the graph);
  - EmbeddingModel.embed (the Python API, list of uint8 images) for comparison.
Best of --repeats runs after one warm-up call each.

Usage:
  python benchmarks/export.py --zoo=siamese_lstm_cuhk03
  python benchmarks/export.py --run=runs/siamese_lstm_cuhk03 [--batch 64] [--repeats 3]
  python benchmarks/export.py          # every zoo model whose weights are present (make bench)
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
import time

import numpy as np


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up: tracing, graph optimisation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--zoo", help="zoo model name")
    group.add_argument("--run", help="tools/train.py run folder")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--height", type=int, default=160)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from tfreid import zoo

    if args.run:
        models = [zoo.from_run(args.run)]
    elif args.zoo:
        models = [zoo.load(args.zoo)]
    else:
        models = []
        for name in zoo.list():
            try:
                models.append(zoo.load(name))
            except zoo.WeightsNotPresentError:
                print(f"{name}: weights not present here (recipe only), skipped")
        if not models:
            print("no zoo model with weights present: nothing to measure")
    for model in models:
        measure(model, args)


def measure(model, args) -> None:
    """Exports `model`, then prints images/s of both signatures and of the Python API."""
    import tensorflow as tf
    from tfreid import export

    rng = np.random.default_rng(args.seed)
    images = rng.integers(0, 256, (args.batch, args.height, args.width, 3)).astype(np.uint8)
    jpegs = tf.constant([tf.io.encode_jpeg(im, quality=95).numpy() for im in images])
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path = export.export_saved_model(model, tmp, "bench", version=1)
        export_s = time.perf_counter() - start
        loaded = tf.saved_model.load(str(path))
        serving = loaded.signatures["serving_default"]
        encoded = loaded.signatures["embed_encoded"]
        t_float = best_of(lambda: serving(images=tf.cast(tf.constant(images), tf.float32))
                          ["embedding"].numpy(), args.repeats)
        t_jpeg = best_of(lambda: encoded(images=jpegs)["embedding"].numpy(), args.repeats)
    t_api = best_of(lambda: model.embed(list(images), batch_size=args.batch), args.repeats)

    print(f"model {model.name} (dim {model.dim}, branches "
          f"{[(b.name, b.size) for b in model.pipeline.branches]}); export took {export_s:.1f} s")
    print(f"date {datetime.date.today()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPU cores visible, TensorFlow {tf.__version__}")
    print(f"batch {args.batch} of uint8 {args.height}x{args.width} images, best of {args.repeats}:")
    for label, seconds in (("SavedModel serving_default (uint8 -> float32)", t_float),
                           ("SavedModel embed_encoded (JPEG bytes)", t_jpeg),
                           ("EmbeddingModel.embed (Python API)", t_api)):
        print(f"  {label:48s} {args.batch / seconds:8.1f} images/s  ({1000 * seconds:.0f} ms/batch)")


if __name__ == "__main__":
    main()
