"""tools/train.py --strategy=multi_worker with two real worker processes on localhost (TF_CONFIG,
loopback ports): a worker killed mid-run is restarted with the other, both resume from their
checkpoints in step, and the run ends with equal weights on both workers."""

import json
import signal
import socket
import subprocess
import time

import numpy as np
import pytest

EPOCHS = 4


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _start(tools, index, ports, data_dir, out, log, *extra):
    cluster = {"cluster": {"worker": [f"localhost:{p}" for p in ports]},
               "task": {"type": "worker", "index": index}}
    env = tools.env(TF_CONFIG=json.dumps(cluster), CUDA_VISIBLE_DEVICES="")
    command = tools.command("train", "--dataset=synthetic", f"--data_dir={data_dir}", f"--out={out}",
                            "--model=cnn", "--weights=none", "--height=64", "--width=32",
                            "--embedding_dim=16", "--p=4", "--k=2", f"--epochs={EPOCHS}",
                            "--steps_per_epoch=2", "--val_ids=4", "--patience=0",
                            "--strategy=multi_worker", *extra)
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def _epochs(out):
    history = out / "history.jsonl"
    return [json.loads(line)["epoch"] for line in history.read_text().splitlines()] \
        if history.exists() else []


@pytest.mark.slow
def test_killed_worker_resumes_in_step_and_workers_end_with_equal_weights(tmp_path, synthetic_data,
                                                                           tools):
    import keras

    import tfreid.models  # noqa: F401  (registers the layers of the saved models)

    data_dir = synthetic_data(num_train_ids=16, num_test_ids=8, num_cameras=2, images_per_camera=3)
    outs = [tmp_path / f"worker{i}" for i in range(2)]
    logs = [open(tmp_path / f"worker{i}.log", "w") for i in range(2)]
    ports = _free_ports(2)
    procs = [_start(tools, i, ports, data_dir, outs[i], logs[i]) for i in range(2)]
    try:
        deadline = time.monotonic() + 600  # a loaded 2-core machine
        # Killed after its second epoch, so that both workers hold a checkpoint to resume from.
        while len(_epochs(outs[1])) < 2 and procs[1].poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        procs[1].send_signal(signal.SIGKILL)
        procs[1].wait()
        try:  # the survivor fails in its next collective (TensorFlow's peer health check)
            procs[0].wait(timeout=15)
        except subprocess.TimeoutExpired:
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    before = [_epochs(out) for out in outs]
    assert before[0] and before[1] and len(before[1]) < EPOCHS, \
        f"workers' finished epochs when worker 1 was killed: {before}"
    assert not any((out / "metrics.json").exists() for out in outs)

    ports = _free_ports(2)
    procs = [_start(tools, i, ports, data_dir, outs[i], logs[i], "--resume") for i in range(2)]
    try:
        codes = [p.wait(timeout=420) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for log in logs:
        log.close()
    texts = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], "\n".join(t[-2000:] for t in texts)
    for text in texts:  # only a start with a checkpoint to continue says this
        assert "Resumed from" in text
    for out in outs:
        assert _epochs(out) == list(range(EPOCHS))
    models = [keras.models.load_model(out / "model.keras", compile=False) for out in outs]
    diffs = [float(np.abs(np.asarray(a) - np.asarray(b)).max())
             for a, b in zip(models[0].weights, models[1].weights)]
    assert max(diffs) <= 1e-6, max(diffs)
    # Both workers report the same test metrics (one model).
    metrics = [{k: v for k, v in json.loads((out / "metrics.json").read_text()).items()
                if "seconds" not in k} for out in outs]
    assert metrics[0] == metrics[1]
