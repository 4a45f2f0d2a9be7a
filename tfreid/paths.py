"""Where data, weights and the local zoo cache live.

Nothing in tfreid reads a hard-coded data path: a path comes from a flag/argument, or from the
environment variables `TFREID_DATA` (datasets, Color Names table), `TFREID_WEIGHTS`
(offline backbone weights) and `TFREID_HOME` (local zoo cache, default `~/.cache/tfreid`).
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
