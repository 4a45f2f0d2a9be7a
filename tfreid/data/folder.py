"""A generic dataset (registry name "folder"): train / query / gallery folders whose file
names a regex parses, for a layout without its own loader."""

from __future__ import annotations

import os
import re

from tfreid.data import layout
from tfreid.data.records import ImageRecord, ReIDSplit


def folder_dataset(root: str | os.PathLike | None, pattern: str,
                   train_dir: str | None = "train", query_dir: str = "query",
                   gallery_dir: str = "gallery", camid_base: int = 0,
                   name: str = "folder") -> ReIDSplit:
    """A generic dataset: three folders whose file names a regex parses.

    Args:
      root: folder holding the three sub-folders.
      pattern: regex matched against the whole file name, with named groups `pid` and
        `camid` (both integers), e.g. r"(?P<pid>\\d+)_c(?P<camid>\\d+)_.*\\.jpg".
      train_dir: train sub-folder; None for a test-only dataset (train is then empty).
      query_dir, gallery_dir: sub-folders of the query and gallery images.
      camid_base: subtracted from the parsed camera number (1 if names count cameras from 1).
      name: ReIDSplit name.

    Raises:
      ValueError: the pattern lacks a group, a file name does not parse, or a split is empty.
      FileNotFoundError: a folder is missing.
    """
    if root is None:
        raise ValueError("folder dataset: root is required (the folder holding the splits).")
    regex = re.compile(pattern)
    missing = {"pid", "camid"} - set(regex.groupindex)
    if missing:
        raise ValueError(f"folder dataset: pattern {pattern!r} lacks named group(s) "
                         f"{sorted(missing)}.")
    root = layout.require_dir(root, f"{name} root")

    def to_record(path, match):
        try:
            pid, camid = int(match.group("pid")), int(match.group("camid"))
        except (TypeError, ValueError):
            raise ValueError(f"{name}: groups pid={match.group('pid')!r}, camid="
                             f"{match.group('camid')!r} of {str(path)!r} are not integers "
                             f"(pattern {pattern!r}).") from None
        return ImageRecord(str(path), pid, camid - camid_base)

    parts = {"train": ()}
    for split, sub in (("train", train_dir), ("query", query_dir), ("gallery", gallery_dir)):
        if sub is None:
            continue
        records = layout.parse_folder(root / sub, regex, None, to_record,
                                      what=f"{name} {split}")
        parts[split] = layout.require_nonempty(records, f"{name} {split}", root / sub)
    return ReIDSplit(name, parts["train"], parts["query"], parts["gallery"])
