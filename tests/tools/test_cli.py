"""The tools from the command line (tfreid.cli): a user's own folder dataset through train,
evaluate and extract_features; every flag checked before the run folder is written; user errors
as one line without a traceback."""

import json
import subprocess

import numpy as np
import pytest
from absl import flags

from tfreid import cli
from tfreid.errors import UserError

PATTERN = r"(?P<pid>\d+)_c(?P<camid>\d)_\d+\.(?:png|jpg)"


@pytest.fixture
def user_env(tools):
    """The environment as a user has it: no --verbose from the environment, TF's log as it is."""
    return tools.env(drop=(cli.VERBOSE_ENV,), quiet=False)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A user's own dataset: train/query/gallery of tiny PNG and JPEG files, cameras c1/c2."""
    import cv2

    root = tmp_path_factory.mktemp("my_data")
    rng = np.random.default_rng(0)
    for split, pids in (("train", range(1, 9)), ("query", range(20, 24)), ("gallery", range(20, 24))):
        (root / split).mkdir()
        for pid in pids:
            colour = rng.integers(0, 256, 3)
            for cam in ((1,) if split == "query" else (2,) if split == "gallery" else (1, 2)):
                for k in range(2):
                    image = np.clip(colour + rng.normal(0, 20, (40, 16, 3)), 0, 255).astype(np.uint8)
                    suffix = "png" if k == 0 else "jpg"
                    cv2.imwrite(str(root / split / f"{pid:04d}_c{cam}_{k}.{suffix}"), image)
    return root


@pytest.mark.slow
def test_own_folder_trains_evaluates_and_extracts(folder, tmp_path, tools, user_env):
    dataset = ["--dataset=folder", f"--data_dir={folder}", f"--folder_pattern={PATTERN}",
               "--folder_camid_base=1"]
    out = tmp_path / "run"
    # A failed start (here: an unreadable feature cache, found only once the run has begun)
    # leaves --out without flags.json, so the same command works once the cause is gone.
    (out / "features").mkdir(parents=True)
    (out / "features" / "lomo.npz").write_bytes(b"not a zip file")
    train = ["train", *dataset, f"--out={out}", "--model=siamese_lstm", "--features=lomo",
             "--hidden_units=4", "--val_ids=2", "--epochs=1", "--patience=0", "--batch_size=20"]
    failed = tools.run(*train, env=user_env)
    assert failed.returncode != 0 and not (out / "flags.json").exists(), failed.stderr[-2000:]
    (out / "features" / "lomo.npz").unlink()

    trained = tools.run(*train, env=user_env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    recorded = json.loads((out / "flags.json").read_text())
    assert recorded["folder_pattern"] == PATTERN and recorded["folder_camid_base"] == 1
    assert "Traceback" not in trained.stderr and "\x1b[" not in trained.stdout
    assert "retracing" not in trained.stderr and "Sharding callback" not in trained.stderr
    assert trained.stderr.count("absl::InitializeLog") <= 1  # one TF start-up banner at most

    # The run's own dataset, options and folder come from its flags.json.
    evaluated = tools.run("evaluate", f"--run={out}", f"--out_json={tmp_path / 'eval.json'}",
                          "--single_shot_draws=2", env=user_env)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["num_query"] == 8 and result["num_gallery"] == 8

    features = tmp_path / "features.npz"
    extracted = tools.run("extract_features", *dataset, "--features=lomo", f"--out={features}",
                          env=user_env)
    assert extracted.returncode == 0, extracted.stderr[-3000:]
    with np.load(features, allow_pickle=False) as z:
        assert len(z["train_paths"]) == 32 and len(z["query_lomo"]) == 8


BAD_INPUTS = [  # (tool and arguments, what the one error line says)
    (["train", "--out={tmp}/a", "--epochs=abc"], "Error: flag --epochs=abc: invalid literal"),
    (["train", "--out={tmp}/b", "--dataset=nope"], "Error: Unknown dataset 'nope'; known datasets:"),
    (["train", "--out={tmp}/c", "--dataset=market1501", "--data_dir={tmp}/missing",
      "--features=lomo"],
     "is not a directory"),
    (["train", "--out={tmp}/d", "--resume"], "holds no run to continue"),
    (["train", "--out={tmp}/e", "--dataset=synthetic", "--viper_split_index=3"],
     "Error: --viper_split_index is an option of --dataset=viper, not of --dataset=synthetic"),
    (["train", "--out={tmp}/f", "--dataset=folder", "--data_dir={tmp}"],
     "Error: --dataset=folder needs --folder_pattern"),
    (["train", "--out={tmp}/g", "--features=lomo,cnn"], "Error: --features=lomo,cnn: expected"),
    (["evaluate", "--zoo=no_such_model"], "Error: unknown zoo model 'no_such_model'"),
    (["extract_features", "--out={tmp}/x.npz", "--flagfile={tmp}/missing.cfg"], "Error: "),
]


@pytest.mark.slow
def test_user_errors_are_one_line_without_traceback(tmp_path, tools, user_env):
    procs = []
    for args, _ in BAD_INPUTS:
        args = [a.format(tmp=tmp_path) for a in args]
        procs.append(subprocess.Popen(tools.command(*args), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, env=user_env))
    for proc, (args, expected) in zip(procs, BAD_INPUTS):
        _, stderr = proc.communicate(timeout=300)
        last = stderr.strip().splitlines()[-1]
        assert proc.returncode == 2, (args, stderr[-2000:])
        assert "Traceback" not in stderr and last.startswith("Error: ") and expected in last, \
            (args, stderr[-2000:])
    for name in "abcdefg":  # nothing was written for a refused start
        assert not (tmp_path / name / "flags.json").exists()


def test_verbose_shows_the_traceback(tmp_path, tools, user_env):
    proc = tools.run("train", f"--out={tmp_path / 'a'}", "--dataset=nope", "--verbose", env=user_env)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "Unknown dataset" in proc.stderr


def test_dataset_flags_are_typed_and_refused_for_another_dataset():
    values = flags.FlagValues()
    cli.define_dataset_flags(values)
    values(["prog", "--folder_pattern=(?P<pid>\\d+)_(?P<camid>\\d)", "--folder_train_dir="])
    assert cli.dataset_kwargs("folder", flag_values=values) == {
        "pattern": "(?P<pid>\\d+)_(?P<camid>\\d)", "train_dir": None}
    assert values["viper_split_index"].value == 0 and values["viper_direction"].value == "a2b"
    with pytest.raises(UserError, match="--folder_pattern is an option of --dataset=folder"):
        cli.dataset_kwargs("viper", flag_values=values)
    with pytest.raises(flags.IllegalFlagValueError):
        values(["prog", "--viper_split_index=one"])

    values = flags.FlagValues()
    cli.define_dataset_flags(values)
    values(["prog", "--synthetic_size=64,32"])
    assert cli.dataset_kwargs("synthetic", flag_values=values) == {"size": (64, 32)}
    with pytest.raises(UserError, match="--dataset=folder needs --folder_pattern"):
        cli.dataset_kwargs("folder", flag_values=flags.FlagValues())  # flags not defined: none given
    # Options a run recorded are the defaults of its dataset; given flags win.
    values = flags.FlagValues()
    cli.define_dataset_flags(values)
    values(["prog", "--viper_direction=b2a"])
    assert cli.dataset_kwargs("viper", {"viper_split_index": 4, "viper_direction": "a2b"},
                              flag_values=values) == {"split_index": 4, "direction": "b2a"}


def test_user_errors_are_told_from_bugs():
    def raise_in_tfreid():
        from tfreid.data import datasets
        datasets.get("nope")

    with pytest.raises(KeyError) as err:
        raise_in_tfreid()
    assert cli.is_user_error(err.value)
    assert cli.error_message(err.value).startswith("Unknown dataset 'nope'")
    with pytest.raises(KeyError) as err:
        {}["key"]
    assert not cli.is_user_error(err.value)  # a lookup that failed: a bug, with its traceback
    with pytest.raises(ValueError) as err:
        np.zeros(3).reshape(2, 2)
    assert not cli.is_user_error(err.value)  # raised inside NumPy
    assert cli.is_user_error(UserError("--x=1: expected 2"))
