"""Where data, weights and the local zoo cache live.

Nothing in tfreid reads a hard-coded data path: a path comes from a flag/argument, or from the
environment variables `TFREID_DATA` (datasets, Color Names table: `colornames_table` looks
under --data_dir first), `TFREID_WEIGHTS` (offline backbone weights) and `TFREID_HOME` (local
zoo cache, default `~/.cache/tfreid`).
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "TFREID_DATA"
WEIGHTS_ENV = "TFREID_WEIGHTS"
HOME_ENV = "TFREID_HOME"


def data_root(explicit: str | os.PathLike | None = None, *, required: bool = True) -> Path | None:
    """Returns the data root: `explicit` if given, else `$TFREID_DATA`.

    Args:
      explicit: a path given by the user (flag or argument); wins over the environment.
      required: if True, a missing setting or a missing folder raises; else returns None.

    Raises:
      FileNotFoundError: naming the flag/variable and the path that does not exist.
    """
    return _resolve(explicit, DATA_ENV, "data root", required)


def weights_root(explicit: str | os.PathLike | None = None, *, required: bool = True) -> Path | None:
    """Returns the folder of offline backbone weights: `explicit`, else `$TFREID_WEIGHTS`."""
    return _resolve(explicit, WEIGHTS_ENV, "weights folder", required)


def colornames_table(explicit: str | os.PathLike | None = None,
                     data_dir: str | os.PathLike | None = None) -> Path:
    """Where the Colour Names table (`w2c.npy` / `w2c.mat`) is: `explicit` (a file, or a folder
    holding one) if given, else the first of `<data_dir>/colornames/` and
    `$TFREID_DATA/colornames/` that holds one, so that --data_dir alone locates a run's data.

    Raises:
      FileNotFoundError: naming every place looked at and the files expected there.
    """
    names = ("w2c.npy", "w2c.mat")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"Colour Names table {str(path)!r} does not exist (expected "
                                    f"a .npy / .mat file, or a folder holding {' or '.join(names)}).")
        return path
    tried = []
    for root, source in ((data_dir, "--data_dir"), (os.environ.get(DATA_ENV), f"${DATA_ENV}")):
        if root:
            folder = Path(root).expanduser() / "colornames"
            tried.append(f"{str(folder)!r} (from {source})")
            if any((folder / n).is_file() for n in names):
                return folder
    if not tried:
        raise FileNotFoundError(
            "No Colour Names table: give its file (--colornames), or a data root holding "
            f"colornames/{names[0]} (--data_dir, or the {DATA_ENV} environment variable).")
    raise FileNotFoundError(f"No Colour Names table ({' or '.join(names)}) in "
                            f"{' nor '.join(tried)}; give its file with --colornames.")


def home() -> Path:
    """Returns the local zoo cache, `$TFREID_HOME` or `~/.cache/tfreid` (not created here)."""
    value = os.environ.get(HOME_ENV)
    return Path(value).expanduser() if value else Path.home() / ".cache" / "tfreid"


def _resolve(explicit, env_name: str, what: str, required: bool) -> Path | None:
    if explicit:
        path, source = Path(explicit).expanduser(), "the given path"
    elif os.environ.get(env_name):
        path, source = Path(os.environ[env_name]).expanduser(), f"${env_name}"
    else:
        if required:
            raise FileNotFoundError(
                f"No {what} given: pass a path (e.g. --data_dir) or set the {env_name} "
                "environment variable.")
        return None
    if not path.is_dir():
        if required:
            raise FileNotFoundError(f"The {what} {str(path)!r} (from {source}) is not a directory.")
        return None
    return path
