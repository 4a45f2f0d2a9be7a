"""Fixtures the test folders share, and the `data` marker's skip.

Markers (registered in setup.cfg):
  slow: takes over ~20 s on 2 CPU cores: real processes (tools, workers), training, whole zoo
    models exported or evaluated.
  data: reads the real datasets under $TFREID_DATA. Arguments name the sub-folders the test needs,
    e.g. `@pytest.mark.data("cuhk03_pair1/detected")`. Without TFREID_DATA, or without one of those
    sub-folders, the test is skipped with one message. A test that asks for the `data_root` fixture
    is marked `data` here, so the marker cannot be forgotten.

`python -m pytest -m "not slow and not data"` is the quick subset that needs no data.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_ENV = "TFREID_DATA"
WEIGHTS_ENV = "TFREID_WEIGHTS"
NO_DATA = f"needs the real datasets: set {DATA_ENV} to the data folder (README.md, section Data)"


def _data_root() -> Path | None:
    root = os.environ.get(DATA_ENV)
    return Path(root) if root and Path(root).is_dir() else None


def pytest_collection_modifyitems(config, items):
    root = _data_root()
    for item in items:
        if item.get_closest_marker("data") is None:
            if "data_root" not in getattr(item, "fixturenames", ()):
                continue
            item.add_marker(pytest.mark.data)
        needs = [sub for mark in item.iter_markers("data") for sub in mark.args]
        if root is None:
            item.add_marker(pytest.mark.skip(reason=NO_DATA))
        elif missing := [sub for sub in needs if not (root / sub).exists()]:
            item.add_marker(pytest.mark.skip(reason=f"{DATA_ENV}={root} has no {', '.join(missing)}"))


@pytest.fixture(scope="session")
def data_root() -> Path:
    """$TFREID_DATA as a Path (tests using it are marked `data` and skipped without it)."""
    root = _data_root()
    if root is None:
        pytest.skip(NO_DATA)
    return root


@pytest.fixture(scope="session")
def mobilenetv2_weights() -> str:
    """The ImageNet MobileNetV2 PyTorch file in $TFREID_WEIGHTS, or a skip."""
    from tfreid.models.convert_mobilenetv2 import WEIGHTS_FILENAME

    path = Path(os.environ.get(WEIGHTS_ENV) or "/nonexistent") / WEIGHTS_FILENAME
    if not path.is_file():
        pytest.skip(f"needs the real weights: set {WEIGHTS_ENV} to a folder holding {WEIGHTS_FILENAME}")
    return str(path)


# ----------------------------------------------------------------------------- models and runs


@pytest.fixture(scope="session")
def tiny_cnn():
    """Factory of a small seeded CNN embedding model (an untrained MobileNetV2 outputs ~1e-11
    vectors): tiny_cnn(size=(64, 32), dim=16, filters=8), images [B, H, W, 3] in 0-255 ->
    [B, dim], named layers "images" -> ... -> "embedding"."""
    def make(size=(64, 32), dim=16, filters=8):
        import keras

        keras.utils.set_random_seed(0)
        x = keras.Input((*size, 3), name="images")
        y = keras.layers.Rescaling(1 / 127.5, -1)(x)
        y = keras.layers.Conv2D(filters, 3, strides=2, activation="relu")(y)
        y = keras.layers.GlobalAveragePooling2D()(y)
        return keras.Model(x, keras.layers.Dense(dim, name="embedding")(y), name="tiny_cnn")

    return make


@pytest.fixture(scope="session")
def make_run(tiny_cnn):
    """Factory of a finished training run folder (model.keras, flags.json, metrics.json) of a
    32x16 -> 8 tiny CNN, as tools/publish.py takes it: make_run(folder, dataset="synthetic")."""
    import json

    def make(folder: Path, dataset: str = "synthetic") -> Path:
        folder.mkdir(parents=True)
        tiny_cnn((32, 16), dim=8, filters=4).save(folder / "model.keras")
        (folder / "flags.json").write_text(json.dumps({"dataset": dataset, "model": "cnn", "seed": 0,
                                                       "height": 32, "width": 16, "loss": "triplet"}))
        (folder / "metrics.json").write_text(json.dumps({"test": {"all_gallery": {"rank1": 0.5,
                                                                                  "mAP": 0.25}}}))
        return folder

    return make


# ----------------------------------------------------------------------------- synthetic data


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """Factory: synthetic_data(**kwargs) -> the folder of `tfreid.data.synthetic.generate(folder,
    **kwargs)`, written once per session for each distinct set of arguments (defaults filled in)
    and shared by the tests that ask for it: read it (`synthetic.load(folder)`, `--data_dir`),
    copy it before changing a file."""
    from tfreid.data import synthetic

    signature = inspect.signature(synthetic.generate)
    folders: dict[tuple, Path] = {}

    def make(**kwargs) -> Path:
        bound = signature.bind(None, **kwargs)
        bound.apply_defaults()
        key = tuple((k, tuple(v) if isinstance(v, list) else v)
                    for k, v in bound.arguments.items() if k != "out_dir")
        if key not in folders:
            folders[key] = synthetic.generate(tmp_path_factory.mktemp("synthetic"), **kwargs)
        return folders[key]

    return make


# ----------------------------------------------------------------------------- subprocesses


class Tools:
    """Runs this checkout's tools/<name>.py in a subprocess that imports the same tfreid as the
    tests (its folder first on PYTHONPATH, not an installed or editable copy elsewhere)."""

    root = REPO

    def env(self, *, drop=(), quiet=True, **values) -> dict:
        """os.environ less `drop`, TF's C++ log quiet unless quiet=False, `values` set."""
        import tfreid

        env = {k: v for k, v in os.environ.items() if k not in drop}
        source = str(Path(tfreid.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join([source] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH")
                                                        else []))
        if quiet:
            env["TF_CPP_MIN_LOG_LEVEL"] = "2"
        env.update(values)
        return env

    def command(self, name: str, *args) -> list[str]:
        return [sys.executable, str(REPO / "tools" / f"{name}.py"), *map(str, args)]

    def run(self, name: str, *args, env: dict | None = None, timeout: float = 300, **kwargs):
        """subprocess.run of the tool, output captured as text."""
        return subprocess.run(self.command(name, *args), env=self.env() if env is None else env,
                              capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture(scope="session")
def tools() -> Tools:
    return Tools()
