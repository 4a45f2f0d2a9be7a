"""Immutable records shared by every dataset: one image = (path, person id, camera id)."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

JUNK_PID = -1        # Market-1501 "junk" boxes: never a match, removed from every ranking.
DISTRACTOR_PID = 0   # Market-1501 distractors: stay in the gallery, never match a query.


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One image of a re-ID dataset."""

    path: str
    pid: int
    camid: int


@dataclasses.dataclass(frozen=True)
class ReIDSplit:
    """A train / query / gallery split of a dataset.

    Attributes:
      name: dataset name, e.g. "market1501" or "cuhk03_pair1".
      train, query, gallery: tuples of ImageRecord; pids are the dataset's own ids
        (not relabelled); use `relabel` for contiguous training labels.
    """

    name: str
    train: tuple[ImageRecord, ...]
    query: tuple[ImageRecord, ...]
    gallery: tuple[ImageRecord, ...]

    def summary(self) -> str:
        rows = []
        for part in ("train", "query", "gallery"):
            records = getattr(self, part)
            rows.append(f"{part:8s} {len({r.pid for r in records}):6d} ids {len(records):7d} images "
                        f"{len({r.camid for r in records}):3d} cameras")
        return f"{self.name}\n" + "\n".join(rows)


def arrays(records: Sequence[ImageRecord]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Splits records into (paths, pids [n] int64, camids [n] int64)."""
    paths = [r.path for r in records]
    pids = np.asarray([r.pid for r in records], dtype=np.int64)
    camids = np.asarray([r.camid for r in records], dtype=np.int64)
    return paths, pids, camids


def relabel(records: Sequence[ImageRecord]) -> tuple[tuple[ImageRecord, ...], dict[int, int]]:
    """Maps pids to contiguous labels 0..P-1 (sorted by pid) for classification heads.

    Returns:
      (relabelled records, mapping original pid -> label).
    """
    mapping = {pid: label for label, pid in enumerate(sorted({r.pid for r in records}))}
    return tuple(dataclasses.replace(r, pid=mapping[r.pid]) for r in records), mapping
