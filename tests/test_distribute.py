"""tfreid.distribute: one MirroredStrategy step on 2 logical CPU devices equals one device on
the same global batch; mixed precision gives finite losses that match float32. Each case runs
tests/distribute_check.py in a subprocess (logical devices must be set before TF starts)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

LOSSES = ["rank_triplet", "batch_hard", "triplet", "quadruplet", "contrastive", "siamese_pair"]
CHECK = Path(__file__).with_name("distribute_check.py")


def _check(tools, losses, precision=None):
    args = [sys.executable, str(CHECK), ",".join(losses)]
    run = subprocess.run(args + ([precision] if precision else []), capture_output=True, text=True,
                         timeout=300, env=tools.env())
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def float32(tools):
    return _check(tools, LOSSES)


@pytest.mark.parametrize("loss", LOSSES)
def test_mirrored_step_equals_one_device_on_the_global_batch(float32, loss):
    r = float32[loss]
    assert r["replicas"] == 2
    assert abs(r["mirrored_loss"] - r["loss"]) <= 1e-5
    assert r["max_weight_diff"] <= 1e-5 < r["max_update"]  # the step did move the weights


def test_each_replica_ranks_the_whole_batch_not_its_half(float32):
    # Without the all-gather a replica would see 8 of the 16 images: another loss.
    assert abs(float32["rank_triplet"]["half_batch_loss"] - float32["rank_triplet"]["loss"]) > 1e-2


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_mixed_precision_losses_are_finite_and_match_float32(float32, tools, precision):
    got = _check(tools, ["rank_triplet", "batch_hard"], precision)
    for loss in ("rank_triplet", "batch_hard"):
        for key in ("loss", "mirrored_loss"):
            assert got[loss][key] == pytest.approx(float32[loss]["loss"], rel=2e-2), (loss, key)
