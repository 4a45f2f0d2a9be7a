"""Rank-Triplet loss: closed-form swap gains and the loss against brute-force loops."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

from tfreid import losses as L


# ---------- slow, obvious references ----------

def ap_eq6(types):
    """Paper Eq. 6 on a ranked list of 'p' / 'n' / '-' (ignored) entries."""
    ranks = [r + 1 for r, t in enumerate(types) if t == "p"]
    m = len(ranks)
    if m == 0:
        return 0.0
    return sum((t + 1) / pi for t, pi in enumerate(ranks)) / m - 1 / (2 * ranks[-1]) + 1 / (2 * m)


def r1(types):
    return 1.0 if types and types[0] == "p" else 0.0


def brute_gains(types):
    """{(p, q): gain} for every positive at p and negative at q < p, by swapping and recomputing."""
    base = ap_eq6(types) + r1(types)
    out = {}
    for p, tp in enumerate(types):
        for q in range(p):
            if tp == "p" and types[q] == "n":
                swapped = list(types)
                swapped[p], swapped[q] = swapped[q], swapped[p]
                out[(p, q)] = ap_eq6(swapped) + r1(swapped) - base
    return out


def ranked_lists(labels, d_np, margin):
    """Per query: list of (index, type) ranked by shifted distance, lower batch index first on ties."""
    n = len(labels)
    lists = []
    for i in range(n):
        items = []
        for j in range(n):
            if j == i:
                continue
            is_pos = labels[j] == labels[i]
            items.append((d_np[i, j] + (margin if is_pos else 0.0), j, is_pos))
        items.sort()
        lists.append([(j, "p" if is_pos else "n") for _, j, is_pos in items])
    return lists


def ref_rank_triplet(labels, emb, margin, weighted=True):
    n = len(labels)
    d = [[tf.reduce_sum(tf.square(emb[i] - emb[j])) for j in range(n)] for i in range(n)]
    d_np = np.array([[float(x.numpy()) for x in row] for row in d])
    total, queries = tf.constant(0.0, tf.float64), 0
    for i, ranked in enumerate(ranked_lists(labels, d_np, margin)):
        types = [t for _, t in ranked]
        if "p" not in types:
            continue
        queries += 1
        gains = brute_gains(types)
        if not gains:
            continue
        s = tf.add_n([(d[i][ranked[p][0]] - d[i][ranked[q][0]] + margin) * (w if weighted else 1.0)
                      for (p, q), w in gains.items()])
        total += s / len(gains)
    return total / queries if queries else total


# ---------- closed-form gains ----------

def _to_indicators(lists):
    pos = np.array([[t == "p" for t in ty] for ty in lists], np.float64)
    neg = np.array([[t == "n" for t in ty] for ty in lists], np.float64)
    return pos, neg


def test_swap_gains_match_brute_force():
    rng = np.random.default_rng(0)
    lists = [list(rng.choice(["p", "n", "-"], p=[0.35, 0.6, 0.05], size=9)) for _ in range(300)]
    lists += [list("pn"), list("np"), list("nnnp"), list("pnnp"), list("nppp"), list("pppp"),
              list("nnnn"), list("npnpn-"), list("-npnp")]
    lists = [t + ["-"] * (9 - len(t)) for t in lists]  # pad with ignored items to one length
    pos, neg = _to_indicators(lists)
    w = L.swap_gain_matrix(tf.constant(pos), tf.constant(neg)).numpy()
    last_positive_swaps = 0
    for i, types in enumerate(lists):
        want = np.zeros((len(types), len(types)))
        for (p, q), g in brute_gains(types).items():
            want[p, q] = g
            last_positive_swaps += p == max(r for r, t in enumerate(types) if t == "p")
            assert g > 0  # moving a positive up always helps
        np.testing.assert_allclose(w[i], want, rtol=1e-12, atol=1e-12, err_msg="".join(types))
    assert last_positive_swaps > 100  # the -1/(2 pi_M) case is exercised


def test_ap_eq6_matches_reference():
    lists = [list("pppn"), list("npnp"), list("nnnp"), list("nnnn"), list("-pnp")]
    pos, _ = _to_indicators(lists)
    got = L.average_precision_eq6(tf.constant(pos)).numpy()
    np.testing.assert_allclose(got, [ap_eq6(t) for t in lists], rtol=1e-12)
    assert got[0] == pytest.approx(1.0)


def test_r1_gain_examples():
    # "np" -> "pn": Eq. 6 AP 1/2 - 1/4 + 1/2 = 0.75 -> 1, R1 0 -> 1: gain 1.25.
    w = L.swap_gain_matrix(tf.constant([[0.0, 1.0]]), tf.constant([[1.0, 0.0]])).numpy()
    np.testing.assert_allclose(w[0], [[0, 0], [1.25, 0]])
    # "nnp" -> "pnn" is not a single swap with rank 2; swapping with rank 2 gives "npn": no R1 gain.
    w = L.swap_gain_matrix(tf.constant([[0.0, 0.0, 1.0]]), tf.constant([[1.0, 1.0, 0.0]])).numpy()
    ap = lambda t: ap_eq6(list(t))
    np.testing.assert_allclose(w[0, 2], [ap("pnn") + 1 - ap("nnp"), ap("npn") - ap("nnp"), 0], rtol=1e-6)


# ---------- the loss ----------

def _batches():
    rng = np.random.default_rng(7)
    out = []
    for labels in ([0, 0, 0, 1, 1, 2, 2, 3, 3], list(rng.integers(0, 3, size=10)), [0, 0, 1, 1]):
        out.append((np.array(labels), rng.normal(scale=0.6, size=(len(labels), 4)), 0.5))
    # Exact ties (integer embeddings and margin): shifted positives tie with negatives.
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    out.append((labels, rng.integers(-1, 2, size=(8, 2)).astype(float), 1.0))
    out.append((labels, np.zeros((8, 2)), 1.0))  # all distances zero
    return out


BATCHES = _batches()


@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("case", range(len(BATCHES)))
def test_loss_values_and_gradients(case, weighted):
    labels, emb, margin = BATCHES[case]
    x = tf.Variable(emb)
    with tf.GradientTape(persistent=True) as tape:
        got = L.rank_triplet_loss(labels, x, margin=margin, weighted=weighted)
        want = ref_rank_triplet(labels, x, margin, weighted)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-9, atol=1e-12)
    g_got, g_want = tape.gradient(got, x).numpy(), tape.gradient(want, x)
    g_want = np.zeros_like(emb) if g_want is None else g_want.numpy()
    np.testing.assert_allclose(g_got, g_want, rtol=1e-7, atol=1e-10)


def test_tf_function_float32_matches_eager_and_class():
    labels, emb, margin = BATCHES[0]
    emb = emb.astype(np.float32)
    eager = L.rank_triplet_loss(labels, emb, margin)
    graph = tf.function(L.rank_triplet_loss)(labels, emb, margin)
    via_class = L.RankTripletLoss(margin=margin)(labels.astype(np.float32)[:, None], emb)
    np.testing.assert_allclose([graph.numpy(), via_class.numpy()], [eager.numpy()] * 2, rtol=1e-5)
    base = L.RankTripletBaselineLoss(margin=margin)(labels, emb)
    np.testing.assert_allclose(base.numpy(), L.rank_triplet_loss(labels, emb, margin, weighted=False).numpy(),
                               rtol=1e-6)


@pytest.mark.parametrize("labels", [[3, 3, 3, 3], [0, 1, 2, 3], [0, 1], [5, 5], [2]])
@pytest.mark.parametrize("squared", [True, False])
def test_degenerate_batches_give_zero_and_finite_gradients(labels, squared):
    x = tf.Variable(np.ones((len(labels), 3), np.float32))  # all distances zero
    for weighted in (True, False):
        with tf.GradientTape() as tape:
            loss = L.rank_triplet_loss(labels, x, weighted=weighted, squared=squared)
        assert loss.numpy() == 0.0
        g = tape.gradient(loss, x)
        assert g is None or np.all(np.isfinite(g.numpy()))


def test_plain_distance_at_zero_has_finite_gradient():
    x = tf.Variable(np.array([[0.0, 0.0], [0.0, 0.0], [0.1, 0.0], [0.1, 0.1]], np.float32))
    with tf.GradientTape() as tape:
        loss = L.rank_triplet_loss([0, 0, 1, 1], x, squared=False)
    assert loss.numpy() > 0
    assert np.all(np.isfinite(tape.gradient(loss, x).numpy()))


def test_perfect_batch_gives_zero_loss_and_perfect_stats():
    labels = np.repeat(np.arange(4), 3)
    emb = np.repeat(np.eye(4) * 10.0, 3, axis=0)  # same-identity points coincide, others far apart
    assert L.rank_triplet_loss(labels, emb, margin=1.0).numpy() == 0.0
    stats = L.batch_ranking_stats(labels, emb, margin=1.0)
    assert stats["mAP"].numpy() == pytest.approx(1.0)
    assert stats["R1"].numpy() == 1.0
    assert stats["misranked_pairs"].numpy() == 0.0
    assert stats["num_queries"].numpy() == 12.0


def test_batch_ranking_stats_against_reference():
    labels, emb, _ = BATCHES[1]
    margin = 0.3
    stats = {k: v.numpy() for k, v in L.batch_ranking_stats(labels, emb, margin).items()}
    d = ((emb[:, None] - emb[None]) ** 2).sum(-1)
    aps, r1s, mis = [], [], 0
    for ranked in ranked_lists(labels, d, margin):
        types = [t for _, t in ranked]
        if "p" in types:
            aps.append(ap_eq6(types))
            r1s.append(r1(types))
        mis += len(brute_gains(types))
    assert stats["num_queries"] == len(aps)
    np.testing.assert_allclose([stats["mAP"], stats["R1"], stats["misranked_pairs"]],
                               [np.mean(aps), np.mean(r1s), mis], rtol=1e-6)


def test_loss_decreases_when_training():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(6), 4)
    x = tf.Variable(rng.normal(size=(24, 8)).astype(np.float32))
    opt = tf.keras.optimizers.Adam(0.1)
    step = tf.function(lambda: L.rank_triplet_loss(labels, x))
    first = step().numpy()
    for _ in range(30):
        with tf.GradientTape() as tape:
            loss = step()
        opt.apply_gradients([(tape.gradient(loss, x), x)])
    assert step().numpy() < 0.5 * first
    assert L.batch_ranking_stats(labels, x)["mAP"].numpy() > 0.9


def test_unknown_batch_size_in_graph():
    labels, emb, margin = BATCHES[1]
    spec = [tf.TensorSpec([None], tf.int64), tf.TensorSpec([None, emb.shape[1]], tf.float64)]
    for fn in (L.rank_triplet_loss, L.batch_hard_triplet_loss, L.triplet_loss, L.quadruplet_loss,
               L.batch_contrastive_loss):
        graph = tf.function(lambda l, e, fn=fn: fn(l, e), input_signature=spec)
        np.testing.assert_allclose(graph(labels, emb).numpy(), fn(labels, emb).numpy(), rtol=1e-12)
    stats = tf.function(lambda l, e: L.batch_ranking_stats(l, e, margin), input_signature=spec)(labels, emb)
    eager = L.batch_ranking_stats(labels, emb, margin)
    np.testing.assert_allclose([stats[k].numpy() for k in eager], [eager[k].numpy() for k in eager])
