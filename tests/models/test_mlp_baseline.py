"""Tests of tfreid.models.mlp_baseline (Varior et al. 2016, Eq. 8-9 baselines)."""

import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfreid.losses import ContrastivePairLoss  # noqa: E402
from tfreid.models.mlp_baseline import build_stripe_mlp  # noqa: E402
from tfreid.models.optimizer import siamese_optimizer  # noqa: E402
from tfreid.models.siamese import build_siamese  # noqa: E402
from tfreid.models.stripe_lstm import build_stripe_lstm  # noqa: E402

R, D = 5, 6


def _x(batch=3, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, R, D)).astype(np.float32)


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_default_size_matches_the_lstm_embedding(num_layers):
    n = 4
    mlp = build_stripe_mlp(R, D, num_layers, hidden_units=n, seed=0)
    lstm = build_stripe_lstm(R, D, n, seed=0)
    assert mlp.output_shape == lstm.output_shape == (None, R * n)
    assert mlp.name == f"stripe_mlp{num_layers}"
    dense = [l for l in mlp.layers if isinstance(l, keras.layers.Dense)]
    assert len(dense) == num_layers
    k = R * n
    assert mlp.count_params() == (R * D * k + k) + (num_layers - 1) * (k * k + k)
    out = mlp(_x()).numpy()
    assert out.shape == (3, k) and np.all(np.abs(out) < 1.0)  # tanh by default


def test_layer_sizes_and_activation():
    mlp = build_stripe_mlp(R, D, 3, units=[16, 8, 4], activation="relu", seed=0)
    assert [l.units for l in mlp.layers if isinstance(l, keras.layers.Dense)] == [16, 8, 4]
    out = mlp(_x(8)).numpy()
    assert out.shape == (8, 4) and out.min() >= 0.0
    # The input is the row-major concatenation [x_1; ...; x_R]: a 1-layer linear model is x W + b.
    lin = build_stripe_mlp(R, D, 1, units=3, activation="linear", seed=1)
    w, b = lin.get_layer("fc1").get_weights()
    x = _x(2)
    np.testing.assert_allclose(lin(x), x.reshape(2, R * D) @ w + b, rtol=1e-5, atol=1e-6)


def test_initialiser_range():
    mlp = build_stripe_mlp(R, D, 2, units=[20, 10], seed=2)
    for layer, fan_in, fan_out in ((mlp.get_layer("fc1"), R * D, 20), (mlp.get_layer("fc2"), 20, 10)):
        w, b = layer.get_weights()
        a = math.sqrt(1.0 / (fan_in + fan_out))
        assert np.abs(w).max() <= a + 1e-7 and np.abs(w).max() > 0.9 * a
        np.testing.assert_array_equal(b, 0.0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_layers=0), "num_layers"),
    (dict(num_layers=2, units=[4]), "one size per layer"),
    (dict(units=0), "positive"),
    (dict(activation="no_such_activation"), "no_such_activation"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_stripe_mlp(R, D, **kwargs)


def test_l2_normalize_flag():
    out = build_stripe_mlp(R, D, units=6, l2_normalize=True, seed=0)(_x())
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_siamese_baseline_trains_saves_and_reloads(tmp_path):
    rng = np.random.default_rng(0)
    protos = rng.normal(size=(5, R, D))
    x = (np.repeat(protos, 3, axis=0) + 0.3 * rng.normal(size=(15, R, D))).astype(np.float32)
    pids = np.repeat(np.arange(5), 3)
    i, j = np.triu_indices(15, k=1)
    y = (pids[i] != pids[j]).astype(np.float32)
    siamese = build_siamese(build_stripe_mlp(R, D, 2, units=16, seed=0))
    assert len(siamese.trainable_weights) == 4  # one shared set: 2 kernels + 2 biases
    opt = siamese_optimizer(3e-3)
    loss_fn = ContrastivePairLoss(0.5)
    before = float(loss_fn(y, siamese([x[i], x[j]])))
    for _ in range(15):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, siamese([x[i], x[j]]))
        opt.apply_gradients(zip(tape.gradient(loss, siamese.trainable_weights), siamese.trainable_weights))
    after = float(loss_fn(y, siamese([x[i], x[j]])))
    assert after < 0.5 * before, (before, after)
    path = str(tmp_path / "mlp.keras")
    siamese.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded([x[i], x[j]]), siamese([x[i], x[j]]), rtol=1e-6)
