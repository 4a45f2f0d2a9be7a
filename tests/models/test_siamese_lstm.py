"""Tests of the siamese LSTM (tfreid.models: stripe_lstm, siamese, lstm_gates, optimizer):
shapes, weights, initialisation, gates, saving, training."""

import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfreid.losses import ContrastivePairLoss, contrastive_pair_loss  # noqa: E402
from tfreid.models.mlp_baseline import build_stripe_mlp  # noqa: E402
from tfreid.models.lstm_gates import gate_activations, gate_norms  # noqa: E402
from tfreid.models.optimizer import siamese_optimizer  # noqa: E402
from tfreid.models.siamese import PairDistance, build_siamese, embedding_of  # noqa: E402
from tfreid.models.stripe_lstm import build_stripe_lstm  # noqa: E402

SCALES = (6, 3, 2)  # a small stand-in for LOMO's (24, 11, 5)
R, D, N = sum(SCALES), 7, 4


def _x(batch=3, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, R, D)).astype(np.float32)


def _lstm_params(d, n):
    return 4 * n * (d + n + 1)


@pytest.mark.parametrize("mode, num_lstms", [("one_sequence", 1), ("per_scale", 3)])
def test_shapes_and_weight_counts(mode, num_lstms):
    model = build_stripe_lstm(R, D, N, scales=SCALES, mode=mode, seed=0)
    assert model.output_shape == (None, R * N)
    assert model(_x()).shape == (3, R * N)
    lstms = [l for l in model.layers if isinstance(l, keras.layers.LSTM)]
    assert len(lstms) == num_lstms
    assert model.count_params() == num_lstms * _lstm_params(D, N) + (R * N) ** 2
    assert model.get_layer("w_m").bias is None  # linear W_M, no bias (it would cancel in D)


def test_single_scale_ignores_mode():
    a = build_stripe_lstm(R, D, N, mode="per_scale", seed=0)
    assert a.count_params() == _lstm_params(D, N) + (R * N) ** 2


def test_per_scale_rows_are_independent_sequences():
    # Changing the last scale's rows must not change the first scale's LSTM outputs.
    model = build_stripe_lstm(R, D, N, scales=SCALES, mode="per_scale", seed=0)
    x = _x()
    y = x.copy()
    y[:, SCALES[0]:] += 1.0
    ga, gb = gate_activations(model, x)["hidden"], gate_activations(model, y)["hidden"]
    np.testing.assert_allclose(ga[:, :SCALES[0]], gb[:, :SCALES[0]], atol=1e-6)
    assert np.abs(ga[:, SCALES[0]:] - gb[:, SCALES[0]:]).max() > 1e-3
    # In one_sequence mode the second scale does depend on the first scale's rows.
    one = build_stripe_lstm(R, D, N, scales=SCALES, mode="one_sequence", seed=0)
    y = x.copy()
    y[:, 0] += 1.0
    h1, h2 = gate_activations(one, x)["hidden"], gate_activations(one, y)["hidden"]
    assert np.abs(h1[:, SCALES[0]] - h2[:, SCALES[0]]).max() > 1e-4


@pytest.mark.parametrize("kwargs, match", [
    (dict(scales=(5, 5)), "summing to num_rows"),
    (dict(scales=(12, -1)), "positive"),
    (dict(mode="two_sequences"), "mode must be one of"),
    (dict(hidden_units=0), "positive"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_stripe_lstm(R, D, **kwargs)


@pytest.mark.parametrize("unit_forget_bias", [True, False])
def test_initialiser_range(unit_forget_bias):
    d, n = 30, 6
    model = build_stripe_lstm(R, d, n, scales=SCALES, unit_forget_bias=unit_forget_bias, seed=3)
    a = math.sqrt(1.0 / (d + n))
    for w in model.trainable_weights:
        values = w.numpy()
        if "bias" in w.path:
            expected = np.zeros(4 * n)
            expected[n:2 * n] = 1.0 if unit_forget_bias else 0.0
            np.testing.assert_array_equal(values, expected)
        else:
            assert np.abs(values).max() <= a + 1e-7, w.path
            assert np.abs(values).max() > 0.9 * a, w.path  # spans the interval, not a narrower one
            assert abs(values.mean()) < 0.1 * a


def test_seed_is_deterministic():
    a = build_stripe_lstm(R, D, N, scales=SCALES, seed=5)(_x())
    b = build_stripe_lstm(R, D, N, scales=SCALES, seed=5)(_x())
    c = build_stripe_lstm(R, D, N, scales=SCALES, seed=6)(_x())
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


def test_l2_normalize_flag():
    s = build_stripe_lstm(R, D, N, l2_normalize=True, seed=0)(_x())
    np.testing.assert_allclose(np.linalg.norm(s, axis=1), 1.0, rtol=1e-5)


def test_siamese_shares_one_set_of_weights_and_computes_euclidean_distance():
    emb = build_stripe_lstm(R, D, N, scales=SCALES, seed=0)
    siamese = build_siamese(emb)
    assert embedding_of(siamese) is emb
    assert len(siamese.trainable_weights) == len(emb.trainable_weights)
    assert {id(w) for w in siamese.trainable_weights} == {id(w) for w in emb.trainable_weights}
    assert siamese.count_params() == emb.count_params()
    xp, xq = _x(4, 1), _x(4, 2)
    d = siamese([xp, xq]).numpy()
    ref = np.linalg.norm(emb(xp).numpy() - emb(xq).numpy(), axis=1)
    assert d.shape == (4,)
    np.testing.assert_allclose(d, ref, rtol=1e-5)


def test_gradient_at_zero_distance_is_finite():
    emb = build_stripe_lstm(R, D, N, seed=0)
    siamese = build_siamese(emb)
    x = _x(2)
    with tf.GradientTape() as tape:
        d = tf.reduce_sum(siamese([x, x]))
    grads = tape.gradient(d, siamese.trainable_weights)
    for g in grads:
        assert g is not None and np.all(np.isfinite(g.numpy()))
    # Without the epsilon the square root's derivative at 0 is infinite: 0 * inf = NaN.
    s = tf.constant(np.ones((2, 3), np.float32))
    with tf.GradientTape() as tape:
        tape.watch(s)
        d0 = PairDistance(epsilon=0.0)([s, tf.identity(s)])
    assert np.isnan(tape.gradient(d0, s).numpy()).any()


@pytest.mark.parametrize("mode", ["one_sequence", "per_scale"])
def test_gradient_reaches_every_weight(mode):
    siamese = build_siamese(build_stripe_lstm(R, D, N, scales=SCALES, mode=mode, seed=0))
    y = tf.constant([0.0, 1.0, 0.0])
    with tf.GradientTape() as tape:
        # margin 10: the negative pair is inside the margin, so both loss terms are active
        loss = tf.reduce_sum(contrastive_pair_loss(y, siamese([_x(3, 1), _x(3, 2)]), margin=10.0))
    grads = tape.gradient(loss, siamese.trainable_weights)
    for w, g in zip(siamese.trainable_weights, grads):
        assert g is not None and np.abs(g.numpy()).max() > 0, w.path


@pytest.mark.parametrize("mode", ["one_sequence", "per_scale"])
def test_gate_activations_reproduce_the_lstm_output(mode):
    model = build_stripe_lstm(R, D, N, scales=SCALES, mode=mode, seed=2)
    x = _x(5, 3)
    gates = gate_activations(model, x)
    lstms = [l for l in model.layers if isinstance(l, keras.layers.LSTM)]
    keras_h = keras.Model(model.inputs[0], [l.output for l in lstms])(x)
    keras_h = tf.concat(keras_h if isinstance(keras_h, list) else [keras_h], axis=1).numpy()
    for key in ("input", "forget", "output", "candidate", "cell", "hidden"):
        assert gates[key].shape == (5, R, N), key
    np.testing.assert_allclose(gates["hidden"], keras_h, atol=1e-5)
    for key in ("input", "forget", "output"):
        assert 0.0 < gates[key].numpy().min() and gates[key].numpy().max() < 1.0
    np.testing.assert_allclose(gates["hidden"], gates["output"] * np.tanh(gates["cell"]), atol=1e-6)


def test_gate_activations_match_a_numpy_reference():
    # i, f, c, o kernel order and c_r = f c_{r-1} + i g: a wrong order cannot match Keras above,
    # and this loop pins the semantics of every returned entry.
    model = build_stripe_lstm(R, D, N, seed=4)
    x = _x(2, 5)
    kernel, rec, bias = [w.numpy().astype(np.float64) for w in model.get_layer("lstm").weights]
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    h, c = np.zeros((2, N)), np.zeros((2, N))
    gates = {k: v.numpy() for k, v in gate_activations(model, x).items()}
    for r in range(R):
        z = x[:, r] @ kernel + h @ rec + bias
        i, f, g, o = sig(z[:, :N]), sig(z[:, N:2 * N]), np.tanh(z[:, 2 * N:3 * N]), sig(z[:, 3 * N:])
        c = f * c + i * g
        h = o * np.tanh(c)
        for key, ref in (("input", i), ("forget", f), ("output", o), ("candidate", g),
                         ("cell", c), ("hidden", h)):
            np.testing.assert_allclose(gates[key][:, r], ref, atol=1e-5, err_msg=f"{key} row {r}")


def test_gate_norms():
    model = build_stripe_lstm(R, D, N, scales=SCALES, seed=0)
    x = _x(2)
    norms = gate_norms(build_siamese(model), x).numpy()  # accepts the siamese model too
    gates = gate_activations(model, x)
    assert norms.shape == (2, R, 3)
    np.testing.assert_allclose(norms[..., 1], np.linalg.norm(gates["forget"], axis=-1), rtol=1e-6)
    assert np.all(norms > 0) and np.all(norms < math.sqrt(N))


def test_gate_inspection_bad_inputs():
    model = build_stripe_lstm(R, D, N, seed=0)
    with pytest.raises(ValueError, match="expects"):
        gate_activations(model, np.zeros((2, R + 1, D), np.float32))
    with pytest.raises(ValueError, match="no LSTM layer"):
        gate_activations(build_stripe_mlp(R, D, units=8), _x())


def test_save_and_reload_keras_file(tmp_path):
    emb = build_stripe_lstm(R, D, N, scales=SCALES, seed=0)
    siamese = build_siamese(emb)
    siamese.compile(optimizer=siamese_optimizer(1e-3, 0.9, 10), loss=ContrastivePairLoss(0.5))
    siamese.optimizer.build(siamese.trainable_variables)
    path = str(tmp_path / "siamese.keras")
    siamese.save(path)
    loaded = keras.saving.load_model(path)
    xp, xq = _x(3, 1), _x(3, 2)
    np.testing.assert_allclose(loaded([xp, xq]), siamese([xp, xq]), rtol=1e-6)
    np.testing.assert_allclose(embedding_of(loaded)(xp), emb(xp), rtol=1e-6)
    assert len(loaded.trainable_weights) == len(siamese.trainable_weights)
    assert loaded.loss.margin == 0.5


def test_optimizer_matches_the_paper():
    opt = siamese_optimizer(0.01, decay_rate=0.5, steps_per_epoch=4)
    assert opt.rho == pytest.approx(0.95)
    assert opt.clipvalue == 5.0
    schedule = opt.learning_rate if callable(opt.learning_rate) else opt._learning_rate
    assert float(schedule(0)) == pytest.approx(0.01)
    assert float(schedule(3)) == pytest.approx(0.01)   # staircase: constant within an epoch
    assert float(schedule(8)) == pytest.approx(0.0025)  # two epochs later: 0.01 * 0.5^2
    with pytest.raises(ValueError, match="decay_rate"):
        siamese_optimizer(0.01, decay_rate=1.5)


def test_clipping_is_elementwise():
    # With clipvalue 5 a gradient of 1000 acts like 5: the first RMSProp step on the clipped
    # element equals the step of a gradient of exactly 5, the unclipped element is unchanged.
    def first_step(g):
        v = tf.Variable([0.0, 0.0])
        opt = siamese_optimizer(0.1)
        opt.apply_gradients([(tf.constant(g), v)])
        return v.numpy()

    np.testing.assert_allclose(first_step([1000.0, 2.0]), first_step([5.0, 2.0]), rtol=1e-6)
    assert abs(first_step([1000.0, 2.0])[0] - first_step([6.0, 2.0])[0]) < 1e-7


def _separable_pairs(seed=0, num_ids=5, per_id=3):
    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(num_ids, R, D))
    x = np.repeat(protos, per_id, axis=0) + 0.3 * rng.normal(size=(num_ids * per_id, R, D))
    pids = np.repeat(np.arange(num_ids), per_id)
    i, j = np.triu_indices(len(pids), k=1)
    y = (pids[i] != pids[j]).astype(np.float32)
    return x.astype(np.float32)[i], x.astype(np.float32)[j], y


def test_training_lowers_the_contrastive_loss():
    # Eager steps: tracing the LSTM loops' gradient graph costs more than a dozen eager steps.
    xp, xq, y = _separable_pairs()
    siamese = build_siamese(build_stripe_lstm(R, D, N, scales=SCALES, seed=0))
    opt = siamese_optimizer(3e-3, 0.95, steps_per_epoch=4)
    loss_fn = ContrastivePairLoss(0.5)  # summed over the pairs, as in the paper
    before = float(loss_fn(y, siamese([xp, xq])))
    for _ in range(12):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, siamese([xp, xq]))
        opt.apply_gradients(zip(tape.gradient(loss, siamese.trainable_weights), siamese.trainable_weights))
    d = siamese([xp, xq]).numpy()
    after = float(loss_fn(y, d))
    assert after < 0.5 * before, (before, after)
    assert d[y == 0].mean() < d[y == 1].mean()
