"""The resumable epoch loop: checkpoints, early stopping, and a killed run that resumes."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfreid.training.loop import EarlyStopping, ResumableLoop


def _model_and_optimizer():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    return model, keras.optimizers.RMSprop(0.05, rho=0.95, clipvalue=5.0)


def _fns(model, optimizer, crash_at=None, val_values=None):
    x = tf.constant(np.random.default_rng(0).normal(size=(32, 4)), tf.float32)
    y = tf.reduce_sum(x, axis=1, keepdims=True)

    def train_epoch(epoch):
        if crash_at is not None and epoch == crash_at:
            raise KeyboardInterrupt("simulated kill")
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((model(x) - y) ** 2)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return {"loss": float(loss)}

    def validate(epoch):
        if val_values is not None:
            return {"val_rank1": val_values[epoch]}
        return {"val_rank1": -float(tf.reduce_mean((model(x) - y) ** 2))}

    return train_epoch, validate


def test_workers_killed_an_epoch_apart_resume_in_step_from_the_agreed_epoch(tmp_path):
    """agree_epoch (the smallest epoch over the workers) picks the older checkpoint."""
    model, opt = _model_and_optimizer()
    loop = ResumableLoop(model, opt, tmp_path, 5, EarlyStopping(patience=0), log=lambda s: None)
    with pytest.raises(KeyboardInterrupt):
        loop.run(*_fns(model, opt, crash_at=3))
    asked = []

    def agree(own):
        asked.append(own)
        return 2  # the other worker's last checkpoint

    model, opt = _model_and_optimizer()
    loop = ResumableLoop(model, opt, tmp_path, 5, EarlyStopping(patience=0), resume=True,
                         log=lambda s: None, agree_epoch=agree)
    assert asked == [3] and loop.epochs_done == 2
    assert [h["epoch"] for h in loop.history()] == [0, 1]
    assert [h["epoch"] for h in loop.run(*_fns(model, opt))] == [0, 1, 2, 3, 4]

    model, opt = _model_and_optimizer()  # an epoch this worker no longer holds is refused
    with pytest.raises(RuntimeError, match="no longer holds epoch 1"):
        ResumableLoop(model, opt, tmp_path, 5, EarlyStopping(patience=0), resume=True,
                      log=lambda s: None, agree_epoch=lambda own: 1)


def test_killed_run_resumes_to_the_same_weights_as_an_uninterrupted_one(tmp_path):
    model, opt = _model_and_optimizer()
    ResumableLoop(model, opt, tmp_path / "full", 5, EarlyStopping(patience=0), log=lambda s: None
                  ).run(*_fns(model, opt))
    expected = [w.numpy() for w in model.weights]

    model, opt = _model_and_optimizer()
    loop = ResumableLoop(model, opt, tmp_path / "killed", 5, EarlyStopping(patience=0), log=lambda s: None)
    with pytest.raises(KeyboardInterrupt):
        loop.run(*_fns(model, opt, crash_at=3))
    assert loop.epochs_done == 3

    model, opt = _model_and_optimizer()  # a fresh process: new, untrained objects
    loop = ResumableLoop(model, opt, tmp_path / "killed", 5, EarlyStopping(patience=0),
                         resume=True, log=lambda s: None)
    assert loop.epochs_done == 3
    history = loop.run(*_fns(model, opt))
    assert [h["epoch"] for h in history] == [0, 1, 2, 3, 4]
    for got, want in zip(model.weights, expected):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-7)


def test_existing_run_without_resume_is_refused(tmp_path):
    model, opt = _model_and_optimizer()
    ResumableLoop(model, opt, tmp_path, 1, EarlyStopping(patience=0), log=lambda s: None).run(*_fns(model, opt))
    with pytest.raises(FileExistsError, match="--resume"):
        ResumableLoop(model, opt, tmp_path, 2, EarlyStopping(patience=0), log=lambda s: None)


def test_early_stopping_keeps_the_best_epoch(tmp_path):
    model, opt = _model_and_optimizer()
    values = [0.1, 0.5, 0.4, 0.3, 0.2, 0.9]
    loop = ResumableLoop(model, opt, tmp_path, 6, EarlyStopping("val_rank1", "max", patience=2),
                         log=lambda s: None)
    history = loop.run(*_fns(model, opt, val_values=values))
    assert len(history) == 4  # epochs 2 and 3 do not improve on epoch 1 -> stop before epoch 4
    assert loop.best == (1, 0.5)
    assert (tmp_path / "best.weights.h5").exists()
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    assert json.loads(lines[1])["val_rank1"] == 0.5


def test_missing_monitor_key_is_a_clear_error(tmp_path):
    model, opt = _model_and_optimizer()
    loop = ResumableLoop(model, opt, tmp_path, 1, EarlyStopping("val_map"), log=lambda s: None)
    with pytest.raises(KeyError, match="val_map"):
        loop.run(*_fns(model, opt))


@pytest.mark.parametrize("killed", ["before_checkpoint", "after_checkpoint"])
def test_a_kill_at_the_end_of_an_epoch_loses_no_history_line(tmp_path, monkeypatch, killed):
    """A kill just before or just after epoch 2's checkpoint (its history line is written):
    resuming re-runs what the checkpoint does not hold; the history lists every epoch once."""
    model, opt = _model_and_optimizer()
    loop = ResumableLoop(model, opt, tmp_path, 4, EarlyStopping(patience=0), log=lambda s: None)
    save, calls = loop._manager.save, []

    def save_then_kill(checkpoint_number):
        calls.append(checkpoint_number)
        if checkpoint_number == 2:  # epoch 2 (index 1): its history line is already written
            if killed == "after_checkpoint":
                save(checkpoint_number=checkpoint_number)
            raise KeyboardInterrupt("simulated kill")
        return save(checkpoint_number=checkpoint_number)

    monkeypatch.setattr(loop._manager, "save", save_then_kill)
    with pytest.raises(KeyboardInterrupt):
        loop.run(*_fns(model, opt))
    assert [h["epoch"] for h in loop.history()] == [0, 1]
    model, opt = _model_and_optimizer()
    loop = ResumableLoop(model, opt, tmp_path, 4, EarlyStopping(patience=0), resume=True,
                         log=lambda s: None)
    assert loop.epochs_done == (2 if killed == "after_checkpoint" else 1)
    assert [h["epoch"] for h in loop.run(*_fns(model, opt))] == [0, 1, 2, 3]
