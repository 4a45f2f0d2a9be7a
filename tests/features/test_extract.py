"""Feature extraction over a small CUHK03-pair-1-layout folder written by the test."""

import json

import cv2
import numpy as np
import pytest
import tensorflow as tf

from tfreid.data import datasets
from tfreid.features import ColorNamesConfig, color_names_bow, extract, lomo

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """detected/{train,val}/IIII_KK.jpg with 3 train ids and 2 val ids, varying sizes."""
    root = tmp_path_factory.mktemp("data") / "cuhk03_pair1" / "detected"
    for part, ids in (("train", 3), ("val", 2)):
        (root / part).mkdir(parents=True)
        for pid in range(ids):
            for cell in (0, 1, 5, 6):
                size = (int(RNG.integers(100, 160)), int(RNG.integers(40, 70)))
                image = RNG.integers(0, 256, size + (3,)).astype(np.uint8)
                cv2.imwrite(str(root / part / f"{pid:04d}_{cell:02d}.jpg"), image)
    return root


@pytest.fixture(scope="module")
def table():
    t = RNG.random((32768, 11)).astype(np.float32)
    return t / t.sum(1, keepdims=True)


def _decode(path, size):
    """What a user does: PIL's pixels, then an antialiased bilinear resize."""
    from PIL import Image
    image = np.asarray(Image.open(path).convert("RGB"))
    return tf.image.resize(tf.cast(image, tf.float32)[None], size, antialias=True)


def test_extract_dataset_matches_direct_calls_and_round_trips(folder, table, tmp_path):
    split = datasets.build("cuhk03_pair1", folder)
    codebook = RNG.dirichlet(np.ones(11), 6).astype(np.float32)
    splits, metadata = extract.extract_dataset(split, ["lomo", "cn"], batch_size=5, table=table,
                                               codebook=codebook, progress=False)
    assert [len(splits[p]["paths"]) for p in extract.SPLITS] == [12, 4, 4]
    query = splits["query"]
    assert query["lomo"].shape == (4, 40, 674) and query["cn"].shape == (4, 16, 6)
    for i in (0, 3):
        path = query["paths"][i]
        want_lomo = lomo(_decode(path, (128, 48))).rows.numpy()[0]
        want_cn = color_names_bow(_decode(path, (128, 64)), table, codebook,
                                  ColorNamesConfig()).numpy()[0]
        np.testing.assert_allclose(query["lomo"][i], want_lomo, atol=1e-5)
        np.testing.assert_allclose(query["cn"][i], want_cn, atol=1e-5)
    np.testing.assert_array_equal(query["camids"], 0)
    np.testing.assert_array_equal(splits["gallery"]["camids"], 1)

    out = tmp_path / "features.npz"
    extract.save_features(out, split.name, splits, metadata)
    loaded = extract.load_features(out)      # allow_pickle=False inside
    assert str(loaded["dataset"]) == "cuhk03_pair1"
    assert list(loaded["features"]) == ["cn", "lomo"]
    assert loaded["query_paths"].dtype.kind == "U" and loaded["train_pids"].dtype == np.int64
    np.testing.assert_array_equal(loaded["train_lomo"], splits["train"]["lomo"])
    np.testing.assert_array_equal(loaded["cn_codebook"], codebook)
    assert json.loads(str(loaded["lomo_config"]))["height"] == 128
    flat = extract.lomo_flat(loaded["query_lomo"])
    np.testing.assert_allclose(flat[0], lomo(_decode(query["paths"][0], (128, 48))).flat[0],
                               atol=1e-5)


def test_extract_errors(folder, table):
    split = datasets.build("cuhk03_pair1", folder)
    with pytest.raises(ValueError, match="hog"):
        extract.extract_dataset(split, ["lomo", "hog"], progress=False)
    with pytest.raises(ValueError, match="w2c"):
        extract.extract_dataset(split, ["cn"], progress=False)
    with pytest.raises(FileNotFoundError, match="nothing.jpg"):
        extract.image_dataset([str(folder / "nothing.jpg")], {"x": (8, 8)})


def test_tool_fits_codebook_and_writes_npz(folder, tmp_path, tools):
    table_path = tmp_path / "w2c.npy"
    t = RNG.random((32768, 11)).astype(np.float32)
    np.save(table_path, t / t.sum(1, keepdims=True))
    out = tmp_path / "out.npz"
    result = tools.run("extract_features", "--dataset=cuhk03_pair1", f"--data_dir={folder}",
                       "--features=lomo,cn", f"--out={out}", "--batch_size=8", f"--w2c={table_path}",
                       "--num_words=5", "--codebook_images=4", "--seed=1",
                       f"--save_codebook={tmp_path / 'codebook.npy'}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Wrote" in result.stdout
    loaded = extract.load_features(out)
    assert loaded["train_cn"].shape == (12, 16, 5)
    assert loaded["gallery_lomo"].shape == (4, 40, 674)
    np.testing.assert_array_equal(np.load(tmp_path / "codebook.npy"), loaded["cn_codebook"])
