"""Tests of the CNN embedding models (backbone -> pooling -> dense)."""

import keras
import numpy as np
import pytest

from tfreid.models import preprocess
from tfreid.models.embedding import build_embedding_model

SHAPE = (64, 32, 3)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(0, 255, (3,) + SHAPE).astype(np.float32)


@pytest.fixture(scope="module")
def mobilenet():
    return build_embedding_model("mobilenetv2", input_shape=SHAPE, embedding_dim=16)


def test_mobilenetv2_embedding_is_preprocess_backbone_pool_dense(mobilenet, images):
    assert [layer.name for layer in mobilenet.layers] == [
        "images", "preprocess", "backbone", "pool", "embedding"]
    assert mobilenet.name == "mobilenetv2_embedding"
    out = keras.ops.convert_to_numpy(mobilenet(images))
    assert out.shape == (3, 16) and out.dtype == np.float32
    # Reference: ImageNet mean/std scaling, backbone, mean over space, dense.
    scaled = (images / 255.0 - np.array(preprocess.IMAGENET_MEAN)) / np.array(
        preprocess.IMAGENET_STD)
    fmap = keras.ops.convert_to_numpy(mobilenet.get_layer("backbone")(scaled.astype(np.float32)))
    assert fmap.shape == (3, 2, 1, 1280)
    kernel, bias = mobilenet.get_layer("embedding").get_weights()
    np.testing.assert_allclose(out, fmap.mean(axis=(1, 2)) @ kernel + bias, rtol=1e-4, atol=1e-4)


def test_save_and_reload(mobilenet, images, tmp_path):
    path = tmp_path / "m.keras"
    mobilenet.save(path)
    again = keras.models.load_model(path)
    np.testing.assert_allclose(again(images), mobilenet(images), rtol=1e-5, atol=1e-5)


def test_resnet50_max_pooling_and_l2(images):
    model = build_embedding_model("ResNet50", input_shape=SHAPE, embedding_dim=8,
                                  pooling="max", l2_normalize=True, name="r50")
    assert model.name == "r50"
    assert model.get_layer("preprocess").mode == "caffe"
    assert isinstance(model.get_layer("pool"), keras.layers.GlobalMaxPooling2D)
    out = keras.ops.convert_to_numpy(model(images))
    assert out.shape == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="known backbones: mobilenetv2.*resnet50"):
        build_embedding_model("alexnet")
    with pytest.raises(ValueError, match="pooling must be one of"):
        build_embedding_model(pooling="gem")
    with pytest.raises(ValueError, match="embedding_dim"):
        build_embedding_model(embedding_dim=0)
    with pytest.raises(ValueError, match=r"input_shape must be \(H, W, 3\)"):
        build_embedding_model(input_shape=(64, 32))
    with pytest.raises(ValueError, match="offline.*only for mobilenetv2"):
        build_embedding_model("resnet50", input_shape=SHAPE, weights="offline")
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        build_embedding_model("mobilenetv2", input_shape=SHAPE, weights="weights.bin")


def test_backbone_weights_file(mobilenet, images, tmp_path):
    path = tmp_path / "backbone.weights.h5"
    mobilenet.get_layer("backbone").save_weights(path)
    model = build_embedding_model("mobilenetv2", input_shape=SHAPE, embedding_dim=16,
                                  weights=str(path))
    model.get_layer("embedding").set_weights(mobilenet.get_layer("embedding").get_weights())
    np.testing.assert_allclose(model(images), mobilenet(images), rtol=1e-5, atol=1e-5)


def test_offline_imagenet_weights(images, mobilenetv2_weights):
    model = build_embedding_model("mobilenetv2", input_shape=SHAPE, weights="offline")
    bn = model.get_layer("backbone").get_layer("bn_Conv1")
    assert np.abs(keras.ops.convert_to_numpy(bn.moving_variance) - 1).max() > 0.1  # loaded
    out = keras.ops.convert_to_numpy(model(images))
    assert out.shape == (3, 256) and np.all(np.isfinite(out))


def test_imagenet_weights_are_passed_to_keras_applications(monkeypatch, images):
    calls = []

    def fake_mobilenetv2(**kwargs):
        calls.append(kwargs)
        inputs = keras.Input(kwargs["input_shape"])
        return keras.Model(inputs, keras.layers.Conv2D(4, 1)(inputs))

    monkeypatch.setattr(keras.applications, "MobileNetV2", fake_mobilenetv2)
    model = build_embedding_model("mobilenetv2", input_shape=SHAPE, embedding_dim=4,
                                  weights="imagenet")
    assert calls == [{"include_top": False, "weights": "imagenet", "input_shape": SHAPE}]
    assert model.get_layer("preprocess").mode == "tf"  # keras' MobileNetV2 expects [-1, 1]
    assert model(images).shape == (3, 4)
