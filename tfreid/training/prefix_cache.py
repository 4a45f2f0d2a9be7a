"""Cached feature maps of a frozen backbone prefix, for partial fine-tuning on a CPU.

`CNNTrainConfig.train_from` trains only the top of a CNN embedding model (see
`tfreid.models.split`). The frozen prefix is then a fixed function of the image, so it runs once
per training image and per view (the image and its horizontal flip), and training reads its
maps from memory.

Cache file (`<run>/cache/prefix_maps.npz`, written atomically: a killed run never leaves half a
file):
  maps  float16 [n, 2, h, w, c]: prefix output of training image i (view 0) and of its flip
        (view 1). float16 halves memory and disk; its rounding (relative 2^-11) is far below
        the noise of training.
  key   JSON text of what the maps are a function of: cut layer, image size, the ordered image
        list (paths, not file contents), a digest of the prefix's weights, format. A file whose key differs is computed
        again and replaced, never reused.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfreid.data.pipeline import image_dataset, pk_feature_dataset
from tfreid.progress import bar as progress_bar

CACHE_FORMAT = 1
CACHE_DTYPE = np.float16
VIEWS = 2  # the image, its horizontal flip


def cache_key(prefix: keras.Model, paths: Sequence[str], size: Sequence[int], cut: str) -> dict:
    """What the cached maps depend on: a JSON-friendly dict (equal dicts = reusable maps)."""
    images = hashlib.sha256("\n".join(str(p) for p in paths).encode()).hexdigest()
    weights = hashlib.sha256()
    for w in prefix.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(w))
        weights.update(str(value.shape).encode() + value.tobytes())
    return {"format": CACHE_FORMAT, "cut": cut, "size": [int(s) for s in size],
            "num_images": len(paths), "images_sha256": images,
            "prefix_weights_sha256": weights.hexdigest(), "dtype": np.dtype(CACHE_DTYPE).name,
            "views": ["image", "horizontal_flip"]}


def compute_prefix_maps(prefix: keras.Model, paths: Sequence[str], size: Sequence[int],
                        batch_size: int = 32, log: Callable[[str], None] = print) -> np.ndarray:
    """Runs the prefix (inference mode) over every image and its horizontal flip.

    Args:
      prefix: images float32 [B, H, W, 3] 0..255 -> maps [B, h, w, c].
      paths: n image files (read and resized by the project's pipeline, no augmentation).
      size: (H, W).
      batch_size: images per forward pass (2 x batch_size views).

    Returns:
      float16 [n, 2, h, w, c]; [:, 0] from the images, [:, 1] from their flips.
    """
    shape = tuple(prefix.outputs[0].shape[1:])
    out = np.empty((len(paths), VIEWS) + shape, CACHE_DTYPE)
    height, width = size
    run = tf.function(lambda x: prefix(x, training=False),
                      input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32)])
    ds = image_dataset(list(paths), np.zeros(len(paths), np.int64), size, batch_size)
    progbar = progress_bar(len(paths), "image", log)
    start = 0
    for images, _ in ds:
        n = int(images.shape[0])
        maps = run(tf.concat([images, tf.image.flip_left_right(images)], axis=0)).numpy()
        out[start:start + n, 0] = maps[:n]
        out[start:start + n, 1] = maps[n:]
        start += n
        progbar.update(start)
    return out


def _read(cache_file: Path, key: dict, log: Callable[[str], None]) -> np.ndarray | None:
    """The cached maps if the file exists and its key equals `key`, else None."""
    if not cache_file.exists():
        return None
    try:
        with np.load(cache_file, allow_pickle=False) as z:
            stored = json.loads(str(z["key"]))
            if stored != key:
                changed = sorted(k for k in set(stored) | set(key) if stored.get(k) != key.get(k))
                log(f"prefix cache {cache_file} is stale ({', '.join(changed)} changed); "
                    "computing it again")
                return None
            return z["maps"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        log(f"prefix cache {cache_file} is unreadable ({type(e).__name__}: {e}); computing it again")
        return None


def load_or_compute(prefix: keras.Model, paths: Sequence[str], size: Sequence[int], cut: str,
                    cache_file: str | Path, batch_size: int = 32,
                    log: Callable[[str], None] = print) -> np.ndarray:
    """The prefix maps of `paths` (see `compute_prefix_maps`), from `cache_file` when its key
    (`cache_key`) matches, else computed and written there atomically.

    Returns:
      float16 [n, 2, h, w, c].
    """
    cache_file = Path(cache_file)
    key = cache_key(prefix, paths, size, cut)
    maps = _read(cache_file, key, log)
    if maps is not None:
        log(f"prefix maps {maps.shape} read from {cache_file}")
        return maps
    shape = (len(paths), VIEWS) + tuple(prefix.outputs[0].shape[1:])
    megabytes = np.prod(shape) * np.dtype(CACHE_DTYPE).itemsize / 2**20
    log(f"computing prefix maps {shape} (up to {cut!r}, {megabytes:.0f} MB) into {cache_file}")
    maps = compute_prefix_maps(prefix, paths, size, batch_size, log)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_suffix(".tmp.npz")
    np.savez(tmp, maps=maps, key=np.array(json.dumps(key, sort_keys=True)))
    tmp.replace(cache_file)
    return maps


def pk_view_dataset(maps: np.ndarray, labels, p: int, k: int, seed: int) -> tf.data.Dataset:
    """Endless P x K batches of cached maps, each sample in a random one of its views.

    Args:
      maps: [n, 2, h, w, c] (see `compute_prefix_maps`).
      labels: [n] int identities.
      p, k: identities per batch, samples per identity (`PKSampler`, drawn with `seed`).
      seed: seed of the identity/sample draws and of the view choices.

    Returns:
      Dataset of (maps float32 [p*k, h, w, c], labels int64 [p*k]).
    """
    def pick(step, batch):
        both, batch_labels = batch
        views = tf.random.stateless_uniform([p * k], tf.stack([tf.constant(seed, tf.int64), step]),
                                            maxval=VIEWS, dtype=tf.int64)
        return tf.cast(tf.gather(both, views, batch_dims=1), tf.float32), batch_labels

    return pk_feature_dataset(maps, labels, p, k, seed).enumerate().map(pick)
