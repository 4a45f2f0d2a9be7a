"""Runs a whole random-split protocol (VIPeR, CUHK01, PRID-like data): one training per split,
then the mean ± std of the test metrics over the splits.

  python tools/protocol.py --dataset=viper --num_splits=10 --out=runs/viper_lstm -- \
      --flagfile=zoo/configs/siamese_lstm_paper_viper.cfg --data_dir=DATA

Everything after `--` goes to tools/train.py unchanged; split k trains with
`--<dataset>_split_index=k --<dataset>_num_splits=N` into `<out>/split_<k>` (each split's
flags.json records its index and seed). A killed protocol continues where it stopped with the
same command: finished splits are kept, an unfinished one resumes from its last checkpoint.
`<out>/summary.json` holds every split's metrics and their mean / std; the table is printed.
"""

from __future__ import annotations

from tfreid import cli  # first: quiet TensorFlow start-up

import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from absl import flags  # noqa: E402

from tfreid.errors import UserError  # noqa: E402
from tfreid.rundir import RunDir  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "viper", "A dataset with seeded random splits (a loader that takes "
                    "split_index and num_splits: viper, cuhk01).")
flags.DEFINE_integer("num_splits", 10, "Splits to run (0 .. num_splits-1).", lower_bound=1)
flags.DEFINE_string("out", None, "Protocol folder (one run folder per split).", required=True)

TRAIN = Path(__file__).resolve().parent / "train.py"
HEADLINE = ("rank1", "rank5", "rank10", "rank20", "mAP")


def _train_split(index: int, train_args: list[str], out: Path) -> dict:
    """Trains split `index` (or resumes it) and returns its metrics.json."""
    run = RunDir(out).split(index)
    if run.metrics.is_file():
        return run.read_metrics()
    command = [sys.executable, str(TRAIN), *train_args, f"--dataset={FLAGS.dataset}",
               f"--{FLAGS.dataset}_split_index={index}", f"--{FLAGS.dataset}_num_splits="
               f"{FLAGS.num_splits}", f"--out={run.path}"]
    if run.flags.is_file():
        command.append("--resume")
    print(f"split {index}: {' '.join(command[1:])}", flush=True)
    start = time.perf_counter()
    if subprocess.run(command).returncode != 0 or not run.metrics.is_file():
        raise UserError(f"split {index} did not finish (see {run.path}); rerun the same command "
                        "to resume it")
    print(f"split {index}: trained in {time.perf_counter() - start:.0f} s", flush=True)
    return run.read_metrics()


def main(argv):
    from tfreid.evaluation.protocols import mean_std_over_splits

    train_args = list(argv[1:])
    if any(a.startswith(("--out=", "--dataset=", f"--{FLAGS.dataset}_split_index")) for a in train_args):
        raise UserError("--out, --dataset and the split index are set by tools/protocol.py; "
                        "give them before `--`, not after it")
    out = Path(FLAGS.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    per_split = [_train_split(k, train_args, out) for k in range(FLAGS.num_splits)]
    sections = {k: v for k, v in per_split[0].items() if k in ("fused", "test", "channels")}
    summary = {"dataset": FLAGS.dataset, "num_splits": FLAGS.num_splits, "train_args": train_args,
               "splits": [RunDir(out).split(k).read_flags().get(f"{FLAGS.dataset}_split_index", k)
                          for k in range(FLAGS.num_splits)],
               "mean_std": mean_std_over_splits([{k: m[k] for k in sections} for m in per_split]),
               "seconds": time.perf_counter() - start}
    RunDir(out).write_json(RunDir(out).summary, summary)
    rows = [("fused", summary["mean_std"].get("fused"))]
    rows += [(f"channel {c}", rep) for c, rep in summary["mean_std"].get("channels", {}).items()]
    rows += [("test", summary["mean_std"].get("test"))]
    print(f"{FLAGS.dataset}, {FLAGS.num_splits} splits, all-gallery, mean ± std (%):")
    for title, rep in rows:
        if rep and "all_gallery" in rep:
            part = rep["all_gallery"]
            print(f"  {title:14s} " + "  ".join(
                f"{key} {100 * part[key]['mean']:5.1f} ± {100 * part[key]['std']:4.1f}"
                for key in HEADLINE if key in part))
    print(f"summary in {RunDir(out).summary}")


if __name__ == "__main__":
    cli.run(main)
