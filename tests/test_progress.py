"""tfreid.progress: plain progress lines (steps, elapsed, ETA) when stdout is not a terminal."""

import io
from contextlib import redirect_stdout

from tfreid import progress


def test_plain_lines_with_steps_and_eta():
    lines = []
    bar = progress.PlainProgress(10, "image", stateful_metrics=["loss"], interval_s=0.0,
                                 write=lines.append)
    for step in range(1, 11):
        bar.update(step, [("loss", 1.0 / step), ("acc", 0.5)])
    assert len(lines) == 9  # none for the last step: the caller's summary line follows
    assert lines[0].startswith("1/10 images  0:00 elapsed  ETA ") and "loss=1.0000" in lines[0]
    assert "acc=0.5000" in lines[-1] and "loss=0.1111" in lines[-1]
    assert not any("\x1b" in line or "\r" in line for line in lines)


def test_quiet_within_the_interval_and_for_silenced_callers():
    lines = []
    bar = progress.PlainProgress(100, write=lines.append)  # default interval: 20 s
    bar.add(50)
    assert lines == []
    out = io.StringIO()
    with redirect_stdout(out):  # not a terminal: plain lines, not a Keras bar
        assert isinstance(progress.bar(5), progress.PlainProgress)
        silent = progress.bar(5, log=lambda s: None)
        silent.update(3, [("loss", 1.0)])
    assert out.getvalue() == ""
