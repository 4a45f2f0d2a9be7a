"""Partial fine-tuning of CNN embeddings: model split, prefix-map cache, training of the top only."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfreid import losses
from tfreid.data import synthetic
from tfreid.data.pipeline import load_image
from tfreid.data.records import arrays, train_val_test_parts
from tfreid.models.embedding import build_embedding_model
from tfreid.models.split import split_embedding_model
from tfreid.training import prefix_cache
from tfreid.training.cnn import CNNTrainConfig, train_cnn

SHAPE = (64, 32, 3)
QUIET = dict(log=lambda s: None)
# Some tests run train_step eagerly: tracing it (whole MobileNetV2: ~20 s) is most of their time.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Even though the `tf.config.experimental_run_functions_eagerly`")


@pytest.fixture(scope="module")
def model():
    """Real MobileNetV2 architecture, random weights, BatchNorm statistics fitted to one batch
    (the default statistics saturate ReLU6 and give every image the same embedding)."""
    m = build_embedding_model("mobilenetv2", input_shape=SHAPE, embedding_dim=16)
    bns = [layer for layer in m.get_layer("backbone").layers
           if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in bns:
        layer.momentum = 0.0
    m(np.random.default_rng(0).uniform(0, 255, (16,) + SHAPE).astype(np.float32), training=True)
    for layer in bns:
        layer.momentum = 0.999
    return m


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).uniform(0, 255, (4,) + SHAPE).astype(np.float32)


@pytest.fixture(scope="module")
def parts(synthetic_data):
    root = synthetic_data(num_train_ids=8, num_test_ids=2, num_cameras=2, images_per_camera=2)
    return train_val_test_parts(synthetic.load(root), num_val_ids=2, seed=0)


@pytest.mark.parametrize("cut, adds", [("block_16_expand", []),
                                       ("block_14_expand", ["block_14_add", "block_15_add"])])
def test_top_of_prefix_is_the_full_model(model, images, cut, adds):
    prefix, top = split_embedding_model(model, cut)
    full = keras.ops.convert_to_numpy(model(images))
    maps = keras.ops.convert_to_numpy(prefix(images))
    assert maps.shape == (4, 2, 1, 160)
    assert full.std(axis=0).mean() > 0.1  # embeddings depend on the image: the test can fail
    np.testing.assert_allclose(keras.ops.convert_to_numpy(top(maps)), full, rtol=0, atol=1e-4)
    top_backbone = [layer.name for layer in top.get_layer("backbone_top").layers]
    assert top_backbone[1] == cut and [n for n in top_backbone if n.endswith("_add")] == adds
    # Shared layer objects, not copies: training the top trains the full model.
    backbone = model.get_layer("backbone")
    assert top.get_layer("embedding") is model.get_layer("embedding")
    assert top.get_layer("backbone_top").get_layer(cut) is backbone.get_layer(cut)
    assert prefix.get_layer("backbone_prefix").get_layer("Conv1") is backbone.get_layer("Conv1")
    assert cut not in [layer.name for layer in prefix.get_layer("backbone_prefix").layers]


def test_a_model_that_is_not_a_chain_around_its_backbone_is_refused():
    backbone = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="inner")],
                                name="backbone")
    images = keras.Input((4,))
    pre = keras.layers.Dense(4, name="pre")(images)
    skip = keras.layers.Add(name="skip")([backbone(pre), pre])  # reads two tensors
    with pytest.raises(ValueError, match=r"not a chain of layers: 'skip' does not read"):
        split_embedding_model(keras.Model(images, skip), "inner")


def test_bad_cut_lists_the_cut_layers(model):
    with pytest.raises(ValueError, match=r"'block_15_depthwise'.*skip connection.*block_16_expand"
                       ) as err:
        split_embedding_model(model, "block_15_depthwise")
    choices = str(err.value).split("begin the trainable top: ")[1].split(", ")  # cut_layers()
    for name in [f"block_{i}_expand" for i in range(1, 17)] + ["expanded_conv_depthwise", "Conv_1"]:
        assert name in choices
    for name in ("Conv1_pad", "block_15_depthwise", "block_14_add", "block_2_project"):
        assert name not in choices  # first layer, skip connections jump over / several inputs


def test_prefix_cache_reuse_and_stale_keys(model, parts, tmp_path):
    prefix, _ = split_embedding_model(model, "block_16_expand")
    paths = arrays(parts["train"])[0][:5]
    file = tmp_path / "cache" / "prefix_maps.npz"
    logs = []
    maps = prefix_cache.load_or_compute(prefix, paths, SHAPE[:2], "block_16_expand", file,
                                        batch_size=2, log=logs.append)
    assert maps.shape == (5, 2, 2, 1, 160) and maps.dtype == np.float16
    # View 0 is the image, view 1 its horizontal flip, both through the prefix in inference mode.
    image = load_image(paths[3], SHAPE[:2])[None]
    for view, x in enumerate([image, tf.image.flip_left_right(image)]):
        want = keras.ops.convert_to_numpy(prefix(x, training=False))[0]
        np.testing.assert_allclose(maps[3, view].astype(np.float32), want, rtol=2e-3, atol=2e-3)
    assert np.abs(maps[:, 0] - maps[:, 1]).max() > 0.1
    stamp = file.stat().st_mtime_ns
    assert not list(file.parent.glob("*.tmp*"))

    again = prefix_cache.load_or_compute(prefix, paths, SHAPE[:2], "block_16_expand", file, log=logs.append)
    np.testing.assert_array_equal(again, maps)
    assert file.stat().st_mtime_ns == stamp and "read from" in logs[-1]

    reordered = prefix_cache.load_or_compute(prefix, paths[::-1], SHAPE[:2], "block_16_expand", file,
                                             log=logs.append)
    assert any("stale (images_sha256 changed)" in line for line in logs)
    np.testing.assert_allclose(reordered, maps[::-1], atol=1e-2)
    assert prefix_cache._read(file, prefix_cache.cache_key(prefix, paths[::-1], SHAPE[:2],
                                                           "block_16_expand"), print) is not None

    for other, changed in [(dict(cut="other_cut"), "(cut changed)"),
                           (dict(size=(32, 16)), "(size changed)")]:
        key = prefix_cache.cache_key(prefix, **{"paths": paths[::-1], "size": SHAPE[:2],
                                                "cut": "block_16_expand", **other})
        assert prefix_cache._read(file, key, logs.append) is None and changed in logs[-1]
    conv = model.get_layer("backbone").get_layer("Conv1").kernel
    old = conv.numpy()
    try:
        conv.assign(old * 1.5)
        key = prefix_cache.cache_key(prefix, paths[::-1], SHAPE[:2], "block_16_expand")
        assert prefix_cache._read(file, key, logs.append) is None
        assert "(prefix_weights_sha256 changed)" in logs[-1]
    finally:
        conv.assign(old)
    file.write_bytes(b"not a zip")
    assert prefix_cache._read(file, key, logs.append) is None and "unreadable" in logs[-1]


def test_pk_view_dataset_mixes_views_deterministically():
    n = 12
    maps = np.stack([np.full((n, 1, 1, 1), 0.0), np.full((n, 1, 1, 1), 1.0)], axis=1)
    maps = (maps + np.arange(n)[:, None, None, None, None] * 10).astype(np.float16)  # [n, 2, ...]
    labels = np.repeat(np.arange(4), 3)
    batches = list(prefix_cache.pk_view_dataset(maps, labels, p=2, k=3, seed=5).take(4))
    again = list(prefix_cache.pk_view_dataset(maps, labels, p=2, k=3, seed=5).take(4))
    views = []
    for (x, y), (x2, y2) in zip(batches, again):
        np.testing.assert_array_equal(x, x2)
        x, y = x.numpy().ravel(), y.numpy()
        assert x.dtype == np.float32 and x.shape == (6,)
        index, view = np.divmod(x.astype(int), 10)
        np.testing.assert_array_equal(labels[index], y)  # each sample is a view of its own image
        assert (y[:3] == y[0]).all() and (y[3:] == y[3]).all() and y[0] != y[3]
        views += view.tolist()
    assert 0 < np.mean(views) < 1


@pytest.fixture(scope="module")
def backbone_file(model, tmp_path_factory):
    """The fixture model's backbone as a weights file (random ImageNet-free weights whose
    embeddings depend on the image, unlike weights=None)."""
    path = tmp_path_factory.mktemp("weights") / "backbone.weights.h5"
    model.get_layer("backbone").save_weights(path)
    return str(path)


def _config(weights, **kwargs):
    settings = dict(height=SHAPE[0], width=SHAPE[1], embedding_dim=8, p=3, k=2, learning_rate=1e-2,
                    epochs=1, steps_per_epoch=2, seed=3)
    return CNNTrainConfig(weights=weights, **{**settings, **kwargs})


def _weights(model):
    return {v.path: v.numpy().copy() for v in model.weights}


def _initial_weights(config):
    keras.utils.set_random_seed(config.seed)  # train_cnn builds the same initial model
    return _weights(build_embedding_model("mobilenetv2", SHAPE, 8, weights=config.weights))


def test_partial_training_freezes_prefix_trains_top_and_resumes(parts, backbone_file, tmp_path,
                                                                monkeypatch):
    config = _config(backbone_file, loss="classification", train_from="block_16_expand")
    initial = _initial_weights(config)
    out = tmp_path / "run"
    args = (parts["train"], parts["val_query"], parts["val_gallery"], out)
    tf.config.run_functions_eagerly(True)  # saves a trace; the resumed run below is traced
    try:
        train_cnn(config, *args, **QUIET)
    finally:
        tf.config.run_functions_eagerly(False)
    file = out / "cache" / "prefix_maps.npz"
    stat = file.stat()

    with monkeypatch.context() as patch:  # a refused run (no --resume) computes no maps
        computed = []
        patch.setattr(prefix_cache, "load_or_compute", lambda *a, **k: computed.append(a))
        with pytest.raises(FileExistsError, match="--resume"):
            train_cnn(config, *args, **QUIET)
        assert computed == []

    logs = []
    model, history = train_cnn(dataclasses.replace(config, epochs=2), *args, resume=True,
                               log=logs.append)
    assert [h["epoch"] for h in history] == [0, 1]
    assert file.stat().st_mtime_ns == stat.st_mtime_ns and file.stat().st_ino == stat.st_ino
    assert any("read from" in line for line in logs)

    prefix, _ = split_embedding_model(model, "block_16_expand")
    prefix_paths = {v.path for v in prefix.weights}
    trained = _weights(model)
    assert set(trained) == set(initial)
    for path, value in trained.items():
        if path in prefix_paths:  # frozen, BN statistics included
            np.testing.assert_array_equal(value, initial[path], err_msg=path)
        else:  # kernels, BN scale/shift and moving statistics of the top, embedding
            assert not np.allclose(value, initial[path]), path
    assert len(prefix_paths) > len(trained) / 2
    assert all(layer.trainable for layer in model.get_layer("backbone").layers)

    # restore_best: the returned model holds the best epoch's checkpointed weights.
    best = max(range(2), key=lambda e: (history[e]["val_rank1"], -e))
    keras.utils.set_random_seed(config.seed)
    fresh = build_embedding_model("mobilenetv2", SHAPE, 8, weights=backbone_file)
    head = losses.ClassificationHead(len({r.pid for r in parts["train"]}), name="classifier")
    wrapper = keras.Model(fresh.inputs, head(fresh.outputs[0]))  # what train_cnn checkpoints
    status = tf.train.Checkpoint(model=wrapper).read(str(out / "checkpoints" / f"ckpt-{best + 1}"))
    status.expect_partial().assert_existing_objects_matched()
    images = np.random.default_rng(2).uniform(0, 255, (3,) + SHAPE).astype(np.float32)
    np.testing.assert_allclose(model(images), fresh(images), atol=1e-6)


def test_bad_train_from_is_refused_before_any_work(parts, tmp_path):
    with pytest.raises(ValueError, match=r"train_from.*'block_99'.*no layer of that name.*"
                                         r"block_16_expand"):
        train_cnn(_config(None, loss="batch_hard", train_from="block_99"), parts["train"],
                  parts["val_query"], parts["val_gallery"], tmp_path / "bad", **QUIET)
    assert not (tmp_path / "bad").exists()
    with pytest.raises(ValueError, match="train_from"):
        _config(None, train_from="")


def test_whole_network_training_is_unchanged(parts, backbone_file, tmp_path):
    config = _config(backbone_file, loss="batch_hard", steps_per_epoch=1)
    initial = _initial_weights(config)
    tf.config.run_functions_eagerly(True)  # tracing the whole network's step takes ~20 s
    try:
        model, history = train_cnn(config, parts["train"], parts["val_query"], parts["val_gallery"],
                                   tmp_path / "whole", **QUIET)
    finally:
        tf.config.run_functions_eagerly(False)
    assert len(history) == 1 and not (tmp_path / "whole" / "cache").exists()
    trained = _weights(model)
    for name in ("Conv1", "block_3_depthwise", "Conv_1", "embedding"):
        path = next(p for p in trained if p.split("/")[-2] == name)
        assert not np.allclose(trained[path], initial[path]), path
