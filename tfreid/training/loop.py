"""A resumable, early-stopping epoch loop shared by every trainer.

Every epoch ends with a checkpoint of the model, the optimizer (its slots and step count), the
epoch counter and the early-stopping state, so a crashed or killed run restarted with
`resume=True` continues from the end of its last finished epoch, with the same per-epoch seeds.
The best epoch's weights are also kept in `best.weights.h5`; metrics go to TensorBoard
(`<out>/tensorboard`) and to `<out>/history.jsonl` (one JSON object per finished epoch).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfreid.progress import bar as progress_bar
from tfreid.rundir import RunDir

EpochFn = Callable[[int], Mapping[str, float]]


def epoch_means(batches: Iterable[tuple], step: Callable, names: Sequence[str], total: int,
                log: Callable[[str], None] = print) -> dict[str, float]:
    """One training epoch of every trainer: `step(*batch)` on each batch, with a progress bar.

    Args:
      batches: the epoch's batches, each a tuple of step arguments (at most `total` are used).
      step: batch -> one scalar or a sequence of scalars, named by `names` (the first: "loss").
      names: the names of the step's values.
      total: batches in the epoch (for the progress bar).

    Returns:
      {name: mean over the epoch's batches}.
    """
    progbar = progress_bar(total, "step", log, stateful_metrics=[names[0]])
    sums, done = np.zeros(len(names)), 0
    for batch in batches:
        if done == total:
            break
        values = step(*batch)
        sums += [float(v) for v in (values if isinstance(values, (tuple, list)) else (values,))]
        done += 1
        progbar.update(done, [(names[0], sums[0] / done)])
    return dict(zip(names, (sums / max(done, 1)).tolist()))


def _checkpoint_number(path: str) -> int:
    """'.../ckpt-7' -> 7 (the loop numbers checkpoints by epochs done)."""
    return int(path.rsplit("-", 1)[1])


@dataclasses.dataclass
class EarlyStopping:
    """Which validation metric decides the best epoch, and when to stop.

    Attributes:
      monitor: key of the validation metrics, e.g. "val_rank1".
      mode: "max" if larger is better, "min" otherwise.
      patience: stop after this many epochs without improvement (0 = never stop early).
    """

    monitor: str = "val_rank1"
    mode: str = "max"
    patience: int = 5

    def __post_init__(self):
        if self.mode not in ("max", "min"):
            raise ValueError(f"EarlyStopping mode must be 'max' or 'min', got {self.mode!r}")
        if self.patience < 0:
            raise ValueError(f"EarlyStopping patience must be >= 0, got {self.patience}")

    def improved(self, value: float, best: float) -> bool:
        return value > best if self.mode == "max" else value < best

    @property
    def worst(self) -> float:
        return -math.inf if self.mode == "max" else math.inf


class ResumableLoop:
    """Runs `train_epoch(epoch)` then `validate(epoch)` per epoch, checkpointing after each.

    Args:
      model: the keras.Model being trained (its weights are checkpointed).
      optimizer: its optimizer (built before the first restore so slots restore too).
      out_dir: run folder; created if missing.
      max_epochs: number of epochs at most.
      early_stopping: see EarlyStopping; `validate` must return its `monitor` key.
      resume: continue from `<out_dir>/checkpoints` if there is one. Without it, an existing
        checkpoint is an error rather than silently overwritten.
      log: callable for progress lines (print by default).
      agree_epoch: with several workers (tf.distribute), maps this worker's last checkpointed
        epoch count to the one every worker resumes from (the smallest; see
        tfreid.distribute.min_across_workers): workers killed at different moments have
        checkpoints one epoch apart, and must restart in step.
    """

    def __init__(self, model: keras.Model, optimizer: keras.optimizers.Optimizer,
                 out_dir: str | Path, max_epochs: int, early_stopping: EarlyStopping,
                 resume: bool = False, log: Callable[[str], None] = print,
                 agree_epoch: Callable[[int], int] | None = None):
        if max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {max_epochs}")
        self.model, self.optimizer = model, optimizer
        self.out_dir = Path(out_dir)
        run = RunDir(out_dir)
        self.max_epochs = max_epochs
        self.early_stopping = early_stopping
        self.log = log
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.best_weights_path = run.best_weights
        self.history_path = run.history

        self._epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_done")
        self._best = tf.Variable(early_stopping.worst, dtype=tf.float64, trainable=False, name="best")
        self._best_epoch = tf.Variable(-1, dtype=tf.int64, trainable=False, name="best_epoch")
        self._bad_epochs = tf.Variable(0, dtype=tf.int64, trainable=False, name="bad_epochs")
        self._checkpoint = tf.train.Checkpoint(
            model=model, optimizer=optimizer, epochs_done=self._epoch, best=self._best,
            best_epoch=self._best_epoch, bad_epochs=self._bad_epochs)
        self._manager = tf.train.CheckpointManager(
            self._checkpoint, str(run.checkpoints), max_to_keep=2)
        self._writer = tf.summary.create_file_writer(str(run.tensorboard))
        self._restore(resume, agree_epoch)

    @property
    def epochs_done(self) -> int:
        return int(self._epoch.numpy())

    @property
    def best(self) -> tuple[int, float]:
        """(best epoch, 0-based; -1 if none yet), best monitored value)."""
        return int(self._best_epoch.numpy()), float(self._best.numpy())

    def _restore(self, resume: bool, agree_epoch: Callable[[int], int] | None) -> None:
        latest = self._manager.latest_checkpoint
        if agree_epoch is not None:  # every worker calls it, checkpoint or not (a collective)
            own = _checkpoint_number(latest) if latest else 0
            agreed = agree_epoch(own)
            if agreed != own and resume:
                kept = {_checkpoint_number(c): c for c in self._manager.checkpoints}
                if agreed and agreed not in kept:
                    raise RuntimeError(
                        f"{self.out_dir}: the workers' last checkpoints are epochs {agreed} and "
                        f"{own}, and this worker no longer holds epoch {agreed}; restart every "
                        "worker from one run folder's checkpoints.")
                self.log(f"Workers resume in step: epoch {agreed} (this worker had {own}).")
                latest = kept.get(agreed)
        if latest is None:
            self.history_path.unlink(missing_ok=True)
            return
        if not resume:
            raise FileExistsError(
                f"{self.out_dir} already holds a training run (checkpoint {latest}); pass "
                "--resume to continue it, or choose another --out.")
        # Slots must exist before restore, or the optimizer state is silently dropped.
        self.optimizer.build(self.model.trainable_variables)
        self._checkpoint.restore(latest).assert_existing_objects_matched()
        self._truncate_history(self.epochs_done)
        self.log(f"Resumed from {latest}: {self.epochs_done} epoch(s) done, best "
                 f"{self.early_stopping.monitor}={float(self._best.numpy()):.4f}")

    def _truncate_history(self, epochs_done: int) -> None:
        """Drops history lines of epochs after the checkpoint (a kill after an epoch's history
        line, before its checkpoint)."""
        if not self.history_path.exists():
            return
        lines = self.history_path.read_text().splitlines()
        kept = [line for line in lines if line.strip() and json.loads(line)["epoch"] < epochs_done]
        self.history_path.write_text("".join(line + "\n" for line in kept))

    def run(self, train_epoch: EpochFn, validate: EpochFn) -> list[dict]:
        """Trains until max_epochs or early stopping; returns the whole history (resumed too).

        Each history entry holds "epoch" (0-based), "seconds", the training metrics and the
        validation metrics.
        """
        monitor = self.early_stopping.monitor
        while self.epochs_done < self.max_epochs:
            epoch = self.epochs_done
            if self.early_stopping.patience and int(self._bad_epochs.numpy()) >= self.early_stopping.patience:
                self.log(f"Early stop: no {monitor} improvement for {self.early_stopping.patience} epochs.")
                break
            start = time.perf_counter()
            metrics = dict(train_epoch(epoch))
            metrics.update(validate(epoch))
            if monitor not in metrics:
                raise KeyError(f"validation returned {sorted(metrics)}; the early-stopping "
                               f"monitor {monitor!r} is not among them")
            value = float(metrics[monitor])
            if self.early_stopping.improved(value, float(self._best.numpy())):
                self._best.assign(value)
                self._best_epoch.assign(epoch)
                self._bad_epochs.assign(0)
                self.model.save_weights(str(self.best_weights_path))
            else:
                self._bad_epochs.assign_add(1)
            record = {"epoch": epoch, "seconds": round(time.perf_counter() - start, 3),
                      **{k: float(v) for k, v in metrics.items()}}
            with self._writer.as_default(step=epoch):
                for key, val in metrics.items():
                    tf.summary.scalar(key, float(val))
            self._writer.flush()
            # History first: a kill before the checkpoint leaves a line that resuming drops
            # (`_truncate_history`) and an epoch that is run again; the other order lost the line.
            with self.history_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
            self._epoch.assign(epoch + 1)
            self._manager.save(checkpoint_number=epoch + 1)
            shown = "  ".join(f"{k}={v:.4f}" for k, v in record.items() if k not in ("epoch",))
            self.log(f"epoch {epoch + 1}/{self.max_epochs}  {shown}")
        return self.history()

    def history(self) -> list[dict]:
        if not self.history_path.exists():
            return []
        return [json.loads(line) for line in self.history_path.read_text().splitlines() if line.strip()]

    def restore_best(self) -> None:
        """Loads the best epoch's weights into the model (no-op if no epoch was validated)."""
        if self.best_weights_path.exists():
            self.model.load_weights(str(self.best_weights_path))
