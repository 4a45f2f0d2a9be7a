"""tools/train.py end to end on synthetic data: a run killed mid-training resumes with --resume."""

import json
import signal
import subprocess
import time

import pytest


@pytest.fixture(scope="module")
def data_dir(synthetic_data):
    return synthetic_data(num_train_ids=16, num_test_ids=8, num_cameras=2, images_per_camera=3)


def _args(data_dir, out, *extra):
    return ["--dataset=synthetic", f"--data_dir={data_dir}", f"--out={out}", "--model=siamese_lstm",
            "--features=lomo", "--hidden_units=4", "--val_ids=4", "--epochs=3", "--patience=0",
            "--seed=0", *extra]


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint(data_dir, tmp_path, tools):
    out = tmp_path / "run"
    proc = subprocess.Popen(tools.command("train", *_args(data_dir, out)), env=tools.env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first_checkpoint = out / "lomo" / "checkpoints" / "checkpoint"
    deadline = time.monotonic() + 240
    while not first_checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    history_file = out / "lomo" / "history.jsonl"
    done_before = len(history_file.read_text().splitlines()) if history_file.exists() else 0
    assert done_before < 3, "the run finished before it could be killed; the test proves nothing"
    assert not (out / "metrics.json").exists()

    refused = tools.run("train", *_args(data_dir, out), timeout=None)
    assert refused.returncode != 0 and "--resume" in (refused.stdout + refused.stderr)

    resumed = tools.run("train", *_args(data_dir, out, "--resume"), timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    history = [json.loads(line) for line in history_file.read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 1, 2]
    if done_before:
        assert "Resumed from" in resumed.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["channels"]["lomo"]["all_gallery"]["rank1"] <= 1.0
    assert (out / "model.keras").exists()


def test_resume_with_other_settings_is_refused(data_dir, tmp_path, tools):
    out = tmp_path / "run"
    out.mkdir()
    started = {"dataset": "synthetic", "model": "siamese_lstm", "hidden_units": 8, "epochs": 3,
               "features": ["lomo"], "seed": 0, "val_ids": 4, "patience": 0, "data_dir": "elsewhere",
               "p": 32, "k": 4}  # as recorded before --p/--k defaulted to the model's own
    (out / "flags.json").write_text(json.dumps(started))
    refused = tools.run("train", *_args(data_dir, out, "--resume", "--epochs=5"), timeout=120)
    message = refused.stdout + refused.stderr
    # hidden_units differs (4 now); epochs and data_dir may change on a resume.
    assert refused.returncode != 0 and "--hidden_units: 8 -> 4" in message
    changed = message.split("(")[1].split(")")[0]
    assert "--epochs" not in changed and "data_dir:" not in message
    # --p / --k left unset on a resume take the recorded values: not a change.
    assert "--p:" not in changed and "--k:" not in changed


@pytest.mark.slow
def test_bad_image_files_are_listed_before_training_or_skipped(data_dir, tmp_path, tools):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    jpegs = sorted(data.rglob("*.jpg"))
    truncated, empty = jpegs[0], jpegs[-1]
    truncated.write_bytes(truncated.read_bytes()[:100])
    empty.write_bytes(b"")
    out = tmp_path / "run"
    refused = tools.run("train", *_args(data, out))
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert str(truncated) in refused.stderr and str(empty) in refused.stderr
    assert "--skip_bad_images" in refused.stderr
    assert not (out / "flags.json").exists()       # nothing started: --out stays reusable

    done = tools.run("train", *_args(data, out, "--skip_bad_images", "--epochs=1"), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    skipped = json.loads((out / "skipped_images.json").read_text())
    assert set(skipped) == {str(truncated), str(empty)}
    assert skipped[str(empty)] == "empty file (0 bytes)"
