"""Contrastive losses against slow per-pair loops."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

from tfreid import losses as L


def test_pair_loss_matches_formula():
    rng = np.random.default_rng(0)
    d = rng.uniform(0, 1, size=50)
    y = rng.integers(0, 2, size=50)
    got = L.contrastive_pair_loss(y, d, margin=0.5).numpy()
    want = [0.5 * di**2 if yi == 0 else 0.5 * max(0.0, 0.5 - di) ** 2 for yi, di in zip(y, d)]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert got.shape == (50,)


def test_pair_loss_class_sums_and_accepts_column_input():
    y = np.array([[0], [1], [1]], np.float32)
    d = np.array([[0.2], [0.1], [0.7]], np.float32)
    loss = L.ContrastivePairLoss()
    assert loss.reduction == "sum"
    np.testing.assert_allclose(loss(y, d).numpy(), 0.02 + 0.08, rtol=1e-6)
    np.testing.assert_allclose(L.ContrastivePairLoss(margin=1.0, reduction="mean")(y, d).numpy(),
                               (0.02 + 0.405 + 0.045) / 3, rtol=1e-6)


def test_pair_loss_bad_shapes():
    with pytest.raises(ValueError, match="distances"):
        L.contrastive_pair_loss([0, 1], np.zeros((2, 3)))
    with pytest.raises(ValueError, match="3 pairs"):
        L.contrastive_pair_loss([0, 1, 1], np.zeros(2))


def _ref_batch_contrastive(labels, emb, margin, squared):
    total, count = 0.0, 0
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            d2 = tf.reduce_sum(tf.square(emb[i] - emb[j]))
            if squared:
                term = d2 if labels[i] == labels[j] else tf.maximum(margin - d2, 0.0)
            else:
                d = tf.sqrt(d2)
                term = tf.square(d) if labels[i] == labels[j] else tf.square(tf.maximum(margin - d, 0.0))
            total, count = total + term, count + 1
    return total / count if count else tf.constant(0.0, tf.float64)


@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_batch_contrastive_values_and_gradients(seed, squared):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=10)
    x = tf.Variable(rng.normal(scale=0.4, size=(10, 5)))
    with tf.GradientTape(persistent=True) as tape:
        got = L.batch_contrastive_loss(labels, x, margin=1.0, squared=squared)
        want = _ref_batch_contrastive(labels, x, 1.0, squared)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-9)
    np.testing.assert_allclose(tape.gradient(got, x).numpy(), tape.gradient(want, x).numpy(),
                               rtol=1e-7, atol=1e-10)


def test_batch_contrastive_degenerate():
    zero_grad_ok = tf.Variable(np.ones((3, 4), np.float32))  # identical embeddings: d = 0
    with tf.GradientTape() as tape:
        loss = L.batch_contrastive_loss([1, 1, 2], zero_grad_ok, squared=False)
    g = tape.gradient(loss, zero_grad_ok).numpy()
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(loss.numpy(), 2.0 / 3.0)  # two negative pairs at d = 0: m^2 each
    assert L.batch_contrastive_loss([5], np.ones((1, 4))).numpy() == 0.0
