"""Seeded k-means (k-means++ initialisation, Lloyd iterations) in numpy, for BoW codebooks."""

from __future__ import annotations

import numpy as np


def _sq_distances(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """[n, d], [k, d] -> [n, k] squared Euclidean distances (clipped at 0)."""
    d = (x * x).sum(1)[:, None] - 2.0 * x @ centres.T + (centres * centres).sum(1)[None, :]
    return np.maximum(d, 0.0)


def kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): [n, d] -> [k, d] initial centres."""
    n = x.shape[0]
    centres = np.empty((k, x.shape[1]), x.dtype)
    centres[0] = x[rng.integers(n)]
    closest = np.square(x - centres[0]).sum(1)
    for i in range(1, k):
        cumulative = np.cumsum(closest, dtype=np.float64)
        # Draw proportionally to the squared distance; all points on centres: any point will do.
        index = (rng.integers(n) if cumulative[-1] <= 0 else
                 min(int(np.searchsorted(cumulative, rng.random() * cumulative[-1], "right")), n - 1))
        centres[i] = x[index]
        np.minimum(closest, np.square(x - centres[i]).sum(1), out=closest)
    return centres


def kmeans(x, k: int, seed: int = 0, max_iter: int = 50, tol: float = 1e-6,
           max_samples: int | None = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """Seeded k-means.

    Args:
      x: float [n, d] samples.
      k: number of clusters (<= n).
      seed: seed of the subsampling and the k-means++ draws.
      max_iter: Lloyd iterations at most.
      tol: stop when the relative decrease of the mean squared distance is below tol.
      max_samples: fit on a random subset of at most this many rows (None: all).

    Returns:
      (centres float32 [k, d], mean squared distance to the nearest centre after each iteration).

    Raises:
      ValueError: for fewer samples than clusters or non-finite samples.
    """
    x = np.asarray(x, np.float32)
    if x.ndim != 2:
        raise ValueError(f"kmeans expects samples [n, d], got shape {list(x.shape)}.")
    if not np.all(np.isfinite(x)):
        raise ValueError("kmeans: the samples hold non-finite values.")
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"kmeans: k={k} clusters need 1 <= k <= number of samples ({x.shape[0]}).")
    rng = np.random.default_rng(seed)
    if max_samples is not None and x.shape[0] > max_samples:
        x = x[rng.choice(x.shape[0], max_samples, replace=False)]
    centres = kmeans_plus_plus(x, k, rng)
    history = []
    for _ in range(max_iter):
        dist = _sq_distances(x, centres)
        labels = dist.argmin(1)
        nearest = dist[np.arange(x.shape[0]), labels]
        history.append(float(nearest.mean()))
        counts = np.bincount(labels, minlength=k)
        sums = np.stack([np.bincount(labels, weights=x[:, j], minlength=k)
                         for j in range(x.shape[1])], axis=1).astype(np.float32)
        empty = counts == 0
        centres = np.where(empty[:, None], centres, sums / np.maximum(counts, 1)[:, None])
        if empty.any():   # re-seed empty clusters with the worst-fitted samples
            worst = np.argsort(nearest)[::-1][: int(empty.sum())]
            centres[empty] = x[worst]
        if len(history) > 1 and history[-2] - history[-1] <= tol * max(history[-2], 1e-30):
            break
    return centres.astype(np.float32), np.asarray(history)


def fit_codebook(descriptors, num_words: int = 350, seed: int = 0, max_iter: int = 50,
                 max_samples: int | None = 100_000) -> np.ndarray:
    """Colour Names codebook by k-means on patch descriptors.

    Args:
      descriptors: float [n, 11] (or [..., 11], flattened) patch descriptors of training images.
      num_words: codebook size (350 as in the Market-1501 BoW baseline).
      seed, max_iter, max_samples: see `kmeans`.

    Returns:
      float32 [num_words, 11].
    """
    descriptors = np.asarray(descriptors, np.float32)
    descriptors = descriptors.reshape(-1, descriptors.shape[-1])
    centres, _ = kmeans(descriptors, num_words, seed=seed, max_iter=max_iter,
                        max_samples=max_samples)
    return centres
