"""The run folder of `tools/train.py --out`: every file name in it, and the start / resume check.

  flags.json            the flags the run was started with (tools/train.py)
  skipped_images.json   unreadable images left out with --skip_bad_images
  metrics.json          the test report, written when training ends
  model.keras           the trained model: raw images -> embedding(s)
  training_index.png    CNN runs: the online training index per epoch (paper Fig. 5)
  pictures/             tools/visualize.py's pictures of the run (its default --out)
  cache/                CNN partial fine-tuning: cached prefix maps (tfreid.training.prefix_cache)
  features/             stripe runs: cached features per channel, Color Names codebook
  <channel>/            stripe runs: one sub-run per feature channel (lomo, cn), each with
  checkpoints/, best.weights.h5, history.jsonl, tensorboard/   (tfreid.training.loop)

`tools/protocol.py` writes a folder of runs: split_<k>/ (one run each) and summary.json.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from tfreid.errors import UserError


class RunFolderError(UserError):
    """A run folder cannot be used as asked (holds a run, holds none, lacks a file)."""


@dataclasses.dataclass(frozen=True)
class RunDir:
    """One run folder (or a stripe run's channel sub-run); paths only, nothing is created."""

    path: Path

    def __init__(self, path: str | Path):
        object.__setattr__(self, "path", Path(path))

    # Files of a run.
    @property
    def flags(self) -> Path:
        return self.path / "flags.json"

    @property
    def skipped_images(self) -> Path:
        return self.path / "skipped_images.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    @property
    def model(self) -> Path:
        return self.path / "model.keras"

    @property
    def pictures(self) -> Path:
        """Default folder of tools/visualize.py's pictures of the run."""
        return self.path / "pictures"

    @property
    def training_index(self) -> Path:
        return self.path / "training_index.png"

    @property
    def cache(self) -> Path:
        return self.path / "cache"

    def prefix_maps(self, part: str) -> Path:
        """Cached prefix maps of "train" or "val" images."""
        return self.cache / ("prefix_maps.npz" if part == "train" else f"{part}_prefix_maps.npz")

    @property
    def features(self) -> Path:
        return self.path / "features"

    def channel_features(self, channel: str) -> Path:
        """Cached features of every part (train, val, test) for one stripe channel."""
        return self.features / f"{channel}.npz"

    @property
    def codebook(self) -> Path:
        """The Color Names codebook learnt on the training images."""
        return self.features / "codebook.npy"

    # Files of the training loop.
    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def best_weights(self) -> Path:
        return self.path / "best.weights.h5"

    @property
    def history(self) -> Path:
        return self.path / "history.jsonl"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    def channel(self, name: str) -> RunDir:
        """The sub-run of one feature channel of a stripe run."""
        return RunDir(self.path / name)

    # A folder of runs (tools/protocol.py).
    def split(self, index: int) -> RunDir:
        return RunDir(self.path / f"split_{index}")

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    def has_checkpoint(self) -> bool:
        """True when the run or any of its channel sub-runs has saved a checkpoint."""
        return any(self.path.glob("**/checkpoints/checkpoint"))

    def check_start(self, resume: bool) -> None:
        """Refuses to start over a run (without resume) or to resume nothing.

        Raises:
          RunFolderError: naming the folder and the flag that fixes it.
        """
        if self.flags.exists() and not resume:
            raise RunFolderError(f"--out={self.path} already holds a run (flags.json); pass "
                                 "--resume to continue it, or choose another --out.")
        if resume and not self.flags.exists():
            raise RunFolderError(f"--resume: {self.path} holds no run to continue (no flags.json "
                                 "there); leave out --resume to start one.")

    def read_flags(self) -> dict | None:
        """The recorded flags, or None for a folder without flags.json (e.g. the demo's)."""
        return json.loads(self.flags.read_text()) if self.flags.is_file() else None

    def read_metrics(self) -> dict:
        """metrics.json of a finished run.

        Raises:
          RunFolderError: the run has no metrics.json (not a run folder, or not finished).
        """
        if not self.metrics.is_file():
            raise RunFolderError(f"{self.path}: no metrics.json (not a tools/train.py run "
                                 "folder, or its training has not finished)")
        return json.loads(self.metrics.read_text())

    def write_json(self, path: Path, value) -> None:
        """Writes one of this run's JSON files whole (a temporary file, then a rename)."""
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(value, indent=1, default=str))
        tmp.replace(path)
