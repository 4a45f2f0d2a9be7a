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
      skipped: (path, reason) of the unreadable files left out of the parts (see
        `tfreid.data.datasets.check_images`); empty when none was.
    """

    name: str
    train: tuple[ImageRecord, ...]
    query: tuple[ImageRecord, ...]
    gallery: tuple[ImageRecord, ...]
    skipped: tuple[tuple[str, str], ...] = ()

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


def holdout_identities(records: Sequence[ImageRecord], num_ids: int, seed: int = 0
                       ) -> tuple[tuple[ImageRecord, ...], tuple[ImageRecord, ...], tuple[ImageRecord, ...]]:
    """Holds out `num_ids` training identities as a validation query/gallery split.

    Only identities seen by at least two cameras can be held out. For each held-out identity,
    the images of its lowest camera id are queries and the others gallery (cross-camera, so no
    image is junk).

    Returns:
      (kept training records, validation query records, validation gallery records).

    Raises:
      ValueError: num_ids is negative or larger than the identities with two cameras.
    """
    cams: dict[int, set[int]] = {}
    for r in records:
        cams.setdefault(r.pid, set()).add(r.camid)
    eligible = sorted(pid for pid, c in cams.items() if len(c) >= 2 and pid >= 0)
    if not 0 <= num_ids <= len(eligible):
        raise ValueError(f"cannot hold out {num_ids} identities: {len(eligible)} training "
                         "identities have images from two or more cameras")
    held = set(np.random.default_rng(seed).permutation(eligible)[:num_ids].tolist())
    kept = tuple(r for r in records if r.pid not in held)
    query = tuple(r for r in records if r.pid in held and r.camid == min(cams[r.pid]))
    gallery = tuple(r for r in records if r.pid in held and r.camid != min(cams[r.pid]))
    return kept, query, gallery


def train_val_test_parts(split: ReIDSplit, num_val_ids: int, seed: int = 0
                         ) -> dict[str, tuple[ImageRecord, ...]]:
    """Parts of a run: "train", "val_query", "val_gallery" (held-out training identities, see
    `holdout_identities`), and the test "query" and "gallery"."""
    train, val_query, val_gallery = holdout_identities(split.train, num_val_ids, seed)
    return {"train": train, "val_query": val_query, "val_gallery": val_gallery,
            "query": split.query, "gallery": split.gallery}
