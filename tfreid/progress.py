"""Progress of long loops (feature extraction, training epochs): a live Keras bar on a terminal,
plain lines in a log file.

Keras' `Progbar` writes ANSI colour codes and carriage returns when stdout is not a terminal
(or, with verbose=2, one summary line per loop and nothing inside it). `bar` gives a live
`Progbar` on a terminal and otherwise a `PlainProgress`: a line such as

    1536/7239 images  0:21 elapsed  ETA 1:18  loss=0.4123

at most every `interval_s` seconds, nothing for a loop that ends sooner, and no final line (the
caller's own summary line, e.g. the epoch line, follows).
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Sequence

PLAIN_INTERVAL_S = 20.0


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class PlainProgress:
    """Progbar-compatible (`update`, `add`) plain progress lines, at most one per `interval_s`.

    Args:
      total: number of steps (images, batches) of the loop.
      unit: what a step is, for the line ("image", "step").
      stateful_metrics: metric names shown as given (others: the mean of the values given).
      interval_s: least time between two lines.
      write: where lines go.
    """

    def __init__(self, total: int, unit: str = "step", stateful_metrics: Sequence[str] = (),
                 interval_s: float = PLAIN_INTERVAL_S, write: Callable[[str], None] = print):
        self.total, self.unit, self.interval_s, self.write = int(total), unit, interval_s, write
        self.stateful = set(stateful_metrics or ())
        self.current = 0
        self._values: dict[str, list[float]] = {}
        self._start = self._last = time.perf_counter()

    def update(self, current: int, values=None) -> None:
        """Records that `current` steps are done; `values`: [(name, value), ...]."""
        self.current = int(current)
        for name, value in values or ():
            if name in self.stateful:
                self._values[name] = [float(value), 1.0]
            else:
                total, count = self._values.get(name, [0.0, 0.0])
                self._values[name] = [total + float(value), count + 1.0]
        now = time.perf_counter()
        if now - self._last < self.interval_s or not 0 < self.current < self.total:
            return
        self._last = now
        elapsed = now - self._start
        eta = elapsed / self.current * (self.total - self.current)
        shown = "".join(f"  {k}={total / count:.4f}" for k, (total, count) in self._values.items())
        self.write(f"{self.current}/{self.total} {self.unit}s  {_clock(elapsed)} elapsed  "
                   f"ETA {_clock(eta)}{shown}")
        if self.write is print:
            sys.stdout.flush()

    def add(self, n: int, values=None) -> None:
        """Records `n` more steps."""
        self.update(self.current + int(n), values)


class _Silent:
    def update(self, current, values=None):
        pass

    def add(self, n, values=None):
        pass


def bar(total: int, unit: str = "step", log: Callable[[str], None] = print,
        stateful_metrics: Sequence[str] | None = None, interval_s: float = PLAIN_INTERVAL_S):
    """A progress object with `update(current, values)` / `add(n, values)` for a loop of `total`.

    Args:
      total: steps of the loop.
      unit: what a step is.
      log: the caller's logger: progress shows only when it is `print` (a silenced caller
        passes another callable and gets no progress).
      stateful_metrics: metrics shown as given rather than averaged.
      interval_s: least time between two plain lines.

    Returns:
      keras.utils.Progbar on a terminal, else PlainProgress (or a silent one).
    """
    if log is not print:
        return _Silent()
    if sys.stdout.isatty():
        import keras

        return keras.utils.Progbar(total, unit_name=unit, stateful_metrics=stateful_metrics)
    return PlainProgress(total, unit, stateful_metrics or (), interval_s)
