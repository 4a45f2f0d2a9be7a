"""GPU readiness: the paper's whole-network recipe for the three losses of its claim, on a budget.

Trains MobileNetV2 (offline ImageNet weights) end to end at 256x128, P x K = 32 x 4, Adam 1e-4
(Chen, Duffner et al. 2021) on CUHK03 pair 1 with Rank-Triplet, its unweighted baseline and
batch-hard, one after the other, each for an equal share of --minutes of wall clock, and prints
per epoch the training throughput and the validation rank-1 (held-out training identities).
Each loss trains with tools/train.py into <--out>/<loss>; a share that ends mid-epoch keeps the
finished epochs (their checkpoints resume with `tools/train.py ... --resume`).

  python benchmarks/gpu_recipe.py --data_dir=DATA --out=runs/gpu_recipe --minutes=8

Each share includes the run's start-up (loading and checking the dataset, building the model:
about a minute on 2 loaded cores, seconds on a GPU machine). Images/s counts the epoch's training images (steps x 128) over the epoch's wall time including
its validation ranking, so it is a lower bound of the training rate. Needs TFREID_DATA (or
--data_dir) with cuhk03_pair1 and TFREID_WEIGHTS (or --weights_dir), and a GPU (--cpu runs it
on the CPU anyway, e.g. a smoke test with `--minutes=1 -- --height=64 --width=32`); skips
otherwise, so `make bench` stays short on machines without one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

LOSSES = ("rank_triplet", "rank_triplet_baseline", "batch_hard")
ROOT = Path(__file__).resolve().parents[1]
RECIPE = ["--dataset=cuhk03_pair1", "--model=cnn", "--backbone=mobilenetv2", "--weights=offline",
          "--height=256", "--width=128", "--embedding_dim=256", "--p=32", "--k=4",
          "--learning_rate=0.0001", "--weight_decay=0.0005", "--lr_step_epochs=80", "--epochs=200",
          "--patience=0", "--val_ids=100", "--seed=0"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=os.environ.get("TFREID_DATA"))
    parser.add_argument("--weights_dir", default=os.environ.get("TFREID_WEIGHTS"))
    parser.add_argument("--out", default="runs/gpu_recipe")
    parser.add_argument("--minutes", type=float, default=8.0, help="wall clock for all three losses")
    parser.add_argument("--losses", default=",".join(LOSSES))
    parser.add_argument("--cpu", action="store_true", help="run even without a GPU")
    parser.add_argument("extra", nargs="*", help="more tools/train.py flags (after --)")
    args = parser.parse_args()
    if not args.data_dir or not (Path(args.data_dir) / "cuhk03_pair1").is_dir() or not args.weights_dir:
        print("skipped: needs cuhk03_pair1 under --data_dir / TFREID_DATA and --weights_dir / "
              "TFREID_WEIGHTS")
        return
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus and not args.cpu:
        print("skipped: no GPU here (pass --cpu to run the recipe on the CPU anyway)")
        return
    print(f"devices: {[d.name for d in gpus] or 'no GPU: running on the CPU'}; "
          f"TensorFlow {tf.__version__}; budget {args.minutes:g} min", flush=True)
    losses = [loss for loss in args.losses.split(",") if loss]
    share = args.minutes * 60 / len(losses)
    summary = {}
    for loss in losses:
        out = Path(args.out) / loss
        command = [sys.executable, str(ROOT / "tools" / "train.py"), *RECIPE, f"--loss={loss}",
                   f"--data_dir={args.data_dir}", f"--weights_dir={args.weights_dir}",
                   f"--out={out}", *args.extra]
        if (out / "flags.json").is_file():
            command.append("--resume")
        start = time.perf_counter()
        try:
            subprocess.run(command, timeout=share, stdout=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            pass   # the share is spent: the finished epochs are in history.jsonl
        history_path = out / "history.jsonl"
        history = [json.loads(line) for line in history_path.read_text().splitlines()
                   if line.strip()] if history_path.is_file() else []
        steps = json.loads((out / "flags.json").read_text()).get("steps_per_epoch") \
            if (out / "flags.json").is_file() else None
        steps = steps or 543 // 32   # CUHK03 pair-1 train identities after the 100 held out, // P
        print(f"{loss}: {len(history)} epochs in {time.perf_counter() - start:.0f} s", flush=True)
        for record in history:
            rate = steps * 128 / record["seconds"]
            print(f"  epoch {record['epoch'] + 1:3d}  {record['seconds']:7.1f} s  {rate:7.1f} images/s"
                  f"  loss {record.get('loss', float('nan')):.4f}  val R1 {100 * record['val_rank1']:5.1f}"
                  f"  val mAP {100 * record['val_map']:5.1f}", flush=True)
        summary[loss] = history
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"summary in {Path(args.out) / 'summary.json'}")


if __name__ == "__main__":
    main()
