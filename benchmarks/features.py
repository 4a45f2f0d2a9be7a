"""Speed of the hand-crafted features: LOMO and Colour Names images/s, peak memory, and the
time to featurise the whole CUHK03 pair-1 folder (when $TFREID_DATA is set).

  python benchmarks/features.py [--batch_size=64] [--repeats=10] [--skip_dataset]

Prints measured figures only; the machine's load average is printed too, because the numbers
are only comparable on an otherwise idle machine.
"""

import os
import platform
import resource
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

from tfreid import paths
from tfreid.features import colornames, extract, lomo

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch_size", 64, "Images per batch.")
flags.DEFINE_integer("repeats", 10, "Timed batches per feature (after 2 warm-up batches).")
flags.DEFINE_integer("height", 128, "Input height.")
flags.DEFINE_integer("width", 48, "Input width.")
flags.DEFINE_bool("skip_dataset", False, "Skip the whole-folder timing.")
flags.DEFINE_integer("seed", 0, "Seed of the random images and codebook.")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # Linux: KiB


def _images_per_second(fn, images) -> tuple[float, float]:
    for _ in range(2):
        fn(images).numpy()
    times = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        fn(images).numpy()
        times.append(time.perf_counter() - start)
    median = float(np.median(times))
    return len(images) / median, median


def main(argv):
    del argv
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"TF {tf.__version__}, GPUs {len(tf.config.list_physical_devices('GPU'))}, "
          f"load average {os.getloadavg()[0]:.2f}")
    rng = np.random.default_rng(FLAGS.seed)
    images = tf.constant(rng.integers(0, 256, (FLAGS.batch_size, FLAGS.height, FLAGS.width, 3)),
                         tf.uint8)
    base = _peak_rss_mb()
    rate, seconds = _images_per_second(tf.function(lambda x: lomo(x).flat), images)
    print(f"LOMO        batch {FLAGS.batch_size} {FLAGS.height}x{FLAGS.width}: {rate:7.1f} images/s "
          f"({1000 * seconds:.0f} ms/batch), peak RSS {_peak_rss_mb():.0f} MB "
          f"(+{_peak_rss_mb() - base:.0f} MB)")

    data = paths.data_root(required=False)
    if data is not None and (data / "colornames").is_dir():
        table, source = colornames.load_w2c(data_dir=data), "real w2c"
    else:
        table = rng.random((colornames.W2C_ROWS, colornames.NUM_COLOR_NAMES)).astype(np.float32)
        table, source = table / table.sum(1, keepdims=True), "random table"
    codebook = rng.dirichlet(np.ones(colornames.NUM_COLOR_NAMES), 350).astype(np.float32)
    table_t, codebook_t = tf.constant(table), tf.constant(codebook)
    base = _peak_rss_mb()
    rate, seconds = _images_per_second(
        tf.function(lambda x: colornames.color_names_bow(x, table_t, codebook_t)), images)
    print(f"ColorNames  batch {FLAGS.batch_size} {FLAGS.height}x{FLAGS.width} (-> 128x64, 350 words, "
          f"{source}): {rate:7.1f} images/s ({1000 * seconds:.0f} ms/batch), peak RSS "
          f"{_peak_rss_mb():.0f} MB (+{_peak_rss_mb() - base:.0f} MB)")

    if FLAGS.skip_dataset or data is None:
        print("whole-folder timing skipped" + ("" if data else " ($TFREID_DATA not set)"))
        return
    from tfreid.data import datasets
    split = datasets.build("cuhk03_pair1", data)
    start = time.perf_counter()
    sample = [r.path for r in split.train[::40]]
    codebook = extract.fit_cn_codebook(sample, table, num_images=len(sample), seed=FLAGS.seed,
                                       max_samples=50_000)
    print(f"codebook: 350 words from {len(sample)} train images in "
          f"{time.perf_counter() - start:.1f} s")
    for features in (["lomo"], ["lomo", "cn"]):
        start = time.perf_counter()
        splits, _ = extract.extract_dataset(split, features, FLAGS.batch_size, table=table,
                                            codebook=codebook, progress=False)
        elapsed = time.perf_counter() - start
        total = sum(len(s["paths"]) for s in splits.values())
        print(f"CUHK03 pair-1 folder, {'+'.join(features):8s}: {total} images in {elapsed:.1f} s "
              f"({total / elapsed:.0f} images/s, decode + resize + features), peak RSS "
              f"{_peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    app.run(main)
