"""Protocols: single-shot CMC draws, random splits, averaging, multi-query, score fusion."""

import numpy as np
import pytest

from tfreid.evaluation import EvalResult, evaluate
from tfreid.evaluation.protocols import (average_results, fuse_scores, multi_query, random_splits,
                                         single_shot_cmc)


def test_single_shot_hand_case():
    # 2 identities x 2 gallery images (camera 1). Query pid 1: its images are at 0.1 and 0.5,
    # pid 2's at 0.3 and 0.4. Drawn pid-1 image 0.1 -> rank 1; drawn 0.5 -> rank 2 either way.
    d = np.array([[0.1, 0.5, 0.3, 0.4]])
    g_pids, g_cams = [1, 1, 2, 2], [1, 1, 1, 1]
    res = single_shot_cmc(d, [1], g_pids, [0], g_cams, seeds=range(6), max_rank=2)
    for seed, cmc in zip(res.seeds, res.cmc_per_draw):
        u = np.random.default_rng(seed).random(2)
        first_pid1 = int(np.floor(u[0] * 2)) == 0           # the draw rule of the docstring
        np.testing.assert_allclose(cmc, [1, 1] if first_pid1 else [0, 1])
    np.testing.assert_allclose(res.cmc, res.cmc_per_draw.mean(axis=0))
    assert res.cmc_per_draw.shape == (6, 2) and "single-shot" in str(res)


def test_single_shot_draws_one_image_per_identity_and_is_seeded():
    rng = np.random.default_rng(0)
    g_pids = np.repeat(np.arange(0, 10), 4)              # pid 0 counts as an identity
    g_pids[:2] = -1                                        # two junk images, never drawn
    d = rng.random((10, g_pids.size))
    a = single_shot_cmc(d, np.arange(10), g_pids, np.zeros(10), np.ones(g_pids.size), max_rank=10)
    b = single_shot_cmc(d, np.arange(10), g_pids, np.zeros(10), np.ones(g_pids.size), max_rank=10)
    np.testing.assert_array_equal(a.cmc_per_draw, b.cmc_per_draw)
    assert len(a.results) == 10 and all(r.num_valid_queries == 10 for r in a.results)
    # With one image per identity the last rank of a 10-image gallery always finds the match.
    assert np.all(a.cmc_per_draw[:, -1] == 1)
    assert not np.all(a.cmc_per_draw == a.cmc_per_draw[0])   # draws differ


def test_random_splits():
    splits = random_splits(np.arange(632), num_splits=10, num_test=316, seed=3)
    assert len(splits) == 10
    for train, test in splits:
        assert len(train) == len(test) == 316 and not set(train) & set(test)
    assert not np.array_equal(splits[0][1], splits[1][1])
    again = random_splits(np.arange(632), num_splits=10, num_test=316, seed=3)
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(splits, again))
    train, test = random_splits([5, 5, 6, 7], num_splits=1)[0]    # duplicates ignored, half = 2
    assert len(test) == 2 and len(train) == 1
    with pytest.raises(ValueError, match="num_test=9"):
        random_splits(np.arange(4), num_test=9)


def test_average_results():
    a = EvalResult(np.array([0.5, 1.0]), 0.4, 0.2, 10, 1, "market")
    b = EvalResult(np.array([0.7, 0.8]), 0.6, 0.4, 20, 0, "market")
    m = average_results([a, b])
    np.testing.assert_allclose(m.cmc, [0.6, 0.9])
    assert (m.mAP, m.mINP) == pytest.approx((0.5, 0.3))
    assert (m.num_valid_queries, m.num_skipped_queries) == (30, 1)
    with pytest.raises(ValueError, match="AP conventions"):
        average_results([a, EvalResult(np.array([1.0, 1.0]), 1, 1, 1, 0, "mean_precision")])
    with pytest.raises(ValueError, match="at least one"):
        average_results([])


def test_multi_query_averages_rows_per_identity_and_camera():
    d = np.array([[1.0, 4.0],    # pid 2 cam 0
                  [3.0, 0.0],    # pid 1 cam 0
                  [3.0, 2.0],    # pid 2 cam 0
                  [5.0, 5.0]])   # pid 2 cam 1
    merged, pids, cams = multi_query(d, [2, 1, 2, 2], [0, 0, 0, 1])
    np.testing.assert_array_equal(pids, [1, 2, 2])
    np.testing.assert_array_equal(cams, [0, 0, 1])
    np.testing.assert_allclose(merged, [[3, 0], [2, 3], [5, 5]])   # (1+3)/2, (4+2)/2
    m_min, _, _ = multi_query(d, [2, 1, 2, 2], [0, 0, 0, 1], reduce="min")
    np.testing.assert_allclose(m_min, [[3, 0], [1, 2], [5, 5]])
    # The merged queries evaluate like any other.
    r = evaluate(merged, pids, [1, 2], cams, [2, 2], max_rank=2)
    assert r.num_valid_queries == 3
    with pytest.raises(ValueError, match="length 4"):
        multi_query(d, [1, 2], [0, 0])


def test_fuse_scores_rescales_each_query_row():
    c1 = np.array([[0.0, 1.0, 2.0], [5.0, 5.0, 5.0]])
    c2 = np.array([[10.0, 30.0, 20.0], [1.0, 3.0, 2.0]])
    # c1 rows -> [0, .5, 1] and [0, 0, 0] (constant row); c2 rows -> [0, 1, .5] and [0, 1, .5].
    np.testing.assert_allclose(fuse_scores([c1, c2]), [[0, 0.75, 0.75], [0, 0.5, 0.25]])
    np.testing.assert_allclose(fuse_scores([c1, c2], weights=[3, 1]),
                               [[0, 0.625, 0.875], [0, 0.25, 0.125]])
    with pytest.raises(ValueError, match="one shape"):
        fuse_scores([c1, c2[:, :2]])
    with pytest.raises(ValueError, match="weights"):
        fuse_scores([c1, c2], weights=[1])


def test_mean_std_over_splits():
    from tfreid.evaluation.protocols import mean_std_over_splits

    splits = [{"fused": {"all_gallery": {"rank1": 0.4, "cmc": [0.4, 0.6], "ap_convention": "market"}},
               "only_here": 1.0},
              {"fused": {"all_gallery": {"rank1": 0.6, "cmc": [0.5, 0.7], "ap_convention": "market"}}}]
    out = mean_std_over_splits(splits)
    assert out == {"fused": {"all_gallery": {"rank1": {"mean": pytest.approx(0.5),
                                                       "std": pytest.approx(0.1),
                                                       "values": [0.4, 0.6]}}}}
    with pytest.raises(ValueError, match="at least one split"):
        mean_std_over_splits([])
