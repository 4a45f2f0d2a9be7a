"""Tests of tfreid.data.pairs: positive pairs, hard negatives, shuffling, tf.data batches."""

import itertools
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tfreid.data.pairs import (  # noqa: E402
    DIFFERENT,
    SAME,
    PairSampler,
    PairSet,
    hard_negatives,
    mine_pairs,
    pair_dataset,
    positive_pairs,
)


def _toy(num_ids=7, seed=0, rows=3, dim=4):
    """Random stripes [N, rows, dim]; id k has 1..4 images over cameras 1 and 2."""
    rng = np.random.default_rng(seed)
    pids, camids = [], []
    for pid in range(num_ids):
        for k in range(1 + pid % 4):
            pids.append(100 + pid)
            camids.append(1 + k % 2)
    x = rng.normal(size=(len(pids), rows, dim)).astype(np.float32)
    return x, np.array(pids), np.array(camids)


def _brute_positives(pids, camids, cross_camera):
    return sorted((i, j) for i, j in itertools.combinations(range(len(pids)), 2)
                  if pids[i] == pids[j] and (not cross_camera or camids[i] != camids[j]))


@pytest.mark.parametrize("cross_camera", [True, False])
def test_positive_pairs_are_all_same_id_pairs(cross_camera):
    _, pids, camids = _toy()
    i, j = positive_pairs(pids, camids, cross_camera)
    assert list(zip(i.tolist(), j.tolist())) == _brute_positives(pids, camids, cross_camera)


def test_counts_and_labels():
    x, pids, camids = _toy()
    pairs = mine_pairs(x, pids, camids, seed=0)
    pos = _brute_positives(pids, camids, True)
    assert pairs.num_positive == len(pos) > 0
    assert pairs.num_negative == 4 * len(pos)  # 2 per positive partner, for both images of a pair
    same = pids[pairs.first] == pids[pairs.second]
    np.testing.assert_array_equal(pairs.label, np.where(same, SAME, DIFFERENT))
    # Per image: negatives mined for it = 2 x its positive partners.
    partners = np.bincount(np.array(pos).ravel(), minlength=len(pids))
    neg = pairs.label == DIFFERENT
    anchors = np.bincount(pairs.first[neg], minlength=len(pids))
    np.testing.assert_array_equal(anchors, 2 * partners)
    assert len(pairs) == pairs.num_positive + pairs.num_negative


def test_negatives_are_the_nearest_other_identity_images():
    x, pids, camids = _toy(num_ids=9, seed=1)
    pairs = mine_pairs(x, pids, camids, shuffle=False, block_size=5)
    flat = x.reshape(len(x), -1).astype(np.float64)
    neg = pairs.label == DIFFERENT
    partners = np.bincount(np.array(_brute_positives(pids, camids, True)).ravel(), minlength=len(pids))
    for a in range(len(x)):
        got = pairs.second[neg & (pairs.first == a)]
        dist = {b: np.linalg.norm(flat[a] - flat[b]) for b in range(len(x)) if pids[b] != pids[a]}
        want = sorted(dist, key=dist.get)[:2 * partners[a]]
        assert got.tolist() == want, a  # same images, nearest first


def test_block_size_does_not_change_the_result():
    x, pids, camids = _toy(num_ids=9, seed=2)
    a = mine_pairs(x, pids, camids, block_size=1)
    b = mine_pairs(x, pids, camids, block_size=1000)
    for field in ("first", "second", "label"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_cross_camera_negatives_and_too_few_candidates():
    x, pids, camids = _toy()
    pairs = mine_pairs(x, pids, camids, cross_camera_negatives=True)
    neg = pairs.label == DIFFERENT
    assert np.all(camids[pairs.first[neg]] != camids[pairs.second[neg]])
    # Ten negatives wanted, but only three images of other ids exist: all three, nearest first.
    space = np.array([[0.0], [5.0], [1.0], [3.0], [2.0]], np.float32)
    anchor, negative = hard_negatives(space, [0, 0, 1, 2, 3], [1, 2, 1, 1, 1], [10, 0, 0, 0, 0])
    assert anchor.tolist() == [0, 0, 0]
    assert negative.tolist() == [2, 4, 3]


def test_seeded_shuffle_is_deterministic():
    x, pids, camids = _toy()
    a = mine_pairs(x, pids, camids, seed=3)
    b = mine_pairs(x, pids, camids, seed=3)
    c = mine_pairs(x, pids, camids, seed=4)
    np.testing.assert_array_equal(a.first, b.first)
    np.testing.assert_array_equal(a.second, b.second)
    assert not np.array_equal(a.first, c.first)
    key = lambda p: sorted(zip(p.first.tolist(), p.second.tolist(), p.label.tolist()))  # noqa: E731
    assert key(a) == key(c)  # same pairs, other order


def test_bad_inputs():
    x, pids, camids = _toy()
    with pytest.raises(ValueError, match="one entry per feature row"):
        mine_pairs(x, pids[:-1], camids)
    bad = x.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        mine_pairs(bad, pids, camids)
    with pytest.raises(ValueError, match="space has"):
        mine_pairs(x, pids, camids, space=x[:-1])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        pair_dataset(x[:3], PairSet(np.array([0]), np.array([5]), np.array([1])))


def test_pair_dataset_gathers_the_right_rows():
    x, pids, camids = _toy(num_ids=12)
    pairs = mine_pairs(x, pids, camids, seed=0)
    assert len(pairs) > 100
    batches = list(pair_dataset(x, pairs, batch_size=100))
    assert [len(b[1]) for b in batches] == [100] * (len(pairs) // 100) + (
        [len(pairs) % 100] if len(pairs) % 100 else [])
    (xi, xj), y = batches[0]
    assert xi.shape == (100,) + x.shape[1:] and xi.dtype.name == "float32" and y.dtype.name == "float32"
    np.testing.assert_array_equal(xi.numpy(), x[pairs.first[:100]])
    np.testing.assert_array_equal(xj.numpy(), x[pairs.second[:100]])
    np.testing.assert_array_equal(y.numpy(), pairs.label[:100])


def test_sampler_reshuffles_and_remines():
    x, pids, camids = _toy(num_ids=10)
    sampler = PairSampler(x, pids, camids, seed=1, batch_size=50)
    e0, e1 = sampler.pairs(0), sampler.pairs(1)
    assert not np.array_equal(e0.first, e1.first)
    np.testing.assert_array_equal(sampler.pairs(1).first, e1.first)  # epochs are reproducible
    (xi, _), y = next(iter(sampler.dataset(0)))
    assert xi.shape[0] == 50
    # Re-mining in another space changes the negatives, keeps the positives and the counts.
    rng = np.random.default_rng(0)
    remine = PairSampler(x, pids, camids, seed=1, remine=True,
                         embed_fn=lambda f: rng.normal(size=(len(f), 3)))
    r0, r1 = remine.pairs(0), remine.pairs(1)
    neg = lambda p: sorted(zip(p.first[p.label == 1].tolist(), p.second[p.label == 1].tolist()))  # noqa: E731
    pos = lambda p: sorted(zip(p.first[p.label == 0].tolist(), p.second[p.label == 0].tolist()))  # noqa: E731
    assert pos(r0) == pos(r1) and len(neg(r0)) == len(neg(r1)) and neg(r0) != neg(r1)
    with pytest.raises(ValueError, match="embed_fn"):
        PairSampler(x, pids, camids, remine=True)
