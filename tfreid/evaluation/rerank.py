"""k-reciprocal re-ranking (Zhong, Zheng, Cao, Li: "Re-ranking Person Re-identification with
k-reciprocal Encoding", CVPR 2017), with memory linear in the number of images.

The published code builds several dense (q+g) x (q+g) matrices (distances, argsort, V, Jaccard):
about 2 GB each for Market-1501. Here, with N = q + g:
  * distances are produced one block of rows at a time (from given matrices, which may be
    ``np.memmap``, or from features) and only the top max(k1+1, k2) neighbours of each row kept;
  * k-reciprocal sets and their expansion are computed with vectorised index arithmetic;
  * V (Eq. 7, Gaussian kernel weights over the expanded set) and its query expansion (local
    query expansion over k2 neighbours) are ``scipy.sparse`` CSR matrices (about N x 100 non-zeros);
  * the Jaccard distance (Eq. 11, sum of element-wise minima of V rows) is computed per block of
    queries against the gallery through an inverted index (CSC columns of V);
  * only the final [q, g] float32 matrix is dense.

Semantics follow the authors' implementation: input distances are squared, each row of the
(q+g) x (q+g) matrix is divided by its maximum, neighbours are ranked by (distance, index)
(a stable sort), and final = (1 - lambda) * Jaccard + lambda * normalised squared distance.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from tfreid.evaluation.distance import METRICS, distance_matrix, to_numpy

_BLOCK_ELEMENTS = 1 << 23   # distance entries per row block (32 MB of float32)
_PAIR_CHUNK = 1 << 22       # (query non-zero, gallery row) pairs per Jaccard step


class _MatrixSource:
    """Rows of the full [[q_q, q_g], [q_g^T, g_g]] matrix and gathers of single entries."""

    def __init__(self, q_g, q_q, g_g):
        self.q_g = _matrix(q_g, "q_g")
        self.q_q = _matrix(q_q, "q_q")
        self.g_g = _matrix(g_g, "g_g")
        self.q, g = self.q_g.shape
        if self.q_q.shape != (self.q, self.q) or self.g_g.shape != (g, g):
            raise ValueError(f"q_g has shape {self.q_g.shape}, so q_q must be {(self.q, self.q)} "
                             f"and g_g {(g, g)}; got {self.q_q.shape} and {self.g_g.shape}")
        self.n = self.q + g

    def rows(self, a: int, b: int) -> np.ndarray:
        q, parts = self.q, []
        if a < q:
            e = min(b, q)
            parts.append(np.concatenate([self.q_q[a:e], self.q_g[a:e]], axis=1))
        if b > q:
            s = max(a, q)
            parts.append(np.concatenate([self.q_g[:, s - q:b - q].T, self.g_g[s - q:b - q]], axis=1))
        return np.concatenate(parts, axis=0).astype(np.float32, copy=False)

    def pairs(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        q, out = self.q, np.empty(i.shape[0], dtype=np.float32)
        iq, jq = i < q, j < q
        for sel, mat, ri, cj in ((iq & jq, self.q_q, i, j), (iq & ~jq, self.q_g, i, j - q),
                                 (~iq & jq, self.q_g, j, i - q), (~iq & ~jq, self.g_g, i - q, j - q)):
            if sel.any():
                out[sel] = mat[ri[sel], cj[sel]]
        return out


class _FeatureSource:
    """Distances computed on the fly from features [N, d] (queries first)."""

    def __init__(self, feats: np.ndarray, q: int, metric: str):
        self.feats, self.q, self.n, self.metric = feats, q, feats.shape[0], metric

    def rows(self, a: int, b: int) -> np.ndarray:
        return distance_matrix(self.feats[a:b], self.feats, self.metric)

    def pairs(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        out = np.empty(i.shape[0], dtype=np.float32)
        step = max(1, (1 << 21) // self.feats.shape[1])  # 8 MB gathers
        for s in range(0, i.shape[0], step):
            a, b = self.feats[i[s:s + step]], self.feats[j[s:s + step]]
            if self.metric == "cosine":
                na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
                d = 1.0 - np.einsum("ij,ij->i", a, b) / (np.maximum(na, 1e-12) * np.maximum(nb, 1e-12))
                d = np.clip(d, 0.0, 2.0)
            else:
                diff = a - b
                d = np.einsum("ij,ij->i", diff, diff)
                if self.metric == "euclidean":
                    d = np.sqrt(d)
            out[s:s + step] = d
        return out


def _matrix(x, name: str) -> np.ndarray:
    if isinstance(x, np.ndarray):  # keeps np.memmap lazy
        m = x
    else:
        m = to_numpy(x, name)
    if m.ndim != 2 or 0 in m.shape:
        raise ValueError(f"{name} must be a non-empty 2-D distance matrix, got shape {m.shape}")
    return m


def _top_neighbours(source, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns (rank [N, k] int64 by (distance, index), row maxima [N] float32 of squared dist)."""
    n = source.n
    rank = np.empty((n, k), dtype=np.int64)
    rowmax = np.empty(n, dtype=np.float32)
    idx = np.arange(n, dtype=np.uint64)
    step = max(1, _BLOCK_ELEMENTS // n)
    for a in range(0, n, step):
        b = min(a + step, n)
        d = source.rows(a, b)
        if np.isnan(d.min()) or d.min() < 0:
            raise ValueError(f"distances for rows {a}..{b - 1} contain NaN or negative values")
        d = np.square(d)
        rowmax[a:b] = d.max(axis=1)
        d /= np.maximum(rowmax[a:b], np.finfo(np.float32).tiny)[:, None]
        # Bits of a float32 >= 0 are ordered like its value: (bits << 32 | index) sorts by
        # distance, then index, with no ties, so np.partition gives an exact stable top-k.
        keys = (d.view(np.uint32).astype(np.uint64) << np.uint64(32)) | idx[None, :]
        if k < n:
            keys = np.partition(keys, k - 1, axis=1)[:, :k]
        keys.sort(axis=1)
        rank[a:b] = (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)
    return rank, rowmax


def _reciprocal_mask(nbr: np.ndarray) -> np.ndarray:
    """[N, k] bool: nbr[i, a] has i among its own first k neighbours."""
    n, k = nbr.shape
    out = np.empty((n, k), dtype=bool)
    step = max(1, (1 << 22) // (k * k))
    for a in range(0, n, step):
        i = np.arange(a, min(a + step, n))
        out[i] = (nbr[nbr[i]] == i[:, None, None]).any(axis=2)
    return out


def _weights_matrix(source, rank: np.ndarray, rowmax: np.ndarray, k1: int) -> sp.csr_matrix:
    """V of Eq. (7): row i has exp(-d(i, j)) / sum over the expanded k-reciprocal set of i."""
    n = source.n
    full = rank[:, :k1 + 1]
    half = rank[:, :int(np.around(k1 / 2.0)) + 1]
    full_ok, half_ok = _reciprocal_mask(full), _reciprocal_mask(half)
    half_size = half_ok.sum(axis=1)
    rows_all, cols_all = [], []
    step = max(1, (1 << 22) // (full.shape[1] * half.shape[1] * full.shape[1]))
    for a in range(0, n, step):
        i = np.arange(a, min(a + step, n))
        cand = full[i]                                   # [B, k1+1]
        hc = half[cand]                                  # [B, k1+1, kh] half-sets of candidates
        in_r = ((hc[..., None] == cand[:, None, None, :]) & full_ok[i][:, None, None, :]).any(-1)
        overlap = (in_r & half_ok[cand]).sum(-1)         # |R_half(c) ∩ R(i)|
        accept = full_ok[i] & (overlap > 2.0 / 3.0 * half_size[cand])
        r1, c1 = np.nonzero(full_ok[i])
        r2, a2, b2 = np.nonzero(accept[..., None] & half_ok[cand])
        rr = np.concatenate([i[r1], i[r2]])
        cc = np.concatenate([cand[r1, c1], hc[r2, a2, b2]])
        key = np.unique(rr * n + cc)
        rows_all.append(key // n)
        cols_all.append(key % n)
    rows, cols = np.concatenate(rows_all), np.concatenate(cols_all)
    d = np.square(source.pairs(rows, cols)) / np.maximum(rowmax[rows], np.finfo(np.float32).tiny)
    w = np.exp(-d.astype(np.float32))
    w /= np.bincount(rows, weights=w, minlength=n)[rows].astype(np.float32)
    return sp.csr_matrix((w.astype(np.float32), (rows, cols)), shape=(n, n))


def _jaccard_block(vq: sp.csr_matrix, vg: sp.csc_matrix, num_g: int) -> np.ndarray:
    """Jaccard distance [B, g] of Eq. (11): 1 - m / (2 - m), m = sum_k min(Vq[i,k], Vg[j,k])."""
    vq = vq.tocoo()
    b = vq.shape[0]
    lens = np.diff(vg.indptr)[vq.col]
    total = np.cumsum(lens)
    acc = np.zeros(b * num_g, dtype=np.float64)
    start = 0
    while start < vq.nnz:  # chunks of at most _PAIR_CHUNK expanded pairs
        base = total[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(total, base + _PAIR_CHUNK, side="right")))
        ln = lens[start:stop]
        rep = np.repeat(np.arange(start, stop), ln)
        pos = (np.arange(rep.size) - np.repeat(np.cumsum(ln) - ln, ln)
               + np.repeat(vg.indptr[vq.col[start:stop]], ln))
        mins = np.minimum(vq.data[rep], vg.data[pos])
        acc += np.bincount(vq.row[rep] * num_g + vg.indices[pos], weights=mins, minlength=b * num_g)
        start = stop
    m = acc.reshape(b, num_g).astype(np.float32)
    return 1.0 - m / (2.0 - m)


def _rerank(source, k1: int, k2: int, lambda_value: float) -> np.ndarray:
    if k1 < 1 or k2 < 1:
        raise ValueError(f"k1 and k2 must be >= 1, got k1={k1}, k2={k2}")
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value}")
    n, q = source.n, source.q
    g = n - q
    rank, rowmax = _top_neighbours(source, min(n, max(k1 + 1, k2)))
    v = _weights_matrix(source, rank, rowmax, k1)
    if k2 != 1:  # local query expansion: V[i] <- mean of V over the k2 nearest neighbours of i
        kq = min(k2, rank.shape[1])
        qe = sp.csr_matrix((np.full(n * kq, 1.0 / kq, dtype=np.float32),
                            (np.repeat(np.arange(n), kq), rank[:, :kq].ravel())), shape=(n, n))
        v = (qe @ v).tocsr()
    vg = v[q:].tocsc()
    vg.sort_indices()
    out = np.empty((q, g), dtype=np.float32)
    step = max(1, _BLOCK_ELEMENTS // n)
    for a in range(0, q, step):
        b = min(a + step, q)
        orig = np.square(source.rows(a, b)[:, q:])
        orig /= np.maximum(rowmax[a:b], np.finfo(np.float32).tiny)[:, None]
        out[a:b] = _jaccard_block(v[a:b], vg, g) * (1 - lambda_value) + orig * lambda_value
    return out


def k_reciprocal(q_g, q_q, g_g, k1: int = 20, k2: int = 6, lambda_value: float = 0.3) -> np.ndarray:
    """Re-ranked query-gallery distances from the three distance matrices.

    Args:
      q_g: [q, g] query-gallery distances (Euclidean, not squared: they are squared inside,
        as in the authors' code). numpy, tf.Tensor or ``np.memmap`` (read by row blocks).
      q_q: [q, q] query-query distances.
      g_g: [g, g] gallery-gallery distances (an ``np.memmap`` keeps a huge one off memory;
        or use `k_reciprocal_features`, which never builds it).
      k1: size of the k-reciprocal neighbourhood (paper: 20).
      k2: neighbours of the local query expansion (paper: 6; 1 disables it).
      lambda_value: weight of the original distance in the final one (paper: 0.3).

    Returns:
      [q, g] float32 re-ranked distances.
    """
    return _rerank(_MatrixSource(q_g, q_q, g_g), k1, k2, lambda_value)


def k_reciprocal_features(q_feats, g_feats, metric: str = "euclidean", k1: int = 20, k2: int = 6,
                          lambda_value: float = 0.3) -> np.ndarray:
    """Like `k_reciprocal`, computing distances from features block by block (no g x g matrix).

    Args:
      q_feats: [q, d] query features; g_feats: [g, d] gallery features.
      metric: "euclidean" (as the paper), "sqeuclidean" or "cosine".

    Returns:
      [q, g] float32 re-ranked distances.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    qf = to_numpy(q_feats, "q_feats")
    gf = to_numpy(g_feats, "g_feats")
    if qf.ndim != 2 or gf.ndim != 2 or qf.shape[1] != gf.shape[1] or not qf.size or not gf.size:
        raise ValueError(f"q_feats and g_feats must be non-empty [n, d] with the same d, got "
                         f"{qf.shape} and {gf.shape}")
    feats = np.concatenate([qf, gf]).astype(np.float32)
    return _rerank(_FeatureSource(feats, qf.shape[0], metric), k1, k2, lambda_value)
