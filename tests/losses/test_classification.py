"""Classification head and loss; serialization round trips of every tfreid loss."""

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


LOSS_CASES = [
    (L.BatchContrastiveLoss, {"margin": 2.0, "squared": False}),
    (L.TripletLoss, {"margin": 0.3}),
    (L.BatchHardTripletLoss, {"margin": 0.2, "soft_margin": True, "squared": False}),
    (L.QuadrupletLoss, {"margin1": 0.8, "margin2": 0.4}),
    (L.RankTripletLoss, {"margin": 0.6}),
    (L.RankTripletBaselineLoss, {"margin": 0.6}),
    (L.ContrastivePairLoss, {"margin": 0.7}),
    (L.ClassificationLoss, {"label_smoothing": 0.1}),
]


@pytest.mark.parametrize("cls,kwargs", LOSS_CASES, ids=[c.__name__ for c, _ in LOSS_CASES])
def test_serialization_round_trip(cls, kwargs):
    loss = cls(**kwargs)
    config = keras.losses.serialize(loss)
    assert config["registered_name"] == f"tfreid>{cls.__name__}"
    again = keras.losses.get(config)
    assert type(again) is cls
    assert again.get_config() == loss.get_config()
    assert cls.from_config(loss.get_config()).get_config() == loss.get_config()
    for key, value in kwargs.items():
        assert getattr(again, key) == value
    rng = np.random.default_rng(0)
    labels = np.array([0, 0, 1, 1, 2, 2], np.float32)
    y_pred = rng.normal(size=(6,) if cls is L.ContrastivePairLoss else (6, 4)).astype(np.float32)
    if cls is L.ContrastivePairLoss:
        y_pred, labels = np.abs(y_pred), labels % 2
    np.testing.assert_allclose(again(labels, y_pred).numpy(), loss(labels, y_pred).numpy(), rtol=1e-6)


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
