"""Pairwise distances between feature sets, computed block by block with bounded memory.

Three metrics, all returned as float32 and never negative:

- ``"sqeuclidean"``: ``||a - b||^2`` via ``||a||^2 + ||b||^2 - 2 a.b`` (clamped at 0).
- ``"euclidean"``: the square root of the above.
- ``"cosine"``: ``1 - cos(a, b)`` in [0, 2]; a zero vector is treated as having norm 1e-12,
  so its distance to everything is 1.

`distance_matrix` fills an [m, n] matrix (optionally a caller-provided array such as an
``np.memmap``) one ``chunk_size x chunk_size`` block at a time, so no temporary is larger than
one block. `topk` never materialises the [m, n] matrix at all: it streams gallery blocks and keeps
only the best k per query, which is what retrieval over a gallery of millions needs.

Tie policy of `topk`: ascending distance, then ascending gallery index (like a stable sort).

Inputs may be numpy arrays, anything `np.asarray` accepts, or eager TensorFlow tensors.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

METRICS = ("euclidean", "sqeuclidean", "cosine")


def to_numpy(x, name: str) -> np.ndarray:
    """Converts numpy-like input or an eager tf.Tensor to a numpy array (no TF import)."""
    if hasattr(x, "numpy") and not isinstance(x, np.ndarray):
        x = x.numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: cannot convert {type(x).__name__} to a numpy array ({err})") from err


def _features(x, name: str) -> np.ndarray:
    x = to_numpy(x, name)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D [num_items, dim], got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(f"{name} contains NaN or inf (first at row {bad[0]}, column {bad[1]})")
    return x


def _check_pair(a, b, metric: str) -> tuple[np.ndarray, np.ndarray]:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    a, b = _features(a, "a"), _features(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: a has shape {a.shape}, b has shape {b.shape}")
    return a, b


def _prepare(x: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Returns (rows ready for a dot product, squared norms or None for cosine)."""
    if metric == "cosine":
        norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))
        return (x / np.maximum(norms, 1e-12)[:, None]).astype(np.float32), None
    return x, np.einsum("ij,ij->i", x, x, dtype=np.float32)


def _block(a: np.ndarray, a_sq, b: np.ndarray, b_sq, metric: str) -> np.ndarray:
    """Distances [len(a), len(b)] float32 between prepared rows."""
    dot = a @ b.T
    if metric == "cosine":
        d = np.subtract(1.0, dot, out=dot)
        np.clip(d, 0.0, 2.0, out=d)
    else:
        d = np.multiply(dot, -2.0, out=dot)
        d += a_sq[:, None]
        d += b_sq[None, :]
        np.maximum(d, 0.0, out=d)
        if metric == "euclidean":
            np.sqrt(d, out=d)
    d += 0.0  # turns -0.0 into +0.0, so bit patterns order like the values (used by topk)
    return d


def distance_matrix(a, b, metric: str = "euclidean", chunk_size: int = 2048,
                    out: np.ndarray | None = None) -> np.ndarray:
    """Distances between every row of `a` and every row of `b` (numpy; e.g. query x gallery).

    Args:
      a: [m, d] features (numpy or eager tf.Tensor).
      b: [n, d] features.
      metric: "euclidean", "sqeuclidean" or "cosine".
      chunk_size: rows of `a` and of `b` per block; temporaries hold at most
        chunk_size x chunk_size floats.
      out: optional float32 [m, n] array to fill (e.g. an ``np.memmap`` for huge galleries).

    Returns:
      [m, n] float32 distances (`out` if given).

    Raises:
      ValueError: unknown metric, non-2-D input, different feature dimensions, NaN/inf
        features, chunk_size < 1 or an `out` of the wrong shape/dtype.
    """
    a, b = _check_pair(a, b, metric)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    m, n = a.shape[0], b.shape[0]
    if out is None:
        out = np.empty((m, n), dtype=np.float32)
    elif out.shape != (m, n) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 with shape {(m, n)}, got {out.dtype} {out.shape}")
    for j in range(0, n, chunk_size):
        bj, bj_sq = _prepare(b[j:j + chunk_size], metric)
        for i in range(0, m, chunk_size):
            ai, ai_sq = _prepare(a[i:i + chunk_size], metric)
            out[i:i + chunk_size, j:j + chunk_size] = _block(ai, ai_sq, bj, bj_sq, metric)
    return out


def iter_distance_blocks(a, b, metric: str = "euclidean",
                         block: int = 8192) -> Iterator[tuple[int, np.ndarray]]:
    """Yields (gallery start index, distances [m, <=block] float32) over blocks of `b`.

    Memory per step is m x block floats; split `a` yourself if m is also huge.
    """
    a, b = _check_pair(a, b, metric)
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    pa, pa_sq = _prepare(a, metric)
    for j in range(0, b.shape[0], block):
        pb, pb_sq = _prepare(b[j:j + block], metric)
        yield j, _block(pa, pa_sq, pb, pb_sq, metric)


def _keys(d: np.ndarray, start: int) -> np.ndarray:
    """uint64 keys ordering by (distance, index): the bits of a float32 >= 0 are monotone."""
    idx = np.arange(start, start + d.shape[1], dtype=np.uint64)
    return (d.view(np.uint32).astype(np.uint64) << np.uint64(32)) | idx[None, :]


def topk(a, b, k: int, metric: str = "euclidean", block: int = 8192,
         query_block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest rows of `b` for every row of `a`, streaming `b` in blocks.

    Memory is bounded by query_block x (block + k) 8-byte keys, whatever len(b) is.
    Ties are broken by the smaller gallery index, so the result equals a stable argsort.

    Args:
      a: [m, d] query features.
      b: [n, d] gallery features (n < 2**32).
      k: neighbours per query; clipped to n.
      metric: "euclidean", "sqeuclidean" or "cosine".
      block: gallery rows per step.
      query_block: query rows per step.

    Returns:
      (distances [m, k] float32 ascending, indices [m, k] int64 into `b`).
    """
    a, b = _check_pair(a, b, metric)
    if k < 1 or block < 1 or query_block < 1:
        raise ValueError(f"k, block and query_block must be >= 1, got {k}, {block}, {query_block}")
    m, n = a.shape[0], b.shape[0]
    k = min(k, n)
    if n >= 2 ** 32:
        raise ValueError(f"topk supports galleries below 2**32 items, got {n}")
    out_d = np.empty((m, k), dtype=np.float32)
    out_i = np.empty((m, k), dtype=np.int64)
    prepared = [(j, *_prepare(b[j:j + block], metric)) for j in range(0, n, block)] \
        if n <= 4 * block else None
    for i in range(0, m, query_block):
        pa, pa_sq = _prepare(a[i:i + query_block], metric)
        best = np.empty((pa.shape[0], 0), dtype=np.uint64)
        blocks = prepared if prepared is not None else (
            (j, *_prepare(b[j:j + block], metric)) for j in range(0, n, block))
        for j, pb, pb_sq in blocks:
            cand = np.concatenate([best, _keys(_block(pa, pa_sq, pb, pb_sq, metric), j)], axis=1)
            if cand.shape[1] > k:
                cand = np.partition(cand, k - 1, axis=1)[:, :k]
            best = cand
        best.sort(axis=1)
        out_i[i:i + query_block] = (best & np.uint64(0xFFFFFFFF)).astype(np.int64)
        out_d[i:i + query_block] = (best >> np.uint64(32)).astype(np.uint32).view(np.float32)
    return out_d, out_i
