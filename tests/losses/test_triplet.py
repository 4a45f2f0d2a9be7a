"""Triplet, batch-hard and quadruplet losses against slow per-anchor loops."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

from tfreid import losses as L


def _dmat(emb, squared=True):
    """Distance matrix as a list of lists of scalar tensors, one obvious pair at a time."""
    n = emb.shape[0]
    out = [[None] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            d2 = tf.reduce_sum(tf.square(emb[i] - emb[j]))
            # sqrt'(0) is undefined: use 0 there, like the losses.
            out[i][j] = d2 if squared else (tf.sqrt(d2) if d2.numpy() > 0 else 0.0 * d2)
    return out


def _mean_hinge(first, second, m):
    """mean_t max(first_t - second_t + m, 0) over lists of scalar tensors; 0 if empty."""
    if not first:
        return tf.constant(0.0, tf.float64)
    return tf.reduce_mean(tf.maximum(tf.stack(first) - tf.stack(second) + m, 0.0))


def ref_triplet(labels, emb, m, d=None):
    d = d or _dmat(emb)
    n = len(labels)
    ap, an = [], []
    for a in range(n):
        for p in range(n):
            if p == a or labels[p] != labels[a]:
                continue
            for q in range(n):
                if labels[q] != labels[a]:
                    ap.append(d[a][p])
                    an.append(d[a][q])
    return _mean_hinge(ap, an, m)


def ref_batch_hard(labels, emb, m, soft, squared):
    d = _dmat(emb, squared)
    terms = []
    n = len(labels)
    for a in range(n):
        dp = [d[a][p] for p in range(n) if p != a and labels[p] == labels[a]]
        dn = [d[a][q] for q in range(n) if labels[q] != labels[a]]
        if dp and dn:
            x = tf.reduce_max(tf.stack(dp)) - tf.reduce_min(tf.stack(dn))
            terms.append(tf.nn.softplus(x) if soft else tf.maximum(x + m, 0.0))
    return tf.add_n(terms) / len(terms) if terms else tf.constant(0.0, tf.float64)


def ref_quadruplet(labels, emb, m1, m2):
    d = _dmat(emb)
    n = len(labels)
    ij, kl = [], []
    for i in range(n):
        for j in range(n):
            if j == i or labels[j] != labels[i]:
                continue
            for k in range(n):
                for l in range(n):
                    if len({labels[i], labels[k], labels[l]}) == 3:
                        ij.append(d[i][j])
                        kl.append(d[k][l])
    return ref_triplet(labels, emb, m1, d) + _mean_hinge(ij, kl, m2)


def _batches():
    rng = np.random.default_rng(3)
    out = []
    for labels in ([0, 0, 1, 1, 2, 2, 3, 3], list(rng.integers(0, 3, size=9)), [0, 1, 2, 3],
                   [7, 7, 7, 7], [0, 1], [4, 4]):
        emb = rng.normal(scale=0.5, size=(len(labels), 3))
        out.append((np.array(labels), emb))
    # Ties: integer embeddings give exact equal distances.
    out.append((np.array([0, 0, 1, 1, 2, 2]), rng.integers(-1, 2, size=(6, 2)).astype(float)))
    return out


BATCHES = _batches()


def _check(fn, ref, labels, emb, rtol=1e-9):
    x = tf.Variable(emb)
    with tf.GradientTape(persistent=True) as tape:
        got, want = fn(labels, x), ref(labels, x)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=rtol, atol=1e-12)
    g_got, g_want = tape.gradient(got, x), tape.gradient(want, x)
    g_got = np.zeros_like(emb) if g_got is None else g_got.numpy()
    g_want = np.zeros_like(emb) if g_want is None else g_want.numpy()
    assert np.all(np.isfinite(g_got))
    np.testing.assert_allclose(g_got, g_want, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("case", range(len(BATCHES)))
def test_triplet(case):
    labels, emb = BATCHES[case]
    _check(lambda l, e: L.triplet_loss(l, e, margin=0.7), lambda l, e: ref_triplet(l, e, 0.7), labels, emb)


@pytest.mark.parametrize("soft,squared", [(False, True), (True, False), (False, False)])
@pytest.mark.parametrize("case", range(len(BATCHES)))
def test_batch_hard(case, soft, squared):
    labels, emb = BATCHES[case]
    _check(lambda l, e: L.batch_hard_triplet_loss(l, e, margin=0.3, soft_margin=soft, squared=squared),
           lambda l, e: ref_batch_hard(l, e, 0.3, soft, squared), labels, emb)


@pytest.mark.parametrize("case", range(len(BATCHES)))
def test_quadruplet(case):
    labels, emb = BATCHES[case]
    _check(lambda l, e: L.quadruplet_loss(l, e, margin1=1.0, margin2=0.5),
           lambda l, e: ref_quadruplet(l, e, 1.0, 0.5), labels, emb)


def test_batch_hard_numeric_gradient():
    rng = np.random.default_rng(5)
    labels = np.array([0, 0, 0, 1, 1, 2, 2])
    emb = rng.normal(size=(7, 4))
    x = tf.Variable(emb)
    with tf.GradientTape() as tape:
        loss = L.batch_hard_triplet_loss(labels, x, margin=0.5)
    g = tape.gradient(loss, x).numpy()
    eps, num = 1e-6, np.zeros_like(emb)
    for idx in np.ndindex(*emb.shape):
        e1, e2 = emb.copy(), emb.copy()
        e1[idx] += eps
        e2[idx] -= eps
        num[idx] = (L.batch_hard_triplet_loss(labels, e1, 0.5).numpy()
                    - L.batch_hard_triplet_loss(labels, e2, 0.5).numpy()) / (2 * eps)
    np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-7)


def test_degenerate_batches_are_zero():
    emb = np.ones((4, 3), np.float32)
    for fn in (L.triplet_loss, L.batch_hard_triplet_loss, L.quadruplet_loss):
        assert fn([1, 1, 1, 1], emb).numpy() == 0.0  # one identity
        assert fn([0, 1, 2, 3], emb).numpy() == 0.0  # no positives
    # Two identities: triplets exist, quadruplets do not.
    np.testing.assert_allclose(L.quadruplet_loss([0, 0, 1, 1], emb).numpy(), 1.0)


def test_tf_function_and_bad_shapes():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(8, 4)).astype(np.float32)
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    for fn in (L.triplet_loss, L.batch_hard_triplet_loss, L.quadruplet_loss):
        np.testing.assert_allclose(tf.function(fn)(labels, emb).numpy(), fn(labels, emb).numpy(), rtol=1e-5)
        with pytest.raises(ValueError, match="batch size 3"):
            fn([0, 0, 1], emb)
        with pytest.raises(ValueError, match=r"\[batch, dim\]"):
            fn(labels, emb[:, 0])


@pytest.mark.parametrize("loss", ["contrastive", "triplet", "quadruplet", "batch_hard",
                                  "rank_triplet_baseline", "rank_triplet"])
def test_cnn_trainer_passes_margin_to_every_loss(loss):
    """--model=cnn --loss=quadruplet --margin=X once passed margin= to quadruplet_loss (a TypeError)."""
    import numpy as np
    import tensorflow as tf

    from tfreid import losses as L
    from tfreid.training.cnn import CNNTrainConfig, make_loss_fn

    labels = tf.constant([0, 0, 1, 1, 2, 2])
    emb = tf.math.l2_normalize(tf.constant(np.random.default_rng(0).normal(size=(6, 8)), tf.float32), -1)
    small = float(make_loss_fn(CNNTrainConfig(loss=loss, margin=0.1))(labels, emb))
    large = float(make_loss_fn(CNNTrainConfig(loss=loss, margin=2.0))(labels, emb))
    assert np.isfinite(small) and large > small       # the margin reaches the loss
    if loss == "quadruplet":
        want = float(L.quadruplet_loss(labels, emb, margin1=2.0))
        assert large == pytest.approx(want)
