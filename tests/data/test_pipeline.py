"""Tests of image decoding/augmentation and the P×K identity samplers."""

import collections
import os
import warnings

import numpy as np
import pytest
import tensorflow as tf

from tfreid.data import pipeline


def _write_png(path, array):
    tf.io.write_file(str(path), tf.io.encode_png(tf.constant(array, tf.uint8)))
    return str(path)


def _identity_images(tmp_path, counts, size=(16, 8)):
    """Writes flat-colour images whose colour encodes their index; returns paths, pids."""
    paths, pids = [], []
    for pid, count in enumerate(counts):
        for j in range(count):
            index = len(paths)
            image = np.full(size + (3,), [index % 256, pid * 10 % 256, 7], np.uint8)
            paths.append(_write_png(tmp_path / f"{pid:04d}_{j:02d}.png", image))
            pids.append(pid)
    return paths, np.asarray(pids)


# ----------------------------------------------------------------------------- decoding


def test_load_image_rgb_order_range_and_resize(tmp_path):
    image = np.zeros((20, 10, 3), np.uint8)
    image[..., 0] = 255  # pure red
    path = _write_png(tmp_path / "red.png", image)
    out = pipeline.load_image(path, (40, 20))
    assert out.shape == (40, 20, 3) and out.dtype == tf.float32
    np.testing.assert_allclose(out.numpy().reshape(-1, 3).mean(0), [255, 0, 0])
    gradient = np.tile(np.linspace(0, 255, 10, dtype=np.uint8)[None, :, None], (20, 1, 3))
    out = pipeline.load_image(_write_png(tmp_path / "g.png", gradient), (7, 13)).numpy()
    assert out.min() >= 0 and out.max() <= 255 and out.shape == (7, 13, 3)


def test_load_image_grey_and_jpeg(tmp_path):
    grey = _write_png(tmp_path / "grey.png", np.full((12, 6, 1), 100, np.uint8))
    out = pipeline.load_image(grey, (12, 6)).numpy()
    assert out.shape == (12, 6, 3)
    np.testing.assert_allclose(out, 100)
    jpeg = tmp_path / "x.jpg"
    tf.io.write_file(str(jpeg), tf.io.encode_jpeg(tf.fill([16, 8, 3], tf.constant(200, tf.uint8))))
    out = pipeline.load_image(jpeg, (16, 8)).numpy()
    assert np.abs(out - 200).max() < 3


def test_load_image_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        pipeline.load_image(tmp_path / "missing.jpg")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"this is not an image")
    with pytest.raises(ValueError, match="broken.jpg"):
        pipeline.load_image(broken)


def _windows(image, padding):
    """Every (flip, dy, dx) window of the zero-padded image: the reference for `augment`."""
    h, w = image.shape[:2]
    for flipped in (image, image[:, ::-1]):
        padded = np.pad(flipped, ((padding, padding), (padding, padding), (0, 0)))
        for dy in range(2 * padding + 1):
            for dx in range(2 * padding + 1):
                yield padded[dy:dy + h, dx:dx + w]


def test_augment_is_a_flip_then_padded_crop_and_seeded():
    image = np.random.default_rng(0).uniform(0, 255, (24, 12, 3)).astype(np.float32)
    outs = [pipeline.augment(tf.constant(image), tf.constant([s, 1])).numpy() for s in range(6)]
    for out in outs:
        assert out.shape == image.shape and out.dtype == np.float32
        assert any(np.array_equal(out, window) for window in _windows(image, 10))
    again = pipeline.augment(tf.constant(image), tf.constant([0, 1])).numpy()
    np.testing.assert_array_equal(again, outs[0])
    assert len({out.tobytes() for out in outs}) > 1


# ----------------------------------------------------------------------------- P×K sampler


def test_pk_sampler_batch_composition_and_epochs():
    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(20), rng.integers(2, 9, size=20))
    sampler = pipeline.PKSampler(pids, p=4, k=3, seed=5)
    assert sampler.steps_per_epoch == 5 == pipeline.steps_per_epoch(pids, 4)
    for epoch in range(3):
        batches = sampler.epoch(epoch)
        assert batches.shape == (5, 12) and batches.dtype == np.int64
        seen = []
        for batch in batches:
            blocks = pids[batch].reshape(4, 3)
            assert np.all(blocks == blocks[:, :1])  # K of one identity, contiguous
            assert len(set(blocks[:, 0])) == 4       # P distinct identities
            seen += list(blocks[:, 0])
            for block in batch.reshape(4, 3):        # K >= n_i: no image twice
                if np.sum(pids == pids[block[0]]) >= 3:
                    assert len(set(block)) == 3
        assert len(seen) == len(set(seen)) == 20     # every identity once per epoch
    assert not np.array_equal(sampler.epoch(0), sampler.epoch(1))


def test_pk_sampler_determinism_small_identities_and_drops():
    pids = np.array([0, 0, 0, 0, 1, 1, 2, 3, 3, 3, 4, 4, 5])  # ids 2 and 5 have one image
    with pytest.warns(UserWarning, match="dropped 2 of 6 identities"):
        sampler = pipeline.PKSampler(pids, p=2, k=4, seed=3)
    assert sorted(sampler.dropped) == [2, 5] and sorted(sampler.ids) == [0, 1, 3, 4]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        twin = pipeline.PKSampler(pids, p=2, k=4, seed=3)
        other = pipeline.PKSampler(pids, p=2, k=4, seed=4)
    np.testing.assert_array_equal(sampler.epoch(7), twin.epoch(7))
    assert any(not np.array_equal(sampler.epoch(e), other.epoch(e)) for e in range(5))
    for epoch in range(5):
        for block in sampler.epoch(epoch).reshape(-1, 4):
            members = set(np.flatnonzero(pids == pids[block[0]]))
            assert set(block) <= members
            if len(members) < 4:  # fewer than K: all of them, topped up with replacement
                assert set(block) == members
    assert pipeline.steps_per_epoch(pids, 2) == 2


def test_pk_sampler_errors():
    with pytest.raises(ValueError, match="at least p=5 identities"):
        pipeline.PKSampler(np.repeat(np.arange(3), 4), p=5, k=2)
    with pytest.raises(ValueError, match="k >= 2"):
        pipeline.PKSampler(np.repeat(np.arange(3), 4), p=2, k=1)
    with pytest.raises(ValueError, match="1-d"):
        pipeline.PKSampler(np.zeros((3, 2)), p=1, k=2)


def test_pk_dataset_images_match_their_labels(tmp_path):
    paths, pids = _identity_images(tmp_path, [3, 2, 5, 4, 2, 3, 1])
    with pytest.warns(UserWarning, match="dropped 1"):
        ds = pipeline.pk_dataset(paths, pids, p=3, k=2, size=(16, 8), augment=False, seed=1,
                                 epochs=2)
    batches = list(ds)
    assert len(batches) == 4  # 6 identities // 3, two epochs
    for images, labels in batches:
        assert images.shape == (6, 16, 8, 3) and images.dtype == tf.float32
        assert labels.dtype == tf.int64
        labels = labels.numpy()
        assert len(set(labels)) == 3 and all(c == 2 for c in collections.Counter(labels).values())
        for image, label in zip(images.numpy(), labels):
            index = int(image[0, 0, 0])  # the colour encodes the file index
            assert pids[index] == label and image[0, 0, 1] == label * 10


def test_pk_dataset_augment_is_deterministic(tmp_path):
    paths, pids = _identity_images(tmp_path, [4, 4, 4, 4])
    make = lambda seed: pipeline.pk_dataset(paths, pids, p=2, k=2, size=(16, 8),  # noqa: E731
                                            augment=True, seed=seed)
    first = [b[0].numpy() for b in make(0).take(3)]
    again = [b[0].numpy() for b in make(0).take(3)]
    other = [b[0].numpy() for b in make(1).take(3)]
    assert all(a.shape == (4, 16, 8, 3) for a in first)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))
    assert any(np.all(a == 0, axis=-1).any() for a in first)  # some crops show the padding


def test_pk_dataset_errors(tmp_path):
    paths, pids = _identity_images(tmp_path, [2, 2])
    with pytest.raises(FileNotFoundError, match="nope.png"):
        pipeline.pk_dataset(paths + [str(tmp_path / "nope.png")], list(pids) + [1], p=1, k=2)
    with pytest.raises(ValueError, match="pids must have shape"):
        pipeline.pk_dataset(paths, pids[:-1], p=1, k=2)


def test_pk_feature_dataset():
    pids = np.repeat(np.arange(10), 3)
    features = np.arange(30, dtype=np.float32)[:, None, None] * np.ones((1, 6, 5), np.float32)
    ds = pipeline.pk_feature_dataset(features, pids, p=5, k=2, seed=2, epochs=1)
    batches = list(ds)
    assert len(batches) == 2
    seen = []
    for feats, labels in batches:
        assert feats.shape == (10, 6, 5) and feats.dtype == tf.float32
        index = feats.numpy()[:, 0, 0].astype(int)
        np.testing.assert_array_equal(pids[index], labels.numpy())
        seen += list(labels.numpy()[::2])
    assert sorted(seen) == list(range(10))
    again = [f.numpy() for f, _ in pipeline.pk_feature_dataset(features, pids, 5, 2, 2, 1)]
    assert all(np.array_equal(a, b[0].numpy()) for a, b in zip(again, batches))
    infinite = pipeline.pk_feature_dataset(features, pids, p=5, k=2, seed=2)
    assert len(list(infinite.take(7))) == 7
    with pytest.raises(ValueError, match="pids must have shape"):
        pipeline.pk_feature_dataset(features, pids[:5], p=2, k=2)


def test_image_dataset_order_and_shuffle(tmp_path):
    paths, pids = _identity_images(tmp_path, [3, 2, 2])
    batches = list(pipeline.image_dataset(paths, pids, size=(16, 8), batch_size=3))
    assert [len(b[1]) for b in batches] == [3, 3, 1]
    index = np.concatenate([b[0].numpy()[:, 0, 0, 0] for b in batches]).astype(int)
    np.testing.assert_array_equal(index, np.arange(7))
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), pids)
    shuffled = [pipeline.image_dataset(paths, pids, (16, 8), 7, shuffle=True, seed=s)
                for s in (0, 0, 1)]
    orders = [next(iter(ds))[0].numpy()[:, 0, 0, 0].astype(int) for ds in shuffled]
    assert sorted(orders[0]) == list(range(7))
    np.testing.assert_array_equal(orders[0], orders[1])
    with pytest.raises(ValueError, match="labels must have shape"):
        pipeline.image_dataset(paths, pids[:3])
    assert os.path.isfile(paths[0])
