"""Dataset loaders: each layout is written in tmp_path with tiny images, then parsed back."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from tfreid.data import datasets, layout
from tfreid.data.cuhk03 import VAL_PID_OFFSET


def _touch_image(path: Path, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((8, 4, 3), value, np.uint8)
    assert cv2.imwrite(str(path), image), path


def _rows(records):
    return sorted((Path(r.path).name, r.pid, r.camid) for r in records)


# ----------------------------------------------------------------------------- Market / Duke


def _market(root: Path, duke: bool = False) -> Path:
    name = (lambda pid, cam, n: f"{pid}_c{cam}_f{n:07d}.jpg") if duke else \
        (lambda pid, cam, n: f"{pid}_c{cam}s1_{n:06d}_01.jpg")
    for pid, cam, n in [("0002", 1, 1), ("0002", 2, 2), ("0007", 3, 3), ("-1", 1, 4)]:
        _touch_image(root / "bounding_box_train" / name(pid, cam, n))
    for pid, cam, n in [("0002", 2, 5), ("0007", 6, 6), ("0000", 4, 7), ("-1", 2, 8)]:
        _touch_image(root / "bounding_box_test" / name(pid, cam, n))
    for pid, cam, n in [("0002", 1, 9), ("0007", 1, 10)]:
        _touch_image(root / "query" / name(pid, cam, n))
    (root / "bounding_box_test" / "Thumbs.db").write_bytes(b"junk")  # as in the real release
    return root


@pytest.mark.parametrize("name,duke", [("market1501", False), ("dukemtmc", True)])
def test_market_layout_parses_ids_cameras_junk(tmp_path, name, duke):
    root = _market(tmp_path / "ds", duke)
    split = datasets.build(name, root)
    assert split.name == name
    train = {(r.pid, r.camid) for r in split.train}
    assert train == {(2, 0), (2, 1), (7, 2)}                       # junk dropped, cN -> N-1
    assert {(r.pid, r.camid) for r in split.gallery} == {(2, 1), (7, 5), (0, 3), (-1, 1)}
    assert {(r.pid, r.camid) for r in split.query} == {(2, 0), (7, 0)}
    assert all(Path(r.path).is_file() for r in split.train + split.query + split.gallery)
    # Sorted by file name, so the order is deterministic.
    assert [r.path for r in split.gallery] == sorted(r.path for r in split.gallery)


def test_market_found_under_data_root(tmp_path):
    _market(tmp_path / "Market-1501-v15.09.15")
    assert len(datasets.build("market1501", tmp_path).train) == 3


def test_market_root_from_environment(tmp_path, monkeypatch):
    _market(tmp_path / "market1501")
    monkeypatch.setenv("TFREID_DATA", str(tmp_path))
    assert len(datasets.build("market1501").query) == 2


def test_market_missing_folder_is_named(tmp_path):
    root = _market(tmp_path / "ds")
    for f in (root / "query").iterdir():
        f.unlink()
    (root / "query").rmdir()
    with pytest.raises(FileNotFoundError, match="query"):
        datasets.build("market1501", root)


def test_market_bad_name_names_file_and_pattern(tmp_path):
    root = _market(tmp_path / "ds")
    _touch_image(root / "query" / "person2_cam1.jpg")
    with pytest.raises(ValueError, match=r"person2_cam1\.jpg.*expected.*0002_c1s1_000451_03\.jpg"):
        datasets.build("market1501", root)


def test_duke_rejects_market_names(tmp_path):
    root = _market(tmp_path / "ds")  # Market names in a Duke build
    with pytest.raises(ValueError, match=r"0005_c2_f0046985\.jpg"):
        datasets.build("dukemtmc", root)


def test_market_empty_split(tmp_path):
    root = _market(tmp_path / "ds")
    for f in (root / "bounding_box_train").iterdir():
        if not f.name.startswith("-1"):
            f.unlink()  # only junk left: train is empty after dropping it
    with pytest.raises(ValueError, match="train split is empty.*bounding_box_train"):
        datasets.build("market1501", root)


# ----------------------------------------------------------------------------- generic folder


def test_folder_dataset(tmp_path):
    for sub, names in {"train": ["p3_cam2_a.png", "p4_cam1_b.png"], "query": ["p3_cam1_c.png"],
                       "gallery": ["p3_cam2_d.png", "p9_cam2_e.png"]}.items():
        for n in names:
            _touch_image(tmp_path / sub / n)
    pattern = r"p(?P<pid>\d+)_cam(?P<camid>\d+)_\w+\.png"
    split = datasets.build("folder", tmp_path, pattern=pattern, camid_base=1)
    assert _rows(split.train) == [("p3_cam2_a.png", 3, 1), ("p4_cam1_b.png", 4, 0)]
    assert _rows(split.query) == [("p3_cam1_c.png", 3, 0)]
    assert [r.pid for r in split.gallery] == [3, 9]
    test_only = datasets.build("folder", tmp_path, pattern=pattern, train_dir=None)
    assert test_only.train == () and len(test_only.gallery) == 2
    with pytest.raises(ValueError, match=r"lacks named group\(s\) \['camid'\]"):
        datasets.build("folder", tmp_path, pattern=r"p(?P<pid>\d+).*")
    with pytest.raises(ValueError, match="not integers"):
        datasets.build("folder", tmp_path, pattern=r"p(?P<pid>\d+)_(?P<camid>cam\d+)_\w+\.png")
    with pytest.raises(ValueError, match=r"p3_cam2_a\.png.*expected"):
        datasets.build("folder", tmp_path, pattern=r"x(?P<pid>\d+)_(?P<camid>\d+)\.png")
    with pytest.raises(FileNotFoundError, match="probe"):
        datasets.build("folder", tmp_path, pattern=pattern, query_dir="probe")


# ----------------------------------------------------------------------------- CUHK03 pair 1


def _pair1(root: Path, train_ids=8, val_ids=3) -> Path:
    for sub, n in (("train", train_ids), ("val", val_ids)):
        for pid in range(n):
            for cell in (0, 1, 5, 6, 7) if pid % 2 else (2, 9):
                _touch_image(root / "cuhk03_pair1" / "detected" / sub / f"{pid:04d}_{cell:02d}.jpg")
    return root


def test_cuhk03_pair1_protocol(tmp_path):
    _pair1(tmp_path)
    for root in (tmp_path, tmp_path / "cuhk03_pair1", tmp_path / "cuhk03_pair1" / "detected"):
        split = datasets.build("cuhk03_pair1", root)
        assert {r.pid for r in split.train} == set(range(8))
        assert {r.pid for r in split.query} == {VAL_PID_OFFSET + i for i in range(3)}
        assert {r.camid for r in split.query} == {0} and {r.camid for r in split.gallery} == {1}
        assert len(split.query) == 1 + 2 + 1 and len(split.gallery) == 1 + 3 + 1
        assert len(split.train) == 4 * 5 + 4 * 2
    cams = {Path(r.path).name: r.camid for r in split.train}
    assert cams["0001_01.jpg"] == 0 and cams["0001_05.jpg"] == 1 and cams["0000_02.jpg"] == 0


def test_cuhk03_pair1_validation_holdout(tmp_path):
    _pair1(tmp_path)
    test = datasets.build("cuhk03_pair1", tmp_path, num_val_ids=3, seed=4)
    val = datasets.build("cuhk03_pair1", tmp_path, num_val_ids=3, seed=4, evaluate_on="validation")
    held = {r.pid for r in val.query + val.gallery}
    assert len(held) == 3 and held.isdisjoint({r.pid for r in val.train})
    assert test.train == val.train                      # same train whatever is evaluated
    assert {r.pid for r in test.query} == {VAL_PID_OFFSET + i for i in range(3)}
    again = datasets.build("cuhk03_pair1", tmp_path, num_val_ids=3, seed=4,
                           evaluate_on="validation")
    assert again == val                                  # deterministic
    others = {frozenset(r.pid for r in datasets.build(
        "cuhk03_pair1", tmp_path, num_val_ids=3, seed=s, evaluate_on="validation").query)
        for s in range(6)}
    assert len(others) > 1                               # the seed matters


def test_cuhk03_pair1_errors(tmp_path):
    _pair1(tmp_path)
    with pytest.raises(ValueError, match="needs num_val_ids"):
        datasets.build("cuhk03_pair1", tmp_path, evaluate_on="validation")
    with pytest.raises(ValueError, match="num_val_ids=8"):
        datasets.build("cuhk03_pair1", tmp_path, num_val_ids=8)
    with pytest.raises(ValueError, match="evaluate_on"):
        datasets.build("cuhk03_pair1", tmp_path, evaluate_on="train")
    bad = tmp_path / "cuhk03_pair1" / "detected" / "val" / "0001_12.jpg"
    _touch_image(bad)
    with pytest.raises(ValueError, match=r"cell 12 .*0001_12\.jpg"):
        datasets.build("cuhk03_pair1", tmp_path)
    bad.unlink()
    _touch_image(bad.with_name("0001-03.jpg"))
    with pytest.raises(ValueError, match=r"0001-03\.jpg.*0005_07\.jpg"):
        datasets.build("cuhk03_pair1", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"\['train', 'val'\]"):
        datasets.build("cuhk03_pair1", tmp_path / "cuhk03_pair1" / "detected" / "train")


@pytest.mark.data("cuhk03_pair1/detected")
def test_cuhk03_pair1_real_data(data_root):
    split = datasets.build("cuhk03_pair1", data_root)
    assert len({r.pid for r in split.train}) == 743 and len(split.train) == 7239
    val = split.query + split.gallery
    assert len({r.pid for r in val}) == 100 and len(val) == 938
    assert all(re.fullmatch(r"\d{4}_0[0-4]\.jpg", Path(r.path).name) for r in split.query)
    assert all(re.fullmatch(r"\d{4}_0[5-9]\.jpg", Path(r.path).name) for r in split.gallery)
    assert {r.pid for r in split.query} == {r.pid for r in split.gallery}
    assert {r.pid for r in split.train}.isdisjoint({r.pid for r in val})


# ----------------------------------------------------------------------------- CUHK03 .mat


def _image(pair, pid, cell):
    """A small RGB image whose pixels encode (pair, pid, cell); height differs from width."""
    image = np.zeros((6, 4, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10 * pair, 10 * pid, 10 * cell
    image[0, 0] = (255, 0, 0)
    return image


def _write_mat(path: Path, num_ids=(3, 2, 2, 2, 2), testsets=(((1, 1), (2, 2)), ((1, 3), (3, 1)))):
    """Writes a MATLAB v7.3-like cuhk-03.mat: cells of object references, data column-major."""
    missing = {(1, 2, 4), (1, 2, 9), (2, 1, 6)}   # (pair, id, cell 1-based) left empty
    counter = itertools.count()
    with h5py.File(path, "w") as f:
        refs = f.create_group("#refs#")

        def store(array):
            return refs.create_dataset(f"r{next(counter)}", data=array).ref

        empty = np.zeros(2, np.uint64)               # how MATLAB stores an empty cell
        for key in ("detected", "labeled"):
            pairs = np.empty((1, len(num_ids)), dtype=h5py.ref_dtype)
            for p, n in enumerate(num_ids, start=1):
                cells = np.empty((10, n), dtype=h5py.ref_dtype)   # [num_ids x 10] transposed
                for i in range(1, n + 1):
                    for c in range(1, 11):
                        img = empty if (p, i, c) in missing else _image(p, i, c).transpose(2, 1, 0)
                        cells[c - 1, i - 1] = store(img)
                pairs[0, p - 1] = store(cells)
            f.create_dataset(key, data=pairs)
        sets = np.empty((1, len(testsets)), dtype=h5py.ref_dtype)
        for k, rows in enumerate(testsets):
            sets[0, k] = store(np.asarray(rows, np.float64).T)
        f.create_dataset("testsets", data=sets)


def test_cuhk03_mat_extracts_and_splits(tmp_path):
    mat = tmp_path / "cuhk03_release" / "cuhk-03.mat"
    mat.parent.mkdir()
    _write_mat(mat)
    split = datasets.build("cuhk03", tmp_path, split_index=0)
    assert split.name == "cuhk03_detected"
    assert {r.pid for r in split.query} == {1001, 2002}
    assert {r.camid for r in split.query} == {0, 2} and {r.camid for r in split.gallery} == {1, 3}
    assert len(split.query) == 5 + 5 and len(split.gallery) == 5 + 5
    train_ids = {r.pid for r in split.train}
    assert train_ids == {1002, 1003, 2001, 3001, 3002, 4001, 4002, 5001, 5002}
    assert len(split.train) == 9 * 10 - 3               # three empty cells skipped
    # Camera ids: 2 * (pair - 1) + view.
    assert {(r.pid, r.camid) for r in split.train if r.pid == 4001} == {(4001, 6), (4001, 7)}
    # Pixels survive extraction in RGB order and orientation.
    rec = next(r for r in split.query if r.pid == 2002 and r.path.endswith("_03.png"))
    got = cv2.imread(rec.path)[..., ::-1]
    np.testing.assert_array_equal(got, _image(2, 2, 3))
    other = datasets.build("cuhk03", mat, split_index=1, images="labeled")
    assert {r.pid for r in other.query} == {1003, 3001}
    assert "labeled" in other.query[0].path


def test_cuhk03_mat_cache_is_reused(tmp_path, monkeypatch):
    mat = tmp_path / "cuhk-03.mat"
    _write_mat(mat)
    cache = tmp_path / "cache"
    first = datasets.build("cuhk03", mat, cache_dir=cache)
    from tfreid.data import cuhk03

    def fail(*args):
        raise AssertionError("extracted twice")

    monkeypatch.setattr(cuhk03, "_extract", fail)
    assert datasets.build("cuhk03", mat, cache_dir=cache) == first


def test_cuhk03_mat_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="cuhk-03.mat"):
        datasets.build("cuhk03", tmp_path)
    mat = tmp_path / "cuhk-03.mat"
    _write_mat(mat)
    with pytest.raises(ValueError, match=r"split_index=2 is outside \[0, 2\)"):
        datasets.build("cuhk03", mat, split_index=2)
    with pytest.raises(ValueError, match="images must be"):
        datasets.build("cuhk03", mat, images="both")
    with h5py.File(tmp_path / "bad.mat", "w") as f:
        f.create_dataset("detected", data=np.zeros(3))
    with pytest.raises(ValueError, match="no 'testsets' entry"):
        datasets.build("cuhk03", tmp_path / "bad.mat")


# ----------------------------------------------------------------------------- CUHK01, VIPeR


def _cuhk01(root: Path, persons=10) -> Path:
    for pid in range(1, persons + 1):
        for num in range(1, 5):
            _touch_image(root / "CUHK01" / "campus" / f"{pid:04d}{num:03d}.png")
    return root


def test_cuhk01_splits(tmp_path):
    _cuhk01(tmp_path)
    split = datasets.build("cuhk01", tmp_path, num_train_ids=4, split_index=0, seed=1)
    train_ids = {r.pid for r in split.train}
    test_ids = {r.pid for r in split.query}
    assert len(train_ids) == 4 and len(test_ids) == 6 and train_ids.isdisjoint(test_ids)
    assert len(split.train) == 16 and len(split.query) == 12 and len(split.gallery) == 12
    names = {Path(r.path).name[-7:]: r.camid for r in split.query + split.gallery}
    assert all(camid == (int(n[:3]) - 1) // 2 for n, camid in names.items())
    assert {r.camid for r in split.query} == {0}
    rev = datasets.build("cuhk01", tmp_path, num_train_ids=4, split_index=0, seed=1,
                         direction="b2a")
    assert rev.query == split.gallery and rev.gallery == split.query
    assert datasets.build("cuhk01", tmp_path, num_train_ids=4, split_index=0, seed=1) == split
    trains = {frozenset(r.pid for r in datasets.build(
        "cuhk01", tmp_path, num_train_ids=4, split_index=k, seed=1).train) for k in range(10)}
    assert len(trains) > 3                                   # ten different random splits
    campus = datasets.build("cuhk01", tmp_path / "CUHK01" / "campus", num_train_ids=4)
    assert len(campus.train) == 16


def test_cuhk01_errors(tmp_path):
    _cuhk01(tmp_path)
    _touch_image(tmp_path / "CUHK01" / "campus" / "0001005.png")
    with pytest.raises(ValueError, match=r"005 .*0001005\.png.*001-004"):
        datasets.build("cuhk01", tmp_path, num_train_ids=4)
    campus = tmp_path / "CUHK01" / "campus"
    (campus / "0001005.png").rename(campus / "a.png")
    with pytest.raises(ValueError, match=r"a\.png.*0001001\.png"):
        datasets.build("cuhk01", tmp_path, num_train_ids=4)
    (tmp_path / "CUHK01" / "campus" / "a.png").unlink()
    with pytest.raises(ValueError, match="num_train_ids=10"):
        datasets.build("cuhk01", tmp_path, num_train_ids=10)
    with pytest.raises(FileNotFoundError, match="cuhk01: .*elsewhere"):
        datasets.build("cuhk01", tmp_path / "CUHK01" / "elsewhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no folder with sub-folder\(s\) \['campus'\]"):
        datasets.build("cuhk01", tmp_path / "empty")


def _viper(root: Path, persons=8) -> Path:
    for pid in range(persons):
        _touch_image(root / "cam_a" / f"{pid:03d}_45.bmp")
        _touch_image(root / "cam_b" / f"{pid:03d}_{90 + pid}.bmp")
    return root


def test_viper_splits_both_directions(tmp_path):
    _viper(tmp_path / "VIPeR")
    a2b = datasets.build("viper", tmp_path, split_index=3, seed=0)
    b2a = datasets.build("viper", tmp_path, split_index=3, seed=0, direction="b2a")
    assert len(a2b.train) == 8 and len(a2b.query) == 4 and len(a2b.gallery) == 4
    assert all("cam_a" in r.path and r.camid == 0 for r in a2b.query)
    assert all("cam_b" in r.path and r.camid == 1 for r in a2b.gallery)
    assert b2a.query == a2b.gallery and b2a.gallery == a2b.query and b2a.train == a2b.train
    # Split k does not depend on how many splits are asked for, and matches a direct draw.
    ids = list(range(8))
    rng = np.random.default_rng(0)
    order = [rng.permutation(8) for _ in range(4)][3]
    assert {r.pid for r in a2b.train} == {ids[i] for i in order[:4]}
    assert datasets.build("viper", tmp_path, split_index=3, num_splits=20) == a2b
    with pytest.raises(ValueError, match=r"split_index=10 is outside \[0, 10\)"):
        datasets.build("viper", tmp_path, split_index=10)
    with pytest.raises(ValueError, match="direction"):
        datasets.build("viper", tmp_path, direction="ab")


def test_viper_errors(tmp_path):
    _viper(tmp_path)
    (tmp_path / "cam_b" / "007_97.bmp").unlink()
    with pytest.raises(ValueError, match=r"persons \[7\] have an image in only one"):
        datasets.build("viper", tmp_path)
    _touch_image(tmp_path / "cam_b" / "007_97.bmp")
    _touch_image(tmp_path / "cam_b" / "007_98.bmp")
    with pytest.raises(ValueError, match="person 7 has two images in cam_b"):
        datasets.build("viper", tmp_path)
    (tmp_path / "cam_b" / "007_98.bmp").rename(tmp_path / "cam_b" / "seven.bmp")
    with pytest.raises(ValueError, match=r"seven\.bmp.*000_45\.bmp"):
        datasets.build("viper", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"\['cam_a', 'cam_b'\]"):
        datasets.build("viper", tmp_path / "cam_a")


# ----------------------------------------------------------------------------- registry, helpers


def test_registry(tmp_path):
    assert {"market1501", "dukemtmc", "cuhk03", "cuhk03_pair1", "cuhk01", "viper", "folder",
            "synthetic"} <= set(datasets.names())
    with pytest.raises(KeyError, match="Unknown dataset 'marlet'.*market1501"):
        datasets.build("marlet", tmp_path)
    _viper(tmp_path)
    with pytest.raises(TypeError, match="'viper'.*split_id"):
        datasets.build("viper", tmp_path, split_id=1)
    datasets.register("mine_for_test", lambda root, k=1: ("called", root, k))
    try:
        assert datasets.build("mine_for_test", tmp_path, k=3) == ("called", tmp_path, 3)
        with pytest.raises(ValueError, match="already registered"):
            datasets.register("viper", lambda root: None)
    finally:
        datasets._CUSTOM.pop("mine_for_test")


def test_id_permutation_matches_reference():
    ids = [9, 3, 5, 7, 1, 3]
    for k in range(3):
        rng = np.random.default_rng(11)
        perms = [rng.permutation(5) for _ in range(k + 1)]
        assert layout.id_permutation(ids, 11, k, 3) == [[1, 3, 5, 7, 9][i] for i in perms[k]]


def test_missing_root_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        datasets.build("market1501", tmp_path / "nothing_here")


def test_no_heavy_imports():
    import subprocess
    import sys

    code = ("import sys, tfreid.data, tfreid.data.datasets; "
            "print('tensorflow' in sys.modules, 'cv2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_bad_images_are_listed_before_any_training_or_skipped(tmp_path):
    from tfreid.images import BadImagesError

    _pair1(tmp_path)
    folder = tmp_path / "cuhk03_pair1" / "detected"
    truncated = folder / "train" / "0001_00.jpg"
    truncated.write_bytes(truncated.read_bytes()[:40])
    empty = folder / "val" / "0001_05.jpg"
    empty.write_bytes(b"")
    with pytest.raises(BadImagesError) as err:
        datasets.build("cuhk03_pair1", tmp_path)
    message = str(err.value)
    assert "2 of 37 images" in message and "--skip_bad_images" in message
    assert f"{truncated}: cannot be decoded" in message and f"{empty}: empty file" in message
    assert [b.path for b in err.value.bad] == sorted([str(truncated), str(empty)])

    split = datasets.build("cuhk03_pair1", tmp_path, skip_bad_images=True)
    reasons = dict(split.skipped)
    assert set(reasons) == {str(truncated), str(empty)}
    assert reasons[str(empty)] == "empty file (0 bytes)" and "cannot be decoded" in reasons[str(truncated)]
    kept = {r.path for part in (split.train, split.query, split.gallery) for r in part}
    assert str(truncated) not in kept and str(empty) not in kept and len(kept) == 35
    unchecked = datasets.build("cuhk03_pair1", tmp_path, check_images=False)
    assert str(truncated) in {r.path for r in unchecked.train} and unchecked.skipped == ()


def test_viper_all_persons_as_test_for_cross_dataset_evaluation(tmp_path):
    _viper(tmp_path)
    split = datasets.build("viper", tmp_path, num_train_ids=0, direction="b2a")
    assert split.train == () and len(split.query) == len(split.gallery) == 8
    assert all(r.camid == 1 for r in split.query) and all(r.camid == 0 for r in split.gallery)
    with pytest.raises(ValueError, match=r"num_train_ids=8 must be in \[0, 7\]"):
        datasets.build("viper", tmp_path, num_train_ids=8)
