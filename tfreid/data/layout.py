"""Shared helpers of the dataset loaders: folder checks, file-name parsing, seeded id splits.

Every loader turns a folder layout into `ImageRecord`s and fails with an error that names the
folder that is missing, the file whose name does not parse (with the expected pattern), or the
split that came out empty.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from tfreid.data.records import ImageRecord

# Files with other suffixes (e.g. Market-1501's stray `Thumbs.db`) are ignored, not errors.
# Image files, by suffix, wherever a folder is scanned (datasets, gallery folders): what
# tfreid.images reads.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".tif",
                            ".tiff"})


def require_dir(path: str | os.PathLike, what: str) -> Path:
    """Returns `path` as a Path; raises FileNotFoundError naming it if it is not a folder."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{what}: folder {str(path)!r} does not exist or is not a folder.")
    return path


def find_root(root: str | os.PathLike | None, marker: str | Sequence[str],
              candidates: Sequence[str], dataset: str) -> Path:
    """Finds the dataset folder: `root` itself, or one of `candidates` inside it.

    Args:
      root: a user path (the dataset folder or a data root holding it); None reads
        `$TFREID_DATA`.
      marker: sub-folder name(s) that the dataset folder must contain (all of them).
      candidates: sub-folder names under which a data root may hold the dataset.
      dataset: name used in error messages.

    Raises:
      FileNotFoundError: naming the folder(s) searched and the marker expected.
    """
    from tfreid import paths  # local import: keeps `tfreid.data` import light

    try:
        base = paths.data_root(root)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{dataset}: {err}") from None
    markers = [marker] if isinstance(marker, str) else list(marker)
    tried = [base] + [base / c for c in candidates]
    for folder in tried:
        if all((folder / m).is_dir() for m in markers):
            return folder
    raise FileNotFoundError(
        f"{dataset}: no folder with sub-folder(s) {markers} found; looked in "
        + ", ".join(repr(str(t)) for t in tried) + ".")


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside `folder`, sorted by name (deterministic order)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def parse_folder(folder: Path, pattern: re.Pattern, example: str | None,
                 to_record: Callable[[Path, re.Match], ImageRecord | None] | None = None,
                 what: str = "dataset") -> list[ImageRecord]:
    """Parses every image file name of `folder` with `pattern` (full match of the name).

    Args:
      folder: an existing-or-not folder (checked here).
      pattern: compiled regex with named groups `pid` and `camid` (used by the default
        `to_record`: camid kept as written).
      example: a file name that parses, quoted in errors (None: none quoted).
      to_record: maps (path, match) to a record, or None to drop the file.
      what: dataset/split name for messages.

    Returns:
      records sorted by file name.

    Raises:
      FileNotFoundError: folder missing. ValueError: a name does not parse, or no image.
    """
    require_dir(folder, what)
    if to_record is None:
        def to_record(path, match):
            return ImageRecord(str(path), int(match.group("pid")), int(match.group("camid")))
    records = []
    for path in list_images(folder):
        match = pattern.fullmatch(path.name)
        if match is None:
            hint = f" (e.g. {example!r})" if example else ""
            raise ValueError(
                f"{what}: cannot parse file name {str(path)!r}; expected names matching "
                f"{pattern.pattern!r}{hint}.")
        record = to_record(path, match)
        if record is not None:
            records.append(record)
    return records


def require_nonempty(records: Sequence[ImageRecord], split: str, where: str | os.PathLike) -> tuple:
    """Returns `records` as a tuple; raises ValueError naming the split if it is empty."""
    if not records:
        raise ValueError(f"{split} split is empty: no usable images in {str(where)!r}.")
    return tuple(records)


def id_permutation(ids: Iterable[int], seed: int, split_index: int, num_splits: int) -> list[int]:
    """The `split_index`-th of `num_splits` seeded random orders of `ids`.

    The permutations are drawn in sequence from one `np.random.default_rng(seed)`, so split k
    is the same whatever `num_splits` >= k+1 is chosen and on every machine.

    Raises:
      ValueError: split_index outside [0, num_splits).
    """
    if not 0 <= split_index < num_splits:
        raise ValueError(f"split_index={split_index} is outside [0, {num_splits}).")
    ids = sorted(set(ids))
    rng = np.random.default_rng(seed)
    for _ in range(split_index + 1):
        order = rng.permutation(len(ids))
    return [ids[i] for i in order]
