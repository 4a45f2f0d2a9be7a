"""Synthetic data: layout, determinism, idempotence, loader round trip, difficulty."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from tfreid.data import datasets, synthetic
from tfreid.data.market import MARKET_PATTERN

SMALL = dict(num_train_ids=2, num_test_ids=3, num_cameras=2, images_per_camera=3)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.jpg"))}


def test_layout_and_names(tmp_path):
    out = synthetic.generate(tmp_path / "s", num_distractors=2, **SMALL)
    assert out == tmp_path / "s"
    train = sorted(p.name for p in (out / "bounding_box_train").iterdir())
    assert len(train) == 2 * 2 * 3 and train[0] == "0001_c1s1_000000_00.jpg"
    query = sorted(p.name for p in (out / "query").iterdir())
    assert query == [f"{pid:04d}_c{c}s1_000000_00.jpg" for pid in (3, 4, 5) for c in (1, 2)]
    gallery = sorted(p.name for p in (out / "bounding_box_test").iterdir())
    assert len(gallery) == 3 * 2 * 2 + 2 and sum(n.startswith("0000_") for n in gallery) == 2
    assert all(MARKET_PATTERN.fullmatch(n) for n in train + query + gallery)
    image = cv2.imread(str(out / "query" / query[0]))
    assert image.shape == (128, 48, 3)
    config = json.loads((out / "synthetic.json").read_text())
    assert config["seed"] == 0 and config["size"] == [128, 48] and config["num_distractors"] == 2


def test_same_seed_is_byte_identical_other_seed_differs(tmp_path):
    a = _files(synthetic.generate(tmp_path / "a", seed=3, **SMALL))
    b = _files(synthetic.generate(tmp_path / "b", seed=3, **SMALL))
    c = _files(synthetic.generate(tmp_path / "c", seed=4, **SMALL))
    assert a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)


def test_identity_does_not_depend_on_dataset_size(tmp_path):
    small = _files(synthetic.generate(tmp_path / "a", **SMALL))
    more = _files(synthetic.generate(tmp_path / "b", **{**SMALL, "num_test_ids": 5}))
    train = [k for k in small if k.startswith("bounding_box_train")]
    assert train and all(small[k] == more[k] for k in train)


def test_idempotent_and_regenerates_on_new_config(tmp_path):
    out = synthetic.generate(tmp_path / "s", **SMALL)
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    synthetic.generate(out, **SMALL)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == stamp       # nothing rewritten
    synthetic.generate(out, **{**SMALL, "images_per_camera": 2, "size": (128, 64)})
    assert len(list((out / "bounding_box_train").iterdir())) == 2 * 2 * 2   # old files gone
    assert cv2.imread(str(next((out / "query").iterdir()))).shape == (128, 64, 3)


def test_refuses_to_overwrite_foreign_files(tmp_path):
    out = synthetic.generate(tmp_path / "s", **SMALL)
    (out / "query" / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="holiday.jpg"):
        synthetic.generate(out, **{**SMALL, "seed": 1})
    assert (out / "query" / "holiday.jpg").exists()


def test_refuses_a_folder_it_did_not_generate(tmp_path):
    (tmp_path / "query").mkdir()
    (tmp_path / "query" / "0002_c1s1_000451_00.jpg").write_bytes(b"x")  # e.g. a real Market copy
    with pytest.raises(FileExistsError, match="no synthetic.json"):
        synthetic.generate(tmp_path, **SMALL)


def test_interrupted_generation_is_redone(tmp_path):
    out = synthetic.generate(tmp_path / "s", **SMALL)
    config = json.loads((out / "synthetic.json").read_text())
    victim = next((out / "query").iterdir())
    victim.unlink()                                           # as if killed mid-way
    (out / "synthetic.json").write_text(json.dumps({**config, "complete": False}))
    split = datasets.build("synthetic", out)                  # no arguments: keeps its config
    assert victim.exists() and len(split.query) == 6
    assert json.loads((out / "synthetic.json").read_text()) == config


@pytest.mark.parametrize("kwargs,message", [
    (dict(num_cameras=1), "num_cameras=1 must be >= 2"),
    (dict(num_cameras=10), "num_cameras=10 must be <= 9"),
    (dict(images_per_camera=1), "images_per_camera=1"),
    (dict(num_test_ids=0), "num_test_ids=0"),
    (dict(size=(128,)), "size must be"),
    (dict(seed=1.5), "seed must be an int"),
])
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=re.escape(message)):
        synthetic.generate(tmp_path / "s", **{**SMALL, **kwargs})
    assert not (tmp_path / "s").exists()


def test_loader_round_trip(tmp_path):
    split = datasets.build("synthetic", tmp_path / "s", num_distractors=1, **SMALL)
    assert split.name == "synthetic"
    assert {r.pid for r in split.train} == {1, 2}
    assert {r.pid for r in split.query} == {3, 4, 5}
    assert {r.pid for r in split.gallery} == {0, 3, 4, 5}
    assert {r.camid for r in split.train} == {0, 1}
    assert len(split.query) == 6 and len(split.gallery) == 13 and len(split.train) == 12
    again = datasets.build("synthetic", tmp_path / "s")        # existing folder, no arguments
    assert again == split
    market = datasets.build("market1501", tmp_path / "s")      # the Market loader reads it too
    assert market.train == split.train


def test_num_ids_shorthand(tmp_path):
    out = synthetic.generate(tmp_path / "s", num_ids=10, num_cameras=2, images_per_camera=2)
    config = json.loads((out / "synthetic.json").read_text())
    assert (config["num_train_ids"], config["num_test_ids"]) == (6, 4)


def _rank1(features, pids, camids, is_query):
    """Rank-1 of Euclidean matching, same-pid-same-camera gallery images removed."""
    q, g = features[is_query], features[~is_query]
    d = (q ** 2).sum(1)[:, None] + (g ** 2).sum(1)[None] - 2 * q @ g.T
    d[(pids[is_query][:, None] == pids[~is_query][None])
      & (camids[is_query][:, None] == camids[~is_query][None])] = np.inf
    return float(np.mean(pids[~is_query][d.argmin(1)] == pids[is_query]))


def _stripe_histograms(image):
    """A hand-made feature: grey-world normalised HSV histograms of 8 horizontal stripes."""
    image = image.astype(np.float32)
    image = np.clip(image / image.reshape(-1, 3).mean(0) * 110, 0, 255).astype(np.uint8)
    hsv = cv2.cvtColor(image[:, 12:36], cv2.COLOR_BGR2HSV)
    rows = []
    for stripe in np.array_split(hsv, 8):
        h = cv2.calcHist([stripe], [0, 1, 2], None, [8, 3, 3], [0, 180, 0, 256, 0, 256]).ravel()
        rows.append(np.sqrt(h / h.sum()))
    return np.concatenate(rows)


def test_raw_pixels_are_clearly_worse_than_a_better_feature(tmp_path):
    # Default test-side settings (40 ids, 3 cameras, 4 images); one train id keeps it fast.
    split = datasets.build("synthetic", tmp_path / "s", num_train_ids=1, num_test_ids=40)
    records = split.query + split.gallery
    images = [cv2.imread(r.path) for r in records]
    pids = np.array([r.pid for r in records])
    camids = np.array([r.camid for r in records])
    is_query = np.arange(len(records)) < len(split.query)
    raw = _rank1(np.stack([i.astype(np.float32).ravel() for i in images]), pids, camids, is_query)
    hist = _rank1(np.stack([_stripe_histograms(i) for i in images]), pids, camids, is_query)
    chance = 8 / (len(split.gallery) - 3)       # 8 cross-camera matches among the valid gallery
    assert 4 * chance < raw < 0.7, raw           # learnable signal, far from solved
    assert hist > raw + 0.2, (raw, hist)         # a better feature does much better


def test_camera_shift_changes_only_the_cameras_colours(tmp_path):
    from tfreid.data.synthetic_render import camera

    base = camera(0, 1, (128, 48))
    assert all(np.array_equal(camera(0, 1, (128, 48), 1.0)[k], v) for k, v in base.items()
               if isinstance(v, np.ndarray))  # the default data is unchanged
    shifted = camera(0, 1, (128, 48), 4.0)
    assert shifted["view"] == base["view"] and np.array_equal(shifted["background"], base["background"])
    assert np.abs(shifted["cast"] - 1).max() > 2 * np.abs(base["cast"] - 1).max()
    synthetic.generate(tmp_path / "a", num_train_ids=2, num_test_ids=2, num_cameras=2,
                       images_per_camera=2)
    assert "camera_shift" not in json.loads((tmp_path / "a" / synthetic.CONFIG_NAME).read_text())
    synthetic.generate(tmp_path / "b", num_train_ids=2, num_test_ids=2, num_cameras=2,
                       images_per_camera=2, camera_shift=3.0)
    assert synthetic.load(tmp_path / "b").name == "synthetic"  # reloaded with its own config
    assert json.loads((tmp_path / "b" / synthetic.CONFIG_NAME).read_text())["camera_shift"] == 3.0
    with pytest.raises(ValueError, match="camera_shift"):
        synthetic.generate(tmp_path / "c", camera_shift=0.0)
