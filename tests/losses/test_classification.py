"""Classification head and loss; serialization round trips of every tfreid loss."""

import inspect
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfreid import losses as L


def test_classification_loss_matches_loop():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 5))
    labels = rng.integers(0, 5, size=6)
    want = np.mean([np.log(np.exp(row).sum()) - row[y] for row, y in zip(logits, labels)])
    np.testing.assert_allclose(L.classification_loss(labels, logits).numpy(), want, rtol=1e-10)
    eps = 0.1
    smooth = np.mean([
        -sum(((1 - eps) * (c == y) + eps / 5) * (row[c] - np.log(np.exp(row).sum())) for c in range(5))
        for row, y in zip(logits, labels)])
    np.testing.assert_allclose(L.classification_loss(labels, logits, eps).numpy(), smooth, rtol=1e-10)
    np.testing.assert_allclose(L.ClassificationLoss()(labels.astype(np.float32)[:, None],
                                                      logits.astype(np.float32)).numpy(), want, rtol=1e-5)


def test_classification_bad_inputs():
    with pytest.raises(ValueError, match="logits"):
        L.classification_loss([0, 1], np.zeros(2))
    with pytest.raises(tf.errors.InvalidArgumentError, match="label >= number of logits"):
        L.classification_loss([0, 7], np.zeros((2, 3)))
    with pytest.raises(ValueError, match="label_smoothing"):
        L.classification_loss([0, 1], np.zeros((2, 3)), label_smoothing=1.5)
    with pytest.raises(ValueError, match="num_classes"):
        L.ClassificationHead(0)


def test_head_shapes_bias_and_config():
    head = L.ClassificationHead(7, use_bias=False)
    out = head(np.ones((3, 4), np.float32))
    assert out.shape == (3, 7)
    assert len(head.trainable_weights) == 1
    clone = L.ClassificationHead.from_config(head.get_config())
    assert clone.num_classes == 7 and clone.use_bias is False


def _registered_loss_classes():
    return {cls for key, cls in keras.saving.get_custom_objects().items()
            if key.startswith("tfreid>") and isinstance(cls, type) and issubclass(cls, keras.losses.Loss)}


def _changed_options(cls):
    """Every option of the class away from its default (floats + 0.25, bools flipped)."""
    options = {}
    for name, param in inspect.signature(cls).parameters.items():
        if param.kind is param.KEYWORD_ONLY:  # name, reduction, dtype
            continue
        options[name] = (not param.default) if isinstance(param.default, bool) else param.default + 0.25
    return options


def test_every_registered_loss_is_in_the_registry():
    assert _registered_loss_classes() == set(L.LOSSES.values())


@pytest.mark.parametrize("cls", sorted(L.LOSSES.values(), key=lambda c: c.__name__),
                         ids=lambda c: c.__name__)
def test_registered_loss_round_trips_and_equals_its_function(cls):
    options = _changed_options(cls)
    assert options, f"{cls.__name__} has no option to round-trip"
    # A per-sample loss unreduced, so that its values compare one by one with the function's.
    loss = cls(**options, name="renamed", **({"reduction": "none"} if cls.per_sample else {}))
    config = keras.losses.serialize(loss)
    assert config["registered_name"] == f"tfreid>{cls.__name__}"
    again = keras.losses.deserialize(config)
    assert type(again) is cls
    assert again.get_config() == loss.get_config()
    assert cls.from_config(loss.get_config()).get_config() == loss.get_config()
    assert again.options() == options and again.name == "renamed"

    rng = np.random.default_rng(0)
    labels = np.array([0, 0, 1, 1, 2, 2], np.float32)
    y_pred = rng.normal(size=(6, 4)).astype(np.float32)  # embeddings, or logits of 4 classes
    if cls.per_sample:
        y_pred, labels = np.abs(y_pred[:, 0]), labels % 2  # pair distances, same/different
    np.testing.assert_allclose(again(labels, y_pred).numpy(), cls.fn(labels, y_pred, **options).numpy(),
                               rtol=1e-6)


@pytest.mark.parametrize("cls", sorted({c for c in L.LOSSES.values() if not c.per_sample},
                                       key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_batch_level_losses_refuse_reduction_and_sample_weight(cls):
    labels, y_pred = np.array([0, 0, 1, 1], np.float32), np.eye(4, dtype=np.float32)
    assert cls(reduction="sum_over_batch_size")(labels, y_pred).shape == ()
    for reduction in ("sum", "mean", "none", None):
        with pytest.raises(ValueError, match="batch-level loss.*reduction"):
            cls(reduction=reduction)
    with pytest.raises(ValueError, match="batch-level loss.*sample_weight"):
        cls()(labels, y_pred, sample_weight=np.ones(4, np.float32))


def test_per_sample_loss_takes_sample_weight_and_reduction():
    y = np.array([0, 1, 1], np.float32)
    d = np.array([0.2, 0.1, 0.7], np.float32)
    per_pair = L.contrastive_pair_loss(y, d).numpy()
    weights = np.array([2.0, 0.0, 1.0], np.float32)
    np.testing.assert_allclose(L.ContrastivePairLoss()(y, d, sample_weight=weights).numpy(),
                               (per_pair * weights).sum(), rtol=1e-6)
    np.testing.assert_allclose(L.ContrastivePairLoss(reduction="none")(y, d).numpy(), per_pair, rtol=1e-6)
    with pytest.raises(TypeError):
        L.ContrastivePairLoss(0.5, "mean")  # name, reduction and dtype are keyword-only


def test_get_by_short_name():
    assert isinstance(L.get("rank_triplet", margin=0.5), L.RankTripletLoss)
    assert L.get("rank_triplet_baseline").weighted is False
    with pytest.raises(ValueError, match="unknown loss 'nope'"):
        L.get("nope")


def test_model_fit_save_and_reload(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 5)).astype(np.float32)
    y = np.repeat(np.arange(4), 4)
    inp = keras.Input((5,))
    emb = keras.layers.Dense(3, name="embedding")(inp)
    logits = L.ClassificationHead(4, name="head")(emb)
    model = keras.Model(inp, {"embedding": emb, "head": logits})
    model.compile(optimizer="adam", loss={"embedding": L.RankTripletLoss(margin=0.5),
                                          "head": L.ClassificationLoss()})
    model.fit(x, {"embedding": y, "head": y}, batch_size=16, epochs=1, verbose=0, shuffle=False)
    path = tmp_path / "m.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert isinstance(reloaded.loss["embedding"], L.RankTripletLoss)
    assert reloaded.loss["embedding"].margin == 0.5
    assert isinstance(reloaded.get_layer("head"), L.ClassificationHead)
    for a, b in zip(reloaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
