"""distance_matrix / iter_distance_blocks / topk against scipy's cdist and a stable argsort."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from tfreid.evaluation import distance_matrix, iter_distance_blocks, topk

CDIST = {"euclidean": "euclidean", "sqeuclidean": "sqeuclidean", "cosine": "cosine"}


@pytest.fixture
def feats():
    rng = np.random.default_rng(0)
    return rng.normal(size=(23, 16)).astype(np.float32), rng.normal(size=(41, 16)).astype(np.float32)


@pytest.mark.parametrize("metric", sorted(CDIST))
def test_matches_cdist_and_chunking_changes_nothing(feats, metric):
    a, b = feats
    want = cdist(a.astype(np.float64), b.astype(np.float64), CDIST[metric])
    got = distance_matrix(a, b, metric)
    assert got.dtype == np.float32 and got.shape == (23, 41)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(distance_matrix(a, b, metric, chunk_size=5), got, rtol=1e-6, atol=1e-6)


def test_hand_values_and_no_negative_distances():
    a = np.array([[0.0, 0.0], [3.0, 4.0]])
    b = np.array([[3.0, 4.0], [0.0, 1.0]])
    np.testing.assert_allclose(distance_matrix(a, b, "euclidean"), [[5, 1], [0, np.sqrt(18)]], atol=1e-6)
    np.testing.assert_allclose(distance_matrix(a, b, "sqeuclidean"), [[25, 1], [0, 18]], atol=1e-5)
    # cos((3,4),(0,1)) = 4/5; a zero vector is at distance 1 from everything.
    np.testing.assert_allclose(distance_matrix(a, b, "cosine"), [[1, 1], [0, 0.2]], atol=1e-6)
    x = np.random.default_rng(1).normal(size=(30, 8)) * 1e3
    assert distance_matrix(x, x, "euclidean").min() >= 0


def test_out_array_can_be_a_memmap(tmp_path, feats):
    a, b = feats
    out = np.lib.format.open_memmap(tmp_path / "d.npy", mode="w+", dtype=np.float32, shape=(23, 41))
    res = distance_matrix(a, b, "euclidean", chunk_size=7, out=out)
    assert res is out
    np.testing.assert_allclose(np.load(tmp_path / "d.npy"), distance_matrix(a, b), atol=1e-6)


def test_iter_blocks_cover_the_gallery(feats):
    a, b = feats
    parts = list(iter_distance_blocks(a, b, "cosine", block=10))
    assert [s for s, _ in parts] == [0, 10, 20, 30, 40]
    np.testing.assert_allclose(np.concatenate([p for _, p in parts], axis=1),
                               distance_matrix(a, b, "cosine"), atol=1e-6)


@pytest.mark.parametrize("metric", sorted(CDIST))
def test_topk_equals_stable_argsort_even_with_ties(metric):
    rng = np.random.default_rng(2)
    # Small integer features: float32 arithmetic is exact, so duplicated rows tie exactly.
    b = rng.integers(-2, 3, size=(50, 4)).astype(np.float32)
    b[20:30] = b[0:10]
    a = rng.integers(-2, 3, size=(9, 4)).astype(np.float32)
    full = distance_matrix(a, b, metric)
    want = np.argsort(full, axis=1, kind="stable")[:, :12]
    d, i = topk(a, b, k=12, metric=metric, block=7, query_block=4)
    np.testing.assert_array_equal(i, want)
    np.testing.assert_allclose(d, np.take_along_axis(full, want, axis=1), atol=1e-6)


def test_topk_clips_k_to_the_gallery(feats):
    a, b = feats
    d, i = topk(a, b[:5], k=50)
    assert d.shape == (23, 5) and sorted(i[0]) == [0, 1, 2, 3, 4]


def test_bad_inputs_name_the_problem(feats):
    a, b = feats
    with pytest.raises(ValueError, match="unknown metric 'manhattan'"):
        distance_matrix(a, b, "manhattan")
    with pytest.raises(ValueError, match=r"dimensions differ: a has shape \(23, 16\), b has shape \(41, 3\)"):
        distance_matrix(a, b[:, :3])
    with pytest.raises(ValueError, match=r"2-D .*shape \(16,\)"):
        distance_matrix(a[0], b)
    bad = a.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or inf .*row 3, column 2"):
        distance_matrix(bad, b)
    with pytest.raises(ValueError, match="k, block and query_block must be >= 1"):
        topk(a, b, k=0)
    with pytest.raises(ValueError, match="out must be float32 with shape"):
        distance_matrix(a, b, out=np.zeros((2, 2), dtype=np.float32))
