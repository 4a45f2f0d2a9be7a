"""CUHK03 (Li et al., CVPR 2014, "DeepReID"): the original `cuhk-03.mat` and the pair-1 folders.

Two sources:

* `cuhk03`: the original MATLAB v7.3 (HDF5) file. `detected` and `labeled` are 5-cell arrays, one
  per camera pair; each cell is a [num_ids x 10] cell array of images (columns 1-5 first camera,
  6-10 second; empty cells for missing images). `testsets` holds the classic 20 random splits of
  100 test identities as rows (pair, id), 1-based. Images are extracted once to PNG files in a
  cache folder, then only the cache and a small JSON are read.
* `cuhk03_pair1`: camera pair 1 written out as `detected/{train,val}/IIII_KK.jpg` (KK = cell
  00-09; 00-04 first camera, 05-09 second; ids restart at 0 in each folder).

Ids and cameras in the records:

* `.mat`: pid = 1000 * pair + id (pair 1-5, id 1-based; e.g. pair 2 id 17 -> 2017), camid =
  2 * (pair - 1) + view (view 0 = first camera of the pair, 1 = second).
* pair-1 folders: train pid = IIII, val pid = VAL_PID_OFFSET + IIII (different people than the
  train ids with the same number); camid 0 (KK 00-04) or 1 (KK 05-09).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import numpy as np

from tfreid.data import layout
from tfreid.data.records import ImageRecord, ReIDSplit

_log = logging.getLogger(__name__)

VAL_PID_OFFSET = 100000
PAIR1_PATTERN = re.compile(r"(?P<pid>\d+)_(?P<cell>\d{2})\.jpe?g", re.IGNORECASE)
PAIR1_EXAMPLE = "0005_07.jpg"
CELLS_PER_VIEW = 5

# Cache names: <pair>_<id:04d>_<view>_<cell:02d>.png, all 1-based like the .mat.
_CACHE_PATTERN = re.compile(r"(?P<pair>\d)_(?P<id>\d{4})_(?P<view>[12])_(?P<cell>\d{2})\.png")
_MARKER = "extracted.json"


# ----------------------------------------------------------------------------- pair-1 folders


def _pair1_records(folder: Path, pid_offset: int, what: str) -> list[ImageRecord]:
    def to_record(path, match):
        cell = int(match.group("cell"))
        if cell >= 2 * CELLS_PER_VIEW:
            raise ValueError(f"{what}: cell {cell:02d} of {str(path)!r} is outside 00-09.")
        return ImageRecord(str(path), pid_offset + int(match.group("pid")), cell // CELLS_PER_VIEW)

    records = layout.parse_folder(folder, PAIR1_PATTERN, PAIR1_EXAMPLE, to_record, what=what)
    return list(layout.require_nonempty(records, what, folder))


def cuhk03_pair1(root: str | os.PathLike | None = None, num_val_ids: int = 0, seed: int = 0,
                 evaluate_on: str = "test") -> ReIDSplit:
    """CUHK03 camera pair 1 in `detected/{train,val}` folders, with the project's protocol.

    Protocol: train on `train/`; query = first-camera images of `val/` (KK 00-04), gallery =
    second-camera images of `val/` (KK 05-09).

    Args:
      root: the `detected/` folder itself, a folder holding `detected/`, or a data root holding
        `cuhk03_pair1/detected/`; None reads `$TFREID_DATA`.
      num_val_ids: train identities held out for validation (drawn with `seed`); they are
        removed from train whatever `evaluate_on` is, so model selection never sees test ids.
      seed: seed of the held-out draw.
      evaluate_on: "test" (query/gallery from `val/`, pids offset by VAL_PID_OFFSET) or
        "validation" (query/gallery = first/second-camera images of the held-out train ids).

    Returns:
      ReIDSplit named "cuhk03_pair1" (or "cuhk03_pair1/validation").

    Raises:
      FileNotFoundError: folders missing. ValueError: bad names, bad arguments, empty split.
    """
    if evaluate_on not in ("test", "validation"):
        raise ValueError(f"evaluate_on must be 'test' or 'validation', got {evaluate_on!r}.")
    folder = layout.find_root(root, ("train", "val"), ("detected", "cuhk03_pair1/detected"),
                              "cuhk03_pair1")
    train = _pair1_records(folder / "train", 0, "cuhk03_pair1 train")
    train_ids = sorted({r.pid for r in train})
    if not 0 <= num_val_ids < len(train_ids):
        raise ValueError(f"num_val_ids={num_val_ids} must be in [0, {len(train_ids)}) "
                         f"(train has {len(train_ids)} identities).")
    if evaluate_on == "validation" and num_val_ids == 0:
        raise ValueError("evaluate_on='validation' needs num_val_ids > 0.")
    held = set(layout.id_permutation(train_ids, seed, 0, 1)[:num_val_ids])
    kept = tuple(r for r in train if r.pid not in held)
    if evaluate_on == "validation":
        probe = [r for r in train if r.pid in held]
        name = "cuhk03_pair1/validation"
    else:
        probe = _pair1_records(folder / "val", VAL_PID_OFFSET, "cuhk03_pair1 val")
        name = "cuhk03_pair1"
    query = layout.require_nonempty([r for r in probe if r.camid == 0], f"{name} query", folder)
    gallery = layout.require_nonempty([r for r in probe if r.camid == 1], f"{name} gallery", folder)
    return ReIDSplit(name, kept, query, gallery)


# ----------------------------------------------------------------------------- original .mat


def _find_mat(root: str | os.PathLike | None) -> Path:
    from tfreid import paths

    if root is not None and Path(root).is_file():
        return Path(root)
    base = paths.data_root(root)
    tried = [base / "cuhk-03.mat", base / "cuhk03_release" / "cuhk-03.mat",
             base / "cuhk03" / "cuhk03_release" / "cuhk-03.mat", base / "cuhk03" / "cuhk-03.mat"]
    for path in tried:
        if path.is_file():
            return path
    raise FileNotFoundError("cuhk03: no cuhk-03.mat found; looked for "
                            + ", ".join(repr(str(t)) for t in tried) + ".")


def _extract(mat_path: Path, images: str, out: Path) -> dict:
    """Writes every image of `images` ('detected'/'labeled') as PNG; returns the marker dict."""
    import cv2
    import h5py

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(f"cuhk03: cannot create the image cache {str(out)!r} ({err}); "
                      "pass cache_dir= a writable folder.") from None
    for stale in out.iterdir():  # leftovers of an older or interrupted extraction
        if _CACHE_PATTERN.fullmatch(stale.name) or stale.name == _MARKER:
            stale.unlink()
    count = 0
    with h5py.File(mat_path, "r") as mat:
        for key in (images, "testsets"):
            if key not in mat:
                raise ValueError(f"cuhk03: {str(mat_path)!r} has no {key!r} entry "
                                 f"(found {sorted(mat.keys())}).")
        for pair, pair_ref in enumerate(np.asarray(mat[images]).ravel(), start=1):
            cells = np.asarray(mat[pair_ref]).T          # MATLAB order -> [num_ids, 10]
            if cells.ndim != 2 or cells.shape[1] != 2 * CELLS_PER_VIEW:
                raise ValueError(f"cuhk03: {images} pair {pair} has cell shape {cells.shape}, "
                                 "expected [num_ids, 10].")
            for pid, row in enumerate(cells, start=1):
                for cell, ref in enumerate(row, start=1):
                    image = np.asarray(mat[ref])
                    if image.ndim != 3 or image.size == 0:  # empty MATLAB cell
                        continue
                    image = np.ascontiguousarray(image.transpose(2, 1, 0))  # [3,W,H] -> [H,W,3] RGB
                    view = 1 if cell <= CELLS_PER_VIEW else 2
                    name = out / f"{pair}_{pid:04d}_{view}_{cell:02d}.png"
                    if not cv2.imwrite(str(name), image[..., ::-1]):
                        raise OSError(f"cuhk03: could not write {str(name)!r}.")
                    count += 1
        testsets = []
        for ref in np.asarray(mat["testsets"]).ravel():
            rows = np.asarray(mat[ref]).T
            if rows.ndim != 2 or rows.shape[1] != 2:
                raise ValueError(f"cuhk03: a testsets entry has shape {rows.shape}, "
                                 "expected [n, 2].")
            testsets.append([[int(p), int(i)] for p, i in rows])
    stat = mat_path.stat()
    return {"mat": mat_path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "images": images, "count": count, "testsets": testsets}


def cuhk03(root: str | os.PathLike | None = None, images: str = "detected", split_index: int = 0,
           cache_dir: str | os.PathLike | None = None) -> ReIDSplit:
    """CUHK03 from the original `cuhk-03.mat`, classic split `split_index` (of 20).

    Test identities of the split: query = their first-camera images, gallery = their
    second-camera images; every other identity (all 5 pairs) is train.

    Args:
      root: path of `cuhk-03.mat`, or a folder holding it (also under `cuhk03_release/`);
        None reads `$TFREID_DATA`.
      images: "detected" or "labeled" boxes.
      split_index: which classic split (0-based).
      cache_dir: where PNGs are extracted (default: `cuhk03_images/` next to the .mat); a
        `<images>/extracted.json` there marks a finished extraction of this very file.

    Raises:
      FileNotFoundError: no .mat. ValueError: bad arguments, unexpected .mat structure,
      empty split.
    """
    if images not in ("detected", "labeled"):
        raise ValueError(f"images must be 'detected' or 'labeled', got {images!r}.")
    mat_path = _find_mat(root)
    out = Path(cache_dir) if cache_dir is not None else mat_path.parent / "cuhk03_images"
    out = out / images
    stat = mat_path.stat()
    marker = None
    if (out / _MARKER).is_file():
        marker = json.loads((out / _MARKER).read_text())
        if (marker.get("size"), marker.get("mtime_ns")) != (stat.st_size, stat.st_mtime_ns):
            marker = None
    if marker is None:
        _log.info("Extracting CUHK03 %s images from %s to %s", images, mat_path, out)
        marker = _extract(mat_path, images, out)
        (out / _MARKER).write_text(json.dumps(marker))
    testsets = marker["testsets"]
    if not 0 <= split_index < len(testsets):
        raise ValueError(f"split_index={split_index} is outside [0, {len(testsets)}) "
                         f"({len(testsets)} classic splits in {str(mat_path)!r}).")
    test_ids = {1000 * p + i for p, i in testsets[split_index]}

    def to_record(path, match):
        pair, view = int(match.group("pair")), int(match.group("view"))
        pid = 1000 * pair + int(match.group("id"))
        return ImageRecord(str(path), pid, 2 * (pair - 1) + view - 1)

    records = layout.parse_folder(out, _CACHE_PATTERN, "1_0001_1_01.png", to_record,
                                  what="cuhk03 cache")
    train = [r for r in records if r.pid not in test_ids]
    query = [r for r in records if r.pid in test_ids and r.camid % 2 == 0]
    gallery = [r for r in records if r.pid in test_ids and r.camid % 2 == 1]
    name = f"cuhk03_{images}"
    return ReIDSplit(name, layout.require_nonempty(train, f"{name} train", out),
                     layout.require_nonempty(query, f"{name} query", out),
                     layout.require_nonempty(gallery, f"{name} gallery", out))
