"""evaluate(): hand-computed tiny cases (both AP conventions) and a slow per-query reference."""

import math
import sys

import numpy as np
import pytest

from tfreid.evaluation import evaluate


def slow_evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, ap, remove_same_camera=True):
    """Obvious per-query loop: stable argsort, drop junk, walk the ranking (compute_AP.m style)."""
    cmcs, aps, inps, skipped = [], [], [], 0
    for i in range(len(q_pids)):
        order = np.argsort(distmat[i], kind="stable")
        keep = g_pids[order] != -1
        if remove_same_camera:
            keep &= ~((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i]))
        good = g_pids[order][keep] == q_pids[i]
        if not good.any():
            skipped += 1
            continue
        n, hits, total, old_p, cmc = good.sum(), 0, 0.0, 1.0, np.zeros(max_rank)
        for j, is_good in enumerate(good):
            if is_good:
                hits += 1
                if hits == 1 and j < max_rank:
                    cmc[j:] = 1
                p = hits / (j + 1)
                total += (old_p + p) / 2 if ap == "market" else p
                last = j
            old_p = hits / (j + 1)
        cmcs.append(cmc)
        aps.append(total / n)
        inps.append(n / (last + 1))
    if not aps:
        return None, None, None, 0, skipped
    return np.mean(cmcs, axis=0), np.mean(aps), np.mean(inps), len(aps), skipped


def test_worked_example_of_the_docstring():
    # Ranking: hit (rank 1), miss, hit (rank 3).
    d = np.array([[0.1, 0.2, 0.3]])
    args = (d, [1], [1, 2, 1], [0], [1, 1, 2])
    mp = evaluate(*args, max_rank=3, ap="mean_precision")
    assert mp.mAP == pytest.approx((1 / 1 + 2 / 3) / 2)            # 0.8333
    mk = evaluate(*args, max_rank=3, ap="market")
    # hit 1: (1 + 1)/2 = 1; hit 2: previous precision 1/2, precision 2/3 -> 7/12.
    assert mk.mAP == pytest.approx((1 + 7 / 12) / 2)               # 0.7917
    for r in (mp, mk):
        np.testing.assert_allclose(r.cmc, [1, 1, 1])
        assert r.mINP == pytest.approx(2 / 3)                      # 2 positives / last at rank 3
        assert (r.num_valid_queries, r.num_skipped_queries) == (1, 0)


# gallery: 0 junk pid -1 | 1 same pid+cam | 2 distractor | 3 hit | 4 other id | 5 hit
JUNK_G_PIDS, JUNK_G_CAMS = [-1, 1, 0, 1, 2, 1], [1, 0, 1, 1, 2, 2]
JUNK_D = np.array([[0.05, 0.10, 0.15, 0.20, 0.25, 0.30]])


def test_junk_same_camera_and_distractor():
    # After removing 0 and 1: distractor (rank 1), hit (rank 2), miss (3), hit (rank 4).
    mp = evaluate(JUNK_D, [1], JUNK_G_PIDS, [0], JUNK_G_CAMS, max_rank=4, ap="mean_precision")
    assert mp.mAP == pytest.approx((1 / 2 + 2 / 4) / 2)            # 0.5
    mk = evaluate(JUNK_D, [1], JUNK_G_PIDS, [0], JUNK_G_CAMS, max_rank=4, ap="market")
    # hit 1 at rank 2: prev precision 0/1, precision 1/2 -> 1/4;
    # hit 2 at rank 4: prev precision 1/3, precision 2/4 -> 5/12; AP = (1/4 + 5/12)/2 = 1/3.
    assert mk.mAP == pytest.approx(1 / 3)
    for r in (mp, mk):
        np.testing.assert_allclose(r.cmc, [0, 1, 1, 1])
        assert r.mINP == pytest.approx(2 / 4)


def test_keeping_same_camera_images():
    # Only pid -1 is removed: same-cam image 1 is a hit at rank 1; hits at ranks 1, 3, 5.
    kw = dict(max_rank=5, remove_same_camera=False)
    mp = evaluate(JUNK_D, [1], JUNK_G_PIDS, [0], JUNK_G_CAMS, ap="mean_precision", **kw)
    assert mp.mAP == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)        # 34/45 = 0.7556
    mk = evaluate(JUNK_D, [1], JUNK_G_PIDS, [0], JUNK_G_CAMS, ap="market", **kw)
    # (1+1)/2 = 1; (1/2 + 2/3)/2 = 7/12; (2/4 + 3/5)/2 = 0.55
    assert mk.mAP == pytest.approx((1 + 7 / 12 + 0.55) / 3)        # 0.7111
    assert mk.mINP == pytest.approx(3 / 5)
    np.testing.assert_allclose(mk.cmc, [1, 1, 1, 1, 1])


def test_ties_are_broken_by_gallery_index():
    # All at 0.5 except gallery 4 (0.1). 0 is junk (pid -1), 5 is same pid+cam (junk), so
    # the ranking is 4, 1 (miss), 2 (hit), 3 (hit): hits at ranks 3 and 4.
    d = np.array([[0.5, 0.5, 0.5, 0.5, 0.1, 0.5]], dtype=np.float32)
    g_pids, g_cams = [-1, 2, 1, 1, 3, 1], [1, 1, 1, 2, 1, 0]
    mp = evaluate(d, [1], g_pids, [0], g_cams, max_rank=4, ap="mean_precision")
    assert mp.mAP == pytest.approx((1 / 3 + 2 / 4) / 2)            # 5/12
    mk = evaluate(d, [1], g_pids, [0], g_cams, max_rank=4, ap="market")
    # (0/2 + 1/3)/2 = 1/6; (1/3 + 2/4)/2 = 5/12; AP = (1/6 + 5/12)/2 = 7/24
    assert mk.mAP == pytest.approx(7 / 24)
    for r in (mp, mk):
        np.testing.assert_allclose(r.cmc, [0, 0, 1, 1])
        assert r.mINP == pytest.approx(2 / 4)


def test_queries_without_a_match_are_skipped():
    d = np.array([[0.1, 0.2, 0.3],    # pid 1: hits at ranks 1 and 3
                  [0.1, 0.2, 0.3],    # pid 5: not in the gallery
                  [0.1, 0.2, 0.3],    # pid 2, cam 0: its only image is same-camera junk
                  [0.3, 0.2, 0.1],    # pid 2, cam 1: hit at rank 2
                  [0.1, 0.2, 0.3]])   # pid -1: junk query, never matches
    args = (d, [1, 5, 2, 2, -1], [1, 2, 1], [0, 0, 0, 1, 0], [1, 0, 2])
    mp = evaluate(*args, max_rank=3, ap="mean_precision")
    assert (mp.num_valid_queries, mp.num_skipped_queries) == (2, 3)
    assert mp.mAP == pytest.approx((5 / 6 + 1 / 2) / 2)            # 2/3
    mk = evaluate(*args, max_rank=3, ap="market")
    assert mk.mAP == pytest.approx((19 / 24 + 1 / 4) / 2)          # 25/48; rank-2 hit: (0 + 1/2)/2
    for r in (mp, mk):
        np.testing.assert_allclose(r.cmc, [0.5, 1, 1])
        assert r.mINP == pytest.approx((2 / 3 + 1 / 2) / 2)        # 7/12


def test_no_valid_query_gives_nan_and_a_warning():
    with pytest.warns(UserWarning, match="no query"):
        r = evaluate(np.ones((1, 2)), [7], [1, 2], [0], [1, 1], max_rank=2)
    assert math.isnan(r.mAP) and r.num_skipped_queries == 1
    assert r.as_dict()["mAP"] is None


def test_cmc_longer_than_the_gallery_and_str_and_dict():
    r = evaluate(np.array([[0.2, 0.1]]), [1], [1, 2], [0], [1, 1], max_rank=50)
    assert r.cmc.shape == (50,) and r.cmc[0] == 0 and r.cmc[1:].min() == 1
    d = r.as_dict()
    assert d["rank1"] == 0.0 and d["rank5"] == 1.0 and len(d["cmc"]) == 50
    assert "R1" in str(r) and "mAP" in str(r) and "market" in str(r)


@pytest.mark.parametrize("ap", ["market", "mean_precision"])
@pytest.mark.parametrize("same_cam", [True, False])
def test_random_cases_match_the_slow_loop(ap, same_cam):
    rng = np.random.default_rng(7)
    for trial in range(25):
        q, g = rng.integers(1, 25), rng.integers(1, 80)
        q_pids, g_pids = rng.integers(-1, 8, q), rng.integers(-1, 8, g)
        q_cams, g_cams = rng.integers(0, 3, q), rng.integers(0, 3, g)
        if trial % 3 == 0:   # many ties
            d = rng.integers(0, 4, (q, g)).astype(np.float32)
        else:
            d = rng.random((q, g)).astype(np.float64 if trial % 3 == 1 else np.float32)
        d[0, 0] = np.inf
        ref = slow_evaluate(d, q_pids, g_pids, q_cams, g_cams, 10, ap, same_cam)
        if ref[3] == 0:
            continue
        for threads in (1, 2):
            r = evaluate(d, q_pids, g_pids, q_cams, g_cams, max_rank=10, ap=ap,
                         remove_same_camera=same_cam, num_threads=threads)
            np.testing.assert_allclose(r.cmc, ref[0], atol=1e-12)
            assert r.mAP == pytest.approx(ref[1], abs=1e-12)
            assert r.mINP == pytest.approx(ref[2], abs=1e-12)
            assert (r.num_valid_queries, r.num_skipped_queries) == ref[3:]


def test_many_query_blocks_match_the_slow_loop(monkeypatch):
    import tfreid.evaluation.metrics as metrics
    monkeypatch.setattr(metrics, "_BLOCK_ELEMENTS", 300)   # forces blocks of a few queries
    rng = np.random.default_rng(3)
    q, g = 60, 100
    q_pids, g_pids = rng.integers(0, 10, q), rng.integers(-1, 10, g)
    q_cams, g_cams = rng.integers(0, 4, q), rng.integers(0, 4, g)
    d = rng.integers(0, 20, (q, g)).astype(np.float32)
    for ap in ("market", "mean_precision"):
        ref = slow_evaluate(d, q_pids, g_pids, q_cams, g_cams, 20, ap)
        r = evaluate(d, q_pids, g_pids, q_cams, g_cams, max_rank=20, ap=ap)
        np.testing.assert_allclose(r.cmc, ref[0])
        assert r.mAP == pytest.approx(ref[1]) and r.mINP == pytest.approx(ref[2])


def test_bad_inputs_name_the_problem():
    d = np.zeros((2, 3))
    ok = dict(q_pids=[1, 2], g_pids=[1, 2, 3], q_camids=[0, 0], g_camids=[1, 1, 1])
    with pytest.raises(ValueError, match="g_pids has length 2"):
        evaluate(d, **{**ok, "g_pids": [1, 2]})
    with pytest.raises(ValueError, match="q_camids has length 3"):
        evaluate(d, **{**ok, "q_camids": [0, 0, 0]})
    bad = d.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN .*query 1, gallery 2"):
        evaluate(bad, **ok)
    with pytest.raises(ValueError, match="empty query or gallery"):
        evaluate(np.zeros((0, 3)), [], [1, 2, 3], [], [1, 1, 1])
    with pytest.raises(ValueError, match="empty query or gallery"):
        evaluate(np.zeros((2, 0)), [1, 2], [], [0, 0], [])
    with pytest.raises(ValueError, match="max_rank must be an integer >= 1, got 0"):
        evaluate(d, **ok, max_rank=0)
    with pytest.raises(ValueError, match="unknown AP convention ap='torchreid'"):
        evaluate(d, **ok, ap="torchreid")
    with pytest.raises(ValueError, match=r"2-D .*shape \(3,\)"):
        evaluate(np.zeros(3), **ok)
    with pytest.raises(ValueError, match="must hold integers"):
        evaluate(d, **{**ok, "q_pids": [1.5, 2]})


class FakeEagerTensor:
    """Stands in for tf.Tensor (has .numpy()), so this module does not pay TF's import time."""

    def __init__(self, value):
        self.value = np.asarray(value)

    def numpy(self):
        return self.value


def test_accepts_tensor_like_inputs():
    d = np.array([[0.1, 0.2, 0.3]], dtype=np.float32)
    wrap = FakeEagerTensor
    r = evaluate(wrap(d), wrap([1]), wrap([1, 2, 1]), wrap([0]), wrap([1, 1, 2]), max_rank=3,
                 ap="mean_precision")
    assert r.mAP == pytest.approx(5 / 6)
    if "tensorflow" in sys.modules:  # real tensors too, when another test already loaded TF
        tf = sys.modules["tensorflow"]
        r = evaluate(tf.constant(d), tf.constant([1]), tf.constant([1, 2, 1]), tf.constant([0]),
                     tf.constant([1, 1, 2]), max_rank=3, ap="mean_precision")
        assert r.mAP == pytest.approx(5 / 6)
