"""tf.data input pipelines: decode/resize/augment, and the P×K identity sampler.

Images leave every pipeline as float32 RGB in 0..255, [H, W, 3]; the models scale them
themselves (see `tfreid.models.preprocess.ImagePreprocess`).

P×K batches (Hermans et al. 2017, "In Defense of the Triplet Loss"): P identities × K images
each. Within an epoch identities are drawn without replacement; an identity with fewer than K
images contributes all of them plus draws with replacement; identities with fewer than 2 images
are dropped (they have no positive pair). All randomness comes from the `seed` argument.
"""

from __future__ import annotations

import os
import warnings
from typing import Sequence

import numpy as np
import tensorflow as tf

from tfreid import images

DEFAULT_SIZE = (256, 128)
CROP_PADDING = 10


def read_and_resize(path: tf.Tensor, size: Sequence[int] = DEFAULT_SIZE) -> tf.Tensor:
    """Reads an image file inside tf.data (decoded by `tfreid.images`) and resizes it.

    Args:
      path: scalar string tensor, the file.
      size: (H, W) of the output.

    Returns:
      float32 [H, W, 3] RGB in 0..255.
    """
    return images.resize(images.tf_read_image(path), size)


def load_image(path: str | os.PathLike, size: Sequence[int] = DEFAULT_SIZE) -> tf.Tensor:
    """Reads one image file (eager helper).

    Args:
      path: the image file.
      size: (H, W) of the output.

    Returns:
      float32 [H, W, 3] RGB in 0..255.

    Raises:
      FileNotFoundError: no such file.
      ValueError: the file cannot be decoded as an image (naming it).
    """
    return images.resize(images.read_image(path), size)


def augment(image: tf.Tensor, seed: tf.Tensor, padding: int = CROP_PADDING) -> tf.Tensor:
    """Random horizontal flip, then zero-pad by `padding` pixels and crop back at random.

    Args:
      image: float32 [H, W, C].
      seed: int32/int64 [2] stateless seed (same seed -> same augmentation).
      padding: pixels of zero padding on each side before the crop.

    Returns:
      float32 [H, W, C].
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
    shape = tf.shape(image)
    image = tf.image.stateless_random_flip_left_right(image, seeds[0])
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
    cropped = tf.image.stateless_random_crop(padded, shape, seeds[1])
    return tf.ensure_shape(cropped, image.shape)


def _check_paths(paths: Sequence[str]) -> list[str]:
    paths = [os.fspath(p) for p in paths]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {len(paths)} image files do not exist, "
                                f"e.g. {missing[0]!r}")
    return paths


def _images_from_indices(index_ds: tf.data.Dataset, paths, labels, size, augment_images: bool,
                         seed: int, batch_size: int) -> tf.data.Dataset:
    """Flat dataset of indices -> batches of (images [B, H, W, 3], labels [B])."""
    paths_t = tf.constant(paths, tf.string)
    labels_t = tf.constant(np.asarray(labels, np.int64))

    def load(position, index):
        image = read_and_resize(tf.gather(paths_t, index), size)
        if augment_images:
            image = augment(image, tf.stack([tf.constant(seed, tf.int64), position]))
        return image, tf.gather(labels_t, index)

    ds = index_ds.enumerate().map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=False).prefetch(tf.data.AUTOTUNE)


def image_dataset(paths: Sequence[str], labels, size: Sequence[int] = DEFAULT_SIZE,
                  batch_size: int = 64, augment: bool = False, shuffle: bool = False,
                  seed: int = 0) -> tf.data.Dataset:
    """One pass over images in order (or shuffled), e.g. for feature extraction.

    Args:
      paths: n image files.
      labels: [n] int labels (e.g. pids) carried along.
      size: (H, W).
      batch_size: images per batch (the last batch may be smaller).
      augment: apply `augment` (flip + pad/crop), seeded by `seed` and the image position.
      shuffle: shuffle the order once per iteration, seeded.
      seed: seed of the shuffle and augmentation.

    Returns:
      Dataset of (images float32 [B, H, W, 3] in 0..255, labels int64 [B]).
    """
    paths = _check_paths(paths)
    labels = np.asarray(labels)
    if labels.shape != (len(paths),):
        raise ValueError(f"labels must have shape [{len(paths)}], got {labels.shape}")
    index_ds = tf.data.Dataset.range(len(paths))
    if shuffle:
        index_ds = index_ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=False)
    return _images_from_indices(index_ds, paths, labels, size, augment, seed, batch_size)


class PKSampler:
    """Index batches of P identities × K samples; pure numpy, deterministic per (seed, epoch).

    Args:
      pids: [n] identity of each sample.
      p: identities per batch.
      k: samples per identity.
      seed: base seed; epoch e uses `np.random.default_rng([seed, e])`.

    Attributes:
      ids: the identities kept (at least 2 samples), sorted.
      dropped: identities dropped for having a single sample.
      steps_per_epoch: len(ids) // p.
    """

    def __init__(self, pids, p: int = 32, k: int = 4, seed: int = 0):
        pids = np.asarray(pids)
        if pids.ndim != 1:
            raise ValueError(f"pids must be a 1-d array, got shape {pids.shape}")
        if p < 1 or k < 2:
            raise ValueError(f"P×K sampling needs p >= 1 and k >= 2, got p={p}, k={k}")
        self.p, self.k, self.seed = int(p), int(k), int(seed)
        ids, counts = np.unique(pids, return_counts=True)
        self.ids = ids[counts >= 2]
        self.dropped = ids[counts < 2]
        self._members = {pid: np.flatnonzero(pids == pid) for pid in self.ids}
        if len(self.dropped):
            warnings.warn(f"P×K sampler: dropped {len(self.dropped)} of {len(ids)} identities "
                          "with fewer than 2 images", stacklevel=2)
        if len(self.ids) < self.p:
            raise ValueError(f"P×K sampler needs at least p={self.p} identities with 2+ images, "
                             f"found {len(self.ids)}")
        self.steps_per_epoch = len(self.ids) // self.p

    def epoch(self, epoch: int) -> np.ndarray:
        """Returns int64 [steps_per_epoch, p * k]: each row P blocks of K same-id indices."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        order = rng.permutation(self.ids)[:self.steps_per_epoch * self.p]
        rows = []
        for pid in order:
            members = self._members[pid]
            if len(members) >= self.k:
                rows.append(rng.choice(members, self.k, replace=False))
            else:  # all of them, topped up with replacement
                extra = rng.choice(members, self.k - len(members), replace=True)
                rows.append(rng.permutation(np.concatenate([members, extra])))
        return np.concatenate(rows).reshape(self.steps_per_epoch, self.p * self.k).astype(np.int64)

    def batches(self, epochs: int | None = None):
        """Yields int64 [p * k] index batches, epoch after epoch (forever if epochs is None)."""
        epoch = 0
        while epochs is None or epoch < epochs:
            yield from self.epoch(epoch)
            epoch += 1


def steps_per_epoch(pids, p: int = 32) -> int:
    """Number of P×K batches in one epoch: (identities with 2+ samples) // p."""
    ids, counts = np.unique(np.asarray(pids), return_counts=True)
    return int((counts >= 2).sum()) // int(p)


def _index_dataset(sampler: PKSampler, epochs: int | None) -> tf.data.Dataset:
    return tf.data.Dataset.from_generator(
        lambda: sampler.batches(epochs),
        output_signature=tf.TensorSpec([sampler.p * sampler.k], tf.int64))


def pk_dataset(paths: Sequence[str], pids, p: int = 32, k: int = 4,
               size: Sequence[int] = DEFAULT_SIZE, augment: bool = True, seed: int = 0,
               epochs: int | None = None) -> tf.data.Dataset:
    """P×K batches of images for metric-learning losses.

    Args:
      paths: n image files.
      pids: [n] int identity labels (returned as given; relabel first if a classifier needs
        contiguous labels).
      p, k: identities per batch, images per identity.
      size: (H, W).
      augment: flip + pad-10/random-crop, seeded by `seed` and the image's position.
      seed: seed of identity/image draws and augmentation; same seed -> same batches.
      epochs: number of epochs (steps_per_epoch batches each), or None for an infinite stream.

    Returns:
      Dataset of (images float32 [p*k, H, W, 3] in 0..255, pids int64 [p*k]); rows come in
      blocks of k images of one identity.
    """
    paths = _check_paths(paths)
    pids = np.asarray(pids)
    if pids.shape != (len(paths),):
        raise ValueError(f"pids must have shape [{len(paths)}], got {pids.shape}")
    sampler = PKSampler(pids, p, k, seed)
    index_ds = _index_dataset(sampler, epochs).unbatch()
    return _images_from_indices(index_ds, paths, pids, size, augment, seed, p * k)


def pk_feature_dataset(features: np.ndarray, pids, p: int = 32, k: int = 4, seed: int = 0,
                       epochs: int | None = None) -> tf.data.Dataset:
    """P×K batches over precomputed feature arrays (e.g. stripe features of the LSTM models).

    Args:
      features: [n, ...] array (kept in host memory, not copied into the graph).
      pids: [n] int identity labels.
      p, k, seed, epochs: as in `pk_dataset`.

    Returns:
      Dataset of (features [p*k, ...] of features.dtype, pids int64 [p*k]).
    """
    features = np.asarray(features)
    pids = np.asarray(pids)
    if features.ndim < 1 or pids.shape != (features.shape[0],):
        raise ValueError(f"pids must have shape [{features.shape[0] if features.ndim else 0}] "
                         f"to match features {features.shape}, got {pids.shape}")
    sampler = PKSampler(pids, p, k, seed)
    pids64 = pids.astype(np.int64)

    def gen():
        for index in sampler.batches(epochs):
            yield features[index], pids64[index]

    return tf.data.Dataset.from_generator(gen, output_signature=(
        tf.TensorSpec((p * k,) + features.shape[1:], tf.as_dtype(features.dtype)),
        tf.TensorSpec([p * k], tf.int64))).prefetch(2)
