"""Two-camera datasets evaluated over random identity splits: CUHK01 and VIPeR.

* CUHK01 (Li, Zhao, Wang, ACCV 2012): `campus/PPPPNNN.png`, 971 persons, NNN 001-002 camera A,
  003-004 camera B. Classic protocol: 485 train / 486 test identities, random halves.
* VIPeR (Gray & Tao, ECCV 2008): `cam_a/` and `cam_b/`, one image per camera per person, names
  like `000_45.bmp` (number before `_` = person). Classic protocol: 10 random 316/316 splits.

Splits are seeded: split k of seed s is the (k+1)-th permutation drawn from
`np.random.default_rng(s)` (see `layout.id_permutation`); the first `num_train_ids` ids of it
train, the rest test. Query = test images of one camera, gallery = the other camera
(`direction` "a2b": query camera A, gallery camera B; "b2a": the reverse). camid 0 = A, 1 = B.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tfreid.data import layout
from tfreid.data.records import ImageRecord, ReIDSplit

CUHK01_PATTERN = re.compile(r"(?P<pid>\d{4})(?P<num>\d{3})\.png", re.IGNORECASE)
CUHK01_EXAMPLE = "0001001.png"
VIPER_PATTERN = re.compile(r"(?P<pid>\d+)_[^/]*\.(?:bmp|png|jpe?g)", re.IGNORECASE)
VIPER_EXAMPLE = "000_45.bmp"


def _two_camera_split(records: list[ImageRecord], name: str, num_train_ids: int | None,
                      split_index: int, num_splits: int, seed: int, direction: str,
                      where) -> ReIDSplit:
    if direction not in ("a2b", "b2a"):
        raise ValueError(f"{name}: direction must be 'a2b' or 'b2a', got {direction!r}.")
    ids = sorted({r.pid for r in records})
    if num_train_ids is None:
        num_train_ids = len(ids) // 2
    if not 0 <= num_train_ids < len(ids):
        raise ValueError(f"{name}: num_train_ids={num_train_ids} must be in [0, {len(ids) - 1}] "
                         f"({len(ids)} identities in {str(where)!r}; 0: every identity is a test "
                         "identity, for evaluating a model trained elsewhere).")
    order = layout.id_permutation(ids, seed, split_index, num_splits)
    train_ids = set(order[:num_train_ids])
    query_cam = 0 if direction == "a2b" else 1
    train = [r for r in records if r.pid in train_ids]
    query = [r for r in records if r.pid not in train_ids and r.camid == query_cam]
    gallery = [r for r in records if r.pid not in train_ids and r.camid != query_cam]
    if num_train_ids:
        layout.require_nonempty(train, f"{name} train", where)
    return ReIDSplit(name, tuple(train),
                     layout.require_nonempty(query, f"{name} query", where),
                     layout.require_nonempty(gallery, f"{name} gallery", where))


def cuhk01(root: str | os.PathLike | None = None, num_train_ids: int = 485, split_index: int = 0,
           num_splits: int = 10, seed: int = 0, direction: str = "a2b") -> ReIDSplit:
    """CUHK01 from `root` (the folder holding `campus/`, `campus/` itself, or a data root holding
    `CUHK01/campus/` or `cuhk01/campus/`; None reads `$TFREID_DATA`).

    Args:
      num_train_ids: identities in train (485 of 971 classically; the rest test).
      split_index, num_splits, seed: which seeded random split (see module docstring).
      direction: "a2b" (query camera A) or "b2a".

    Raises:
      FileNotFoundError: no campus folder. ValueError: a name does not parse, image number
      outside 001-004, bad arguments or empty split.
    """
    try:
        folder = layout.find_root(root, "campus", ("CUHK01", "cuhk01"), "cuhk01") / "campus"
    except FileNotFoundError:
        if root is None or Path(root).name != "campus":
            raise
        folder = layout.require_dir(root, "cuhk01 campus")

    def to_record(path, match):
        num = int(match.group("num"))
        if not 1 <= num <= 4:
            raise ValueError(f"cuhk01: image number {num:03d} of {str(path)!r} is outside 001-004.")
        return ImageRecord(str(path), int(match.group("pid")), (num - 1) // 2)

    records = layout.parse_folder(folder, CUHK01_PATTERN, CUHK01_EXAMPLE, to_record, what="cuhk01")
    layout.require_nonempty(records, "cuhk01", folder)
    return _two_camera_split(records, "cuhk01", num_train_ids, split_index, num_splits, seed,
                             direction, folder)


def viper(root: str | os.PathLike | None = None, num_train_ids: int | None = None,
          split_index: int = 0, num_splits: int = 10, seed: int = 0,
          direction: str = "a2b") -> ReIDSplit:
    """VIPeR from `root` (the folder holding `cam_a/` and `cam_b/`, or a data root holding
    `VIPeR/` or `viper/`; None reads `$TFREID_DATA`).

    Args:
      num_train_ids: identities in train (default half: 316 of 632; 0: every person is a test
        person, e.g. to evaluate a model trained on another dataset).
      split_index, num_splits, seed: which seeded random split (see module docstring).
      direction: "a2b" (query cam_a, gallery cam_b) or "b2a".

    Raises:
      FileNotFoundError: a camera folder is missing. ValueError: a name does not parse, a
      person is missing from one camera or appears twice in one, bad arguments, empty split.
    """
    folder = layout.find_root(root, ("cam_a", "cam_b"), ("VIPeR", "viper", "VIPeR.v1.0"), "viper")
    per_cam = []
    for camid, sub in enumerate(("cam_a", "cam_b")):
        def to_record(path, match, camid=camid):
            return ImageRecord(str(path), int(match.group("pid")), camid)

        recs = layout.parse_folder(folder / sub, VIPER_PATTERN, VIPER_EXAMPLE, to_record,
                                   what=f"viper {sub}")
        layout.require_nonempty(recs, f"viper {sub}", folder / sub)
        seen = {}
        for r in recs:
            if r.pid in seen:
                raise ValueError(f"viper: person {r.pid} has two images in {sub}: "
                                 f"{seen[r.pid]!r} and {r.path!r}.")
            seen[r.pid] = r.path
        per_cam.append(recs)
    ids_a, ids_b = ({r.pid for r in recs} for recs in per_cam)
    if ids_a != ids_b:
        odd = sorted(ids_a ^ ids_b)
        raise ValueError(f"viper: persons {odd[:10]} have an image in only one of cam_a/cam_b "
                         f"in {str(folder)!r}.")
    return _two_camera_split(per_cam[0] + per_cam[1], "viper", num_train_ids, split_index,
                             num_splits, seed, direction, folder)
