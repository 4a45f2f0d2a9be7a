"""Siamese training pairs with hard negatives (Varior et al., ECCV 2016, Sec. 4.1).

Every positive pair is used, plus, for each image, twice as many negatives as it has positive
partners, chosen as its nearest other-identity images in the INPUT feature space (Euclidean on
the flattened features). Labels follow `tfreid.losses.contrastive_pair_loss`: 0 = same person,
1 = different.

Choices:
- Positives are unordered pairs {i, j} of the same pid taken once; with
  `cross_camera_positives=True` (default) only pairs across cameras count, as in CUHK03 where
  every positive of the protocol is a cross-camera match. An image's positive count p_i is the
  number of positive pairs it belongs to.
- Negatives are mined per anchor image, so the pair (i, j) can appear once mined for i and once
  for j; both copies are kept, which makes the per-image count exact (2 * p_i) and weights the
  pairs that are hard from both sides twice. Negatives may share the anchor's camera unless
  `cross_camera_negatives=True`. An image with no positive gets no negative.
- Distances are |a|^2 + |b|^2 - 2 a.b in float32 blocks of `block_size` rows, so memory stays
  at block_size x N floats (N ~ 7000 images of 27k-d LOMO: about 1.3 TFLOP, tens of seconds on
  two cores).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import tensorflow as tf

SAME, DIFFERENT = 0, 1


@dataclasses.dataclass(frozen=True)
class PairSet:
    """Index pairs into a feature array.

    Attributes:
      first, second: int64 [P] indices of the two images of each pair.
      label: int32 [P], 0 = same person, 1 = different.
    """

    first: np.ndarray
    second: np.ndarray
    label: np.ndarray

    def __len__(self) -> int:
        return int(self.label.shape[0])

    @property
    def num_positive(self) -> int:
        return int(np.sum(self.label == SAME))

    @property
    def num_negative(self) -> int:
        return int(np.sum(self.label == DIFFERENT))


def _flat_float32(features, name: str = "features") -> np.ndarray:
    x = np.asarray(features)
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be [N, ...] with N > 0, got shape {x.shape}")
    x = x.reshape(x.shape[0], -1)
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contain NaN or infinite values")
    return x


def _check_ids(n: int, pids, camids) -> tuple[np.ndarray, np.ndarray]:
    pids = np.asarray(pids).reshape(-1)
    camids = np.asarray(camids).reshape(-1)
    if pids.shape[0] != n or camids.shape[0] != n:
        raise ValueError(f"pids ({pids.shape[0]}) and camids ({camids.shape[0]}) must have one "
                         f"entry per feature row ({n})")
    return pids, camids


def positive_pairs(pids, camids, cross_camera: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """All unordered same-pid pairs (i < j), across cameras only if `cross_camera`.

    Returns:
      (first, second) int64 [P], sorted by (first, second).
    """
    pids = np.asarray(pids).reshape(-1)
    camids = np.asarray(camids).reshape(-1)
    firsts, seconds = [], []
    order = np.argsort(pids, kind="stable")
    bounds = np.flatnonzero(np.diff(pids[order])) + 1
    for group in np.split(order, bounds):
        if group.size < 2:
            continue
        group = np.sort(group)
        a, b = np.triu_indices(group.size, k=1)
        i, j = group[a], group[b]
        if cross_camera:
            keep = camids[i] != camids[j]
            i, j = i[keep], j[keep]
        firsts.append(i)
        seconds.append(j)
    if not firsts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    i, j = np.concatenate(firsts).astype(np.int64), np.concatenate(seconds).astype(np.int64)
    order = np.lexsort((j, i))
    return i[order], j[order]


def hard_negatives(space, pids, camids, counts, cross_camera: bool = False,
                   block_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """For each image i, its counts[i] nearest images of another pid (Euclidean in `space`).

    Args:
      space: [N, ...] features to measure distances in (flattened, float32).
      pids, camids: [N] identity and camera of each row.
      counts: int [N] negatives wanted per image (fewer when fewer candidates exist).
      cross_camera: only consider candidates from another camera.
      block_size: rows per distance block (memory ~ block_size * N * 4 bytes).

    Returns:
      (anchor, negative) int64 [M], grouped by anchor, nearest first.
    """
    x = _flat_float32(space, "space")
    n = x.shape[0]
    pids, camids = _check_ids(n, pids, camids)
    counts = np.asarray(counts, np.int64).reshape(-1)
    if counts.shape[0] != n or np.any(counts < 0):
        raise ValueError(f"counts must be {n} non-negative integers, got shape {counts.shape}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    sq = np.einsum("ij,ij->i", x, x)
    anchors, negatives = [], []
    for start in range(0, n, block_size):
        rows = np.arange(start, min(start + block_size, n))
        rows = rows[counts[rows] > 0]
        if rows.size == 0:
            continue
        d2 = sq[rows, None] + sq[None, :] - 2.0 * (x[rows] @ x.T)
        invalid = pids[rows, None] == pids[None, :]
        if cross_camera:
            invalid |= camids[rows, None] == camids[None, :]
        d2[invalid] = np.inf
        k = int(min(counts[rows].max(), n))
        cand = np.argpartition(d2, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (rows.size, 1))
        cand_d = np.take_along_axis(d2, cand, axis=1)
        order = np.lexsort((cand, cand_d), axis=1)  # by distance, ties by index
        cand = np.take_along_axis(cand, order, axis=1)
        cand_d = np.take_along_axis(cand_d, order, axis=1)
        for r, row in enumerate(rows):
            take = cand[r, :counts[row]]
            take = take[np.isfinite(cand_d[r, :counts[row]])]
            anchors.append(np.full(take.size, row, np.int64))
            negatives.append(take.astype(np.int64))
    if not anchors:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(anchors), np.concatenate(negatives)


def mine_pairs(features, pids, camids, *, negatives_per_positive: int = 2,
               cross_camera_positives: bool = True, cross_camera_negatives: bool = False,
               space=None, block_size: int = 1024, seed: int = 0, shuffle: bool = True) -> PairSet:
    """All positive pairs plus hard negatives, shuffled with `seed`.

    Args:
      features: [N, ...] input features (e.g. [N, R, d] stripes); negatives are mined here.
      pids, camids: [N] identity and camera of each row.
      negatives_per_positive: negatives per image = this * its positive count (paper: 2).
      cross_camera_positives / cross_camera_negatives: see the module docstring.
      space: optional [N, ...] array to mine negatives in instead of `features`, e.g. the
        current embeddings for re-mining during training.
      block_size: rows per distance block.
      seed: shuffling seed.
      shuffle: shuffle the pairs (else positives first, then negatives grouped by anchor).

    Returns:
      PairSet of P positives and negatives_per_positive * sum_i p_i = 2 * negatives_per_positive * P
      negatives (fewer when an image has too few other-identity candidates).
    """
    n = np.asarray(features).shape[0] if space is None else np.asarray(space).shape[0]
    if np.asarray(features).shape[0] != n:
        raise ValueError(f"space has {n} rows but features have {np.asarray(features).shape[0]}")
    pids, camids = _check_ids(n, pids, camids)
    if negatives_per_positive < 0:
        raise ValueError(f"negatives_per_positive must be >= 0, got {negatives_per_positive}")
    pos_i, pos_j = positive_pairs(pids, camids, cross_camera_positives)
    per_image = np.bincount(np.concatenate([pos_i, pos_j]), minlength=n)
    neg_i, neg_j = hard_negatives(features if space is None else space, pids, camids,
                                  negatives_per_positive * per_image, cross_camera_negatives,
                                  block_size)
    first = np.concatenate([pos_i, neg_i])
    second = np.concatenate([pos_j, neg_j])
    label = np.concatenate([np.full(pos_i.size, SAME, np.int32), np.full(neg_i.size, DIFFERENT, np.int32)])
    if shuffle:
        perm = np.random.default_rng(seed).permutation(first.size)
        first, second, label = first[perm], second[perm], label[perm]
    return PairSet(first, second, label)


def pair_dataset(features, pairs: PairSet, batch_size: int = 100, *,
                 drop_remainder: bool = False) -> tf.data.Dataset:
    """Batches ((x_i, x_j), label) gathered by index from one in-memory feature array.

    The features are converted to one tensor once; each batch gathers its rows, so no pair is
    ever materialised. Shuffle the PairSet (mine_pairs does) rather than the dataset.

    Args:
      features: [N, ...] float array (e.g. [N, R, d]) or a float32 tf.Tensor (used as is).
      pairs: PairSet indexing into features.
      batch_size: pairs per batch (paper: 100).
      drop_remainder: drop the last incomplete batch.

    Returns:
      tf.data.Dataset of ((x_i [b, ...], x_j [b, ...]) float32, label [b] float32).
    """
    if isinstance(features, tf.Tensor):
        feats = tf.cast(features, tf.float32)
    else:
        feats = tf.convert_to_tensor(np.asarray(features, np.float32))
    n = int(feats.shape[0])
    if len(pairs) and (min(pairs.first.min(), pairs.second.min()) < 0
                       or max(pairs.first.max(), pairs.second.max()) >= n):
        raise ValueError(f"pair indices must lie in [0, {n}), the rows of features")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    def gather(i, j, y):
        return (tf.gather(feats, i), tf.gather(feats, j)), tf.cast(y, tf.float32)

    ds = tf.data.Dataset.from_tensor_slices((pairs.first, pairs.second, pairs.label))
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


class PairSampler:
    """Pairs for each training epoch, optionally re-mined.

    Epoch 0 uses negatives mined in the input space. With `remine=True` and an `embed_fn`, later
    epochs mine negatives in the embedding space of the current model (features -> [N, k]);
    otherwise later epochs reuse the same pairs reshuffled with seed + epoch (mining in the fixed
    input space would give the same negatives again).
    """

    def __init__(self, features, pids, camids, *, batch_size: int = 100, seed: int = 0,
                 remine: bool = False, embed_fn: Callable[[np.ndarray], np.ndarray] | None = None,
                 **mine_kwargs):
        if remine and embed_fn is None:
            raise ValueError("remine=True needs embed_fn (features -> embeddings)")
        self.features, self.pids, self.camids = features, pids, camids
        self.batch_size, self.seed, self.remine, self.embed_fn = batch_size, seed, remine, embed_fn
        self.mine_kwargs = mine_kwargs
        self._tensor = None
        self._base = mine_pairs(features, pids, camids, seed=seed, shuffle=False, **mine_kwargs)

    def pairs(self, epoch: int) -> PairSet:
        """The shuffled PairSet of `epoch` (0-based)."""
        base = self._base
        if self.remine and epoch > 0:
            base = mine_pairs(self.features, self.pids, self.camids, space=self.embed_fn(self.features),
                              shuffle=False, **self.mine_kwargs)
        perm = np.random.default_rng(self.seed + epoch).permutation(len(base))
        return PairSet(base.first[perm], base.second[perm], base.label[perm])

    def dataset(self, epoch: int) -> tf.data.Dataset:
        """pair_dataset of `epoch`'s pairs."""
        if self._tensor is None:  # one copy of the features for all epochs
            self._tensor = tf.convert_to_tensor(np.asarray(self.features, np.float32))
        return pair_dataset(self._tensor, self.pairs(epoch), self.batch_size)
