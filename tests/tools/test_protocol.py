"""tools/protocol.py: a whole random-split protocol in one command, resumable, mean ± std."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _viper(root: Path, persons=12):
    rng = np.random.default_rng(0)
    for pid in range(persons):
        colour = rng.integers(30, 225, 3)
        for cam in ("cam_a", "cam_b"):
            image = np.clip(colour + rng.normal(0, 20, (128, 48, 3)), 0, 255).astype(np.uint8)
            (root / cam).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / cam / f"{pid:03d}_{45 if cam == 'cam_a' else 90}.bmp")
    return root


@pytest.mark.slow
def test_two_split_protocol_runs_resumes_and_summarises(tmp_path, tools):
    data = _viper(tmp_path / "viper")
    out = tmp_path / "protocol"
    args = ["--dataset=viper", "--num_splits=2", f"--out={out}", "--", f"--data_dir={data}", "--model=mlp",
            "--features=lomo", "--mlp_units=8", "--val_ids=2", "--epochs=1", "--patience=0",
            "--viper_direction=b2a", "--batch_size=8"]
    done = tools.run("protocol", *args, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_splits"] == 2 and summary["splits"] == [0, 1]
    rank1 = summary["mean_std"]["channels"]["lomo"]["all_gallery"]["rank1"]
    assert len(rank1["values"]) == 2 and abs(rank1["mean"] - np.mean(rank1["values"])) < 1e-9
    assert "rank1" in done.stdout and "±" in done.stdout
    for k in (0, 1):
        flags = json.loads((out / f"split_{k}" / "flags.json").read_text())
        assert flags["viper_split_index"] == k and flags["viper_direction"] == "b2a"
    # Finished splits are kept: the same command again trains nothing.
    again = tools.run("protocol", *args)
    assert again.returncode == 0 and "trained in" not in again.stdout
