"""Colour Names stripe bag of words against loop-based numpy references."""

import keras
import numpy as np
import pytest
import scipy.io
import tensorflow as tf

from tfreid.features import (COLOR_NAMES, ColorNamesConfig, ColorNamesLayer, color_names_bow,
                             fit_codebook, kmeans, load_w2c, patch_descriptors, w2c_index)
from tfreid.features import colornames as cn

RNG = np.random.default_rng(0)
CONFIG = ColorNamesConfig(height=16, width=12, num_stripes=3, assignment="soft", knn=3, sigma=0.2)


@pytest.fixture(scope="module")
def real_table(data_root):
    """The w2c table of van de Weijer et al. under $TFREID_DATA/colornames/."""
    return load_w2c(data_dir=data_root)


@pytest.fixture(scope="module")
def table():
    t = RNG.random((32768, 11)).astype(np.float32) ** 4
    return t / t.sum(1, keepdims=True)


@pytest.fixture(scope="module")
def codebook():
    return RNG.dirichlet(np.ones(11), 7).astype(np.float32)


def ref_bow(image, table, codebook, config):
    """Loop reference of color_names_bow for one uint8 image already at config size."""
    rows, cols = config.patch_rows, config.patch_cols
    hist = np.zeros((config.num_stripes, len(codebook)))
    for r in range(rows):
        for c in range(cols):
            patch = image[r * config.patch_step: r * config.patch_step + config.patch_size,
                          c * config.patch_step: c * config.patch_step + config.patch_size]
            names = [table[int(p[0]) // 8 + 32 * (int(p[1]) // 8) + 1024 * (int(p[2]) // 8)]
                     for p in patch.reshape(-1, 3)]
            descriptor = np.mean(names, axis=0)
            dist = ((codebook - descriptor) ** 2).sum(1)
            votes = np.zeros(len(codebook))
            if config.assignment == "hard":
                votes[np.argmin(dist)] = 1
            else:
                near = np.argsort(dist)[: config.knn]
                weights = np.exp(-dist[near] / (2 * config.sigma ** 2))
                votes[near] = weights / weights.sum()
            hist[r * config.num_stripes // rows] += votes
    hist = np.sqrt(hist) if config.burstiness == "sqrt" else hist
    if config.normalize == "l2":
        hist /= np.linalg.norm(hist, axis=1, keepdims=True)
    elif config.normalize == "l1":
        hist /= hist.sum(1, keepdims=True)
    return hist


def test_index_formula_on_known_pixels():
    pixels = np.array([[255, 0, 0], [255, 255, 255], [0, 0, 0], [8, 16, 24], [7, 15, 23]])
    want = [31, 32767, 0, 1 + 64 + 3072, 0 + 32 + 1024 * 2]
    np.testing.assert_array_equal(w2c_index(pixels), want)
    np.testing.assert_array_equal(w2c_index(tf.constant(pixels)).numpy(), want)


@pytest.mark.data("colornames")
def test_real_table_names_of_pure_colours(real_table):
    table = real_table
    np.testing.assert_allclose(table.sum(1), 1.0, atol=1e-4)
    image = np.array([[[[255, 0, 0], [255, 255, 255], [0, 0, 0], [0, 0, 255]]]], np.uint8)
    names = cn.pixel_color_names(tf.constant(image, tf.int32), table).numpy()[0, 0]
    assert [COLOR_NAMES[i] for i in names.argmax(-1)] == ["red", "white", "black", "blue"]


def test_patch_descriptors_match_reference(table):
    images = RNG.integers(0, 256, (2, 16, 12, 3)).astype(np.uint8)
    got = patch_descriptors(images, table, CONFIG).numpy()
    assert got.shape == (2, 4, 3, 11)
    want = np.zeros_like(got)
    for b in range(2):
        for r in range(4):
            for c in range(3):
                pixels = images[b, 4 * r: 4 * r + 4, 4 * c: 4 * c + 4].reshape(-1, 3)
                want[b, r, c] = np.mean([table[w2c_index(p)] for p in pixels], axis=0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("overrides", [
    dict(), dict(assignment="hard"), dict(burstiness="none", normalize="l1"),
    dict(normalize="none", knn=1), dict(num_stripes=4), dict(patch_step=2)])
def test_stripe_bow_matches_reference(table, codebook, overrides):
    config = ColorNamesConfig(**{**CONFIG.to_dict(), **overrides})
    images = RNG.integers(0, 256, (2, 16, 12, 3)).astype(np.uint8)
    got = color_names_bow(images, table, codebook, config).numpy()
    assert got.shape == (2, config.num_stripes, 7)
    for b in range(2):
        np.testing.assert_allclose(got[b], ref_bow(images[b], table, codebook, config),
                                   rtol=1e-4, atol=1e-6)


def test_stripes_of_default_config():
    config = ColorNamesConfig()
    assert (config.patch_rows, config.patch_cols) == (32, 16)
    assert config.assignment == "soft" and config.burstiness == "sqrt"


def test_load_w2c_formats_and_errors(tmp_path, table, monkeypatch):
    np.save(tmp_path / "w2c.npy", table)
    scipy.io.savemat(tmp_path / "table.mat", {"w2c": table.astype(np.float64)})
    np.testing.assert_array_equal(load_w2c(tmp_path / "w2c.npy"), table)
    np.testing.assert_allclose(load_w2c(tmp_path / "table.mat"), table)
    np.testing.assert_array_equal(load_w2c(tmp_path), table)           # folder
    (tmp_path / "colornames").mkdir()
    np.save(tmp_path / "colornames" / "w2c.npy", table)
    monkeypatch.setenv("TFREID_DATA", str(tmp_path))
    np.testing.assert_array_equal(load_w2c(), table)                   # $TFREID_DATA fallback
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        load_w2c(tmp_path / "missing.npy")
    np.save(tmp_path / "small.npy", table[:100])
    with pytest.raises(ValueError, match=r"small.npy.*\[32768, 11\].*\[100, 11\]"):
        load_w2c(tmp_path / "small.npy")
    scipy.io.savemat(tmp_path / "other.mat", {"table": table})
    with pytest.raises(ValueError, match="no variable 'w2c'"):
        load_w2c(tmp_path / "other.mat")
    (tmp_path / "w2c.txt").write_text("1 2 3")
    with pytest.raises(ValueError, match="extension"):
        load_w2c(tmp_path / "w2c.txt")
    (tmp_path / "broken.npy").write_bytes(b"not a numpy file")
    with pytest.raises(ValueError, match="broken.npy"):
        load_w2c(tmp_path / "broken.npy")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="No Colour Names table"):
        load_w2c(empty)


def test_kmeans_recovers_separated_clusters_and_is_seeded():
    centres = np.array([[0.0, 0.0], [5.0, 5.0], [0.0, 9.0]])
    x = np.concatenate([c + 0.1 * RNG.standard_normal((200, 2)) for c in centres])
    found, history = kmeans(x, 3, seed=1)
    found = found[np.argsort(found[:, 0] * 100 + found[:, 1])]
    np.testing.assert_allclose(found, centres[np.argsort(centres[:, 0] * 100 + centres[:, 1])],
                               atol=0.05)
    assert np.all(np.diff(history) <= 1e-6)                            # Lloyd never increases
    np.testing.assert_array_equal(kmeans(x, 3, seed=1)[0], kmeans(x, 3, seed=1)[0])
    codebook = fit_codebook(RNG.random((50, 4, 11)), num_words=5, seed=0)
    assert codebook.shape == (5, 11) and codebook.dtype == np.float32
    with pytest.raises(ValueError, match="k=300"):
        kmeans(x[:10], 300)


def test_layer_tf_data_keras_and_saving_agree(tmp_path, table, codebook):
    images = RNG.integers(0, 256, (3, 40, 30, 3)).astype(np.uint8)
    layer = ColorNamesLayer(table=table, codebook=codebook, **{
        k: v for k, v in CONFIG.to_dict().items()})
    want = color_names_bow(images, table, codebook, CONFIG).numpy()
    np.testing.assert_allclose(layer(images).numpy(), want, atol=1e-6)
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(3).map(layer)
    np.testing.assert_allclose(next(iter(dataset)).numpy(), want, atol=1e-6)
    inputs = keras.Input((None, None, 3), dtype="uint8")
    model = keras.Model(inputs, layer(inputs))
    np.testing.assert_allclose(model.predict(images, verbose=0), want, atol=1e-6)
    model.save(tmp_path / "cn.keras")
    restored = keras.saving.load_model(tmp_path / "cn.keras")
    np.testing.assert_allclose(restored.predict(images, verbose=0), want, atol=1e-6)
    restored_layer = restored.layers[-1]
    np.testing.assert_array_equal(restored_layer.codebook.numpy(), codebook)
    assert restored_layer.compute_output_shape((None, 40, 30, 3)) == (None, 3, 7)


@pytest.mark.data("colornames")
def test_default_layer_shape_on_real_table(real_table):
    layer = ColorNamesLayer(table=real_table, codebook=RNG.dirichlet(np.ones(11), 350))
    out = layer(RNG.integers(0, 256, (2, 128, 48, 3)).astype(np.uint8))
    assert out.shape == (2, 16, 350)
    np.testing.assert_allclose(np.linalg.norm(out.numpy(), axis=-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(assignment="fuzzy"), "assignment"), (dict(normalize="max"), "normalize"),
    (dict(num_stripes=40), "num_stripes"), (dict(sigma=0.0), "sigma"),
    (dict(burstiness="log"), "burstiness")])
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ColorNamesConfig(**kwargs)


def test_bad_table_and_codebook():
    with pytest.raises(ValueError, match=r"\[32768, 11\]"):
        ColorNamesLayer(table=np.zeros((10, 11)))
    with pytest.raises(ValueError, match=r"\[num_words, 11\]"):
        ColorNamesLayer(codebook=np.zeros((10, 3)))
    with pytest.raises(ValueError, match="non-negative"):
        cn.validate_w2c(-np.ones((32768, 11)))
