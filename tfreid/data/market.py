"""The Market-1501 layout and the datasets that use it: Market-1501 and DukeMTMC-reID.

Layout (Zheng et al., ICCV 2015; Zheng et al., ICCV 2017 for Duke)::

    <root>/bounding_box_train/0002_c1s1_000451_03.jpg   Market: pid_c<camera>s<seq>_<frame>_<box>
    <root>/bounding_box_test/...                         Duke:   0005_c2_f0046985.jpg
    <root>/query/...

pid -1 marks junk boxes and pid 0 distractors (test folders only); camera ids are stored 0-based
(`c1` -> 0). The train split drops junk. Non-image files (e.g. Market's `Thumbs.db`) are ignored.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tfreid.data import layout
from tfreid.data.records import JUNK_PID, ImageRecord, ReIDSplit

MARKET_PATTERN = re.compile(
    r"(?P<pid>-1|\d+)_c(?P<camid>\d+)s\d+_\d+_\d+\.(?:jpe?g|png)", re.IGNORECASE)
MARKET_EXAMPLE = "0002_c1s1_000451_03.jpg"
DUKE_PATTERN = re.compile(r"(?P<pid>-1|\d+)_c(?P<camid>\d+)_f\d+\.(?:jpe?g|png)", re.IGNORECASE)
DUKE_EXAMPLE = "0005_c2_f0046985.jpg"

SPLIT_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


def _one_based_camera(path: Path, match: re.Match) -> ImageRecord:
    camid = int(match.group("camid"))
    if camid < 1:
        raise ValueError(f"Camera number must start at 1 (c1), got c{camid} in {str(path)!r}.")
    return ImageRecord(str(path), int(match.group("pid")), camid - 1)


def load_market_layout(folder: str | os.PathLike, name: str, pattern: re.Pattern = MARKET_PATTERN,
                       example: str = MARKET_EXAMPLE) -> ReIDSplit:
    """Parses a folder holding `bounding_box_train`, `query`, `bounding_box_test`.

    Args:
      folder: the dataset folder itself.
      name: ReIDSplit name.
      pattern, example: file-name regex (named groups `pid`, `camid`; camid 1-based in names).

    Returns:
      ReIDSplit; train without junk (pid -1); query and gallery as stored (junk and
      distractors kept for the evaluation to handle).

    Raises:
      FileNotFoundError: a split folder is missing. ValueError: bad name or empty split.
    """
    folder = Path(folder)
    parts = {}
    for split, sub in SPLIT_DIRS.items():
        records = layout.parse_folder(folder / sub, pattern, example, _one_based_camera,
                                      what=f"{name} {split}")
        if split == "train":
            records = [r for r in records if r.pid != JUNK_PID]
        parts[split] = layout.require_nonempty(records, f"{name} {split}", folder / sub)
    return ReIDSplit(name, parts["train"], parts["query"], parts["gallery"])


def market1501(root: str | os.PathLike | None = None) -> ReIDSplit:
    """Market-1501 from `root` (the dataset folder, or a data root holding
    `Market-1501-v15.09.15/` or `market1501/`; None reads `$TFREID_DATA`)."""
    folder = layout.find_root(root, tuple(SPLIT_DIRS.values()),
                              ("Market-1501-v15.09.15", "market1501", "Market-1501"), "market1501")
    return load_market_layout(folder, "market1501")


def dukemtmc(root: str | os.PathLike | None = None) -> ReIDSplit:
    """DukeMTMC-reID from `root` (the dataset folder, or a data root holding `DukeMTMC-reID/`
    or `dukemtmc-reid/`; None reads `$TFREID_DATA`)."""
    folder = layout.find_root(root, tuple(SPLIT_DIRS.values()),
                              ("DukeMTMC-reID", "dukemtmc-reid", "dukemtmc"), "dukemtmc")
    return load_market_layout(folder, "dukemtmc", DUKE_PATTERN, DUKE_EXAMPLE)
