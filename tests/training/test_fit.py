"""The one trainer skeleton: a Recipe (batch source, step, validation embedding) run by fit."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfreid.distribute import make_train_step
from tfreid.training.fit import Recipe, ValidationIds, embed_arrays, fit, rank_embeddings


def test_rank_embeddings_ranks_by_euclidean_distance_and_drops_same_camera_matches():
    query = np.array([[0.0, 0.0], [10.0, 0.0]], np.float32)
    gallery = np.array([[0.1, 0.0], [9.0, 0.0], [10.0, 0.1]], np.float32)
    ids = ValidationIds(q_pids=np.array([1, 2]), g_pids=np.array([1, 2, 2]),
                        q_camids=np.array([0, 0]), g_camids=np.array([1, 1, 0]))
    result = rank_embeddings(query, gallery, ids)
    # query 2's nearest (index 2) is its own camera: removed, so its match is first.
    assert result.cmc[0] == 1.0 and result.mAP == pytest.approx(1.0)
    crossed = ValidationIds(ids.q_pids[::-1].copy(), ids.g_pids, ids.q_camids, ids.g_camids)
    assert rank_embeddings(query, gallery, crossed).cmc[0] == 0.0


def _recipe(batches_seen, embed_calls):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8)).astype(np.float32)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8)])
    optimizer = keras.optimizers.Adam(1e-2)
    step = make_train_step(tf.distribute.get_strategy(), model, None,
                           lambda labels, emb: tf.reduce_mean(
                               tf.square(emb - tf.gather(centres, labels))), optimizer,
                           model.trainable_variables)
    labels = np.repeat(np.arange(4), 8)
    x = (centres[labels] + 0.3 * rng.normal(size=(32, 8))).astype(np.float32)

    def batches(epoch):
        batches_seen.append(epoch)
        return ((tf.constant(x[i::4]), tf.constant(labels[i::4].astype(np.int32)))
                for i in range(4))

    def embed_validation():
        embed_calls.append(1)
        emb = model(x, training=False).numpy()
        return emb[::2], emb[1::2]

    ids = ValidationIds(labels[::2], labels[1::2], np.zeros(16, int), np.ones(16, int))
    return model, optimizer, Recipe(batches, step, ["loss"], 4, embed_validation, ids,
                                    more_validation=lambda: {"extra": 1.0})


def test_fit_trains_validates_and_records_every_metric(tmp_path):
    seen, calls = [], []
    model, optimizer, recipe = _recipe(seen, calls)
    history = fit(model, optimizer, recipe, tmp_path, epochs=3, patience=0, log=lambda s: None)
    assert seen == [0, 1, 2] and len(calls) == 3
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert history[-1]["loss"] < history[0]["loss"]
    assert {"loss", "learning_rate", "val_rank1", "val_map", "extra"} <= set(history[-1])


def test_a_refused_resume_draws_no_batch(tmp_path):
    """The recipe's source is first called after the loop's resume check (so a lazily built
    source, like the CNN's cached maps, is never computed for a refused run)."""
    seen, calls = [], []
    model, optimizer, recipe = _recipe(seen, calls)
    fit(model, optimizer, recipe, tmp_path, epochs=1, patience=0, log=lambda s: None)
    seen.clear()
    model, optimizer, recipe = _recipe(seen, calls)
    with pytest.raises(Exception, match="resume"):
        fit(model, optimizer, recipe, tmp_path, epochs=2, patience=0, log=lambda s: None)
    assert seen == []


def test_embed_arrays_batches_like_one_call_and_keeps_the_width_of_nothing():
    model = keras.Sequential([keras.Input((3, 2)), keras.layers.Flatten(), keras.layers.Dense(4)])
    inputs = np.random.default_rng(0).normal(size=(7, 3, 2))  # float64: cast to the model's float32
    whole = model(inputs.astype(np.float32), training=False).numpy()
    np.testing.assert_allclose(embed_arrays(model, inputs, batch_size=3), whole, rtol=1e-6)
    assert embed_arrays(model, inputs[:0]).shape == (0, 4)
