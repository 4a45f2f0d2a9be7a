"""k-reciprocal re-ranking against a straightforward dense implementation of the paper's code."""

import numpy as np
import pytest

from tfreid.evaluation import distance_matrix
from tfreid.evaluation.rerank import k_reciprocal, k_reciprocal_features


def dense_rerank(q_g, q_q, g_g, k1, k2, lam):
    """Dense (q+g)^2 version with per-row loops, following Zhong et al.'s published steps."""
    orig = np.square(np.block([[q_q, q_g], [q_g.T, g_g]]).astype(np.float32))
    orig = orig / orig.max(axis=1, keepdims=True)            # row-normalised squared distances
    n, q = orig.shape[0], q_g.shape[0]
    rank = np.argsort(orig, axis=1, kind="stable")
    half = int(np.around(k1 / 2)) + 1

    def reciprocal(i, k):  # j in the k nearest of i AND i in the k nearest of j
        return np.array([j for j in rank[i, :k] if i in rank[j, :k]], dtype=int)

    v = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        r = reciprocal(i, k1 + 1)
        expanded = list(r)
        for c in r:
            rc = reciprocal(c, half)
            if len(np.intersect1d(rc, r)) > 2.0 / 3 * len(rc):
                expanded.extend(rc)
        expanded = np.unique(expanded)
        w = np.exp(-orig[i, expanded])
        v[i, expanded] = w / w.sum()
    if k2 != 1:
        v = np.stack([v[rank[i, :k2]].mean(axis=0) for i in range(n)])
    jac = np.zeros((q, n - q), dtype=np.float32)
    for i in range(q):
        for j in range(n - q):
            m = np.minimum(v[i], v[q + j]).sum()
            jac[i, j] = 1 - m / (2 - m)
    return jac * (1 - lam) + orig[:q, q:] * lam


def clustered(rng, q, g, dim=8, ids=6):
    centres = rng.normal(size=(ids, dim))
    qf = centres[rng.integers(0, ids, q)] + 0.5 * rng.normal(size=(q, dim))
    gf = centres[rng.integers(0, ids, g)] + 0.5 * rng.normal(size=(g, dim))
    return qf.astype(np.float32), gf.astype(np.float32)


@pytest.mark.parametrize("q,g,k1,k2,lam", [(7, 30, 5, 3, 0.3), (10, 40, 20, 6, 0.3),
                                           (5, 25, 4, 1, 0.5), (6, 12, 20, 6, 0.0)])
def test_matches_the_dense_reference(q, g, k1, k2, lam):
    qf, gf = clustered(np.random.default_rng(q * g), q, g)
    mats = distance_matrix(qf, gf), distance_matrix(qf, qf), distance_matrix(gf, gf)
    want = dense_rerank(*mats, k1, k2, lam)
    got = k_reciprocal(*mats, k1=k1, k2=k2, lambda_value=lam)
    assert got.shape == (q, g) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=2e-6)
    from_feats = k_reciprocal_features(qf, gf, k1=k1, k2=k2, lambda_value=lam)
    np.testing.assert_allclose(from_feats, want, atol=2e-5)


def test_small_blocks_and_memmap_inputs(tmp_path, monkeypatch):
    import tfreid.evaluation.rerank as rerank
    qf, gf = clustered(np.random.default_rng(5), 9, 35)
    mats = [distance_matrix(qf, gf), distance_matrix(qf, qf), distance_matrix(gf, gf)]
    want = dense_rerank(*mats, 6, 3, 0.3)
    monkeypatch.setattr(rerank, "_BLOCK_ELEMENTS", 100)   # 2 rows per block
    monkeypatch.setattr(rerank, "_PAIR_CHUNK", 50)
    paths = []
    for name, m in zip(("qg", "qq", "gg"), mats):
        np.save(tmp_path / f"{name}.npy", m)
        paths.append(np.load(tmp_path / f"{name}.npy", mmap_mode="r"))
    np.testing.assert_allclose(k_reciprocal(*paths, k1=6, k2=3), want, atol=2e-6)


def test_reranking_helps_on_clustered_data():
    from tfreid.evaluation import evaluate
    rng = np.random.default_rng(11)
    ids, dim = 20, 16
    centres = rng.normal(size=(ids, dim))
    q_pids, g_pids = np.arange(ids), np.repeat(np.arange(ids), 6)
    qf = centres[q_pids] + 0.9 * rng.normal(size=(ids, dim))
    gf = centres[g_pids] + 0.9 * rng.normal(size=(g_pids.size, dim))
    base = evaluate(distance_matrix(qf, gf), q_pids, g_pids, np.zeros(ids), np.ones(g_pids.size))
    rr = evaluate(k_reciprocal_features(qf, gf, k1=6, k2=3), q_pids, g_pids, np.zeros(ids),
                  np.ones(g_pids.size))
    assert rr.mAP > base.mAP


def test_bad_inputs_name_the_problem():
    a = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"q_q must be \(3, 3\) and g_g \(4, 4\)"):
        k_reciprocal(a, np.zeros((2, 2)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="k1 and k2 must be >= 1"):
        k_reciprocal(a, np.zeros((3, 3)), np.zeros((4, 4)), k1=0)
    with pytest.raises(ValueError, match="lambda_value must be in"):
        k_reciprocal(a, np.zeros((3, 3)), np.zeros((4, 4)), lambda_value=2)
    bad = np.ones((3, 4))
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        k_reciprocal(bad, np.ones((3, 3)), np.ones((4, 4)))
    with pytest.raises(ValueError, match="unknown metric"):
        k_reciprocal_features(np.ones((2, 3)), np.ones((4, 3)), metric="l1")
    with pytest.raises(ValueError, match="same d"):
        k_reciprocal_features(np.ones((2, 3)), np.ones((4, 2)))
