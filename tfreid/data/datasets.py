"""The dataset registry: `build(name, root, **kwargs) -> ReIDSplit`.

Each entry is a function that parses one folder layout into train / query / gallery records
(see the module of each dataset for its layout, id and camera conventions):

=============  ===============================  ============================================
name           function                         keyword arguments
=============  ===============================  ============================================
market1501     `market.market1501`              -
dukemtmc       `market.dukemtmc`                -
cuhk03         `cuhk03.cuhk03`                  images, split_index, cache_dir
cuhk03_pair1   `cuhk03.cuhk03_pair1`            num_val_ids, seed, evaluate_on
cuhk01         `smallsets.cuhk01`               num_train_ids, split_index, num_splits, seed,
                                                direction
viper          `smallsets.viper`                same as cuhk01
folder         `market.folder_dataset`          pattern, train_dir, query_dir, gallery_dir,
                                                camid_base, name
synthetic      `synthetic.load`                 generate's arguments (generates if needed)
=============  ===============================  ============================================

Modules are imported on first use, so `import tfreid.data.datasets` stays cheap.
"""

from __future__ import annotations

import importlib
import inspect
import os
from typing import Callable

from tfreid.data.records import ReIDSplit

# name -> (module under tfreid.data, function name)
_BUILTIN = {
    "market1501": ("market", "market1501"),
    "dukemtmc": ("market", "dukemtmc"),
    "cuhk03": ("cuhk03", "cuhk03"),
    "cuhk03_pair1": ("cuhk03", "cuhk03_pair1"),
    "cuhk01": ("smallsets", "cuhk01"),
    "viper": ("smallsets", "viper"),
    "folder": ("market", "folder_dataset"),
    "synthetic": ("synthetic", "load"),
}
_CUSTOM: dict[str, Callable[..., ReIDSplit]] = {}


def names() -> list[str]:
    """Registered dataset names, sorted."""
    return sorted(set(_BUILTIN) | set(_CUSTOM))


def register(name: str, loader: Callable[..., ReIDSplit], overwrite: bool = False) -> None:
    """Adds `loader(root, **kwargs) -> ReIDSplit` under `name`.

    Raises:
      ValueError: `name` is taken and `overwrite` is False.
    """
    if not overwrite and name in names():
        raise ValueError(f"Dataset {name!r} is already registered; "
                         "pass overwrite=True to replace it.")
    _CUSTOM[name] = loader


def get(name: str) -> Callable[..., ReIDSplit]:
    """The loader function registered under `name`.

    Raises:
      KeyError: unknown name (the message lists the known ones).
    """
    if name in _CUSTOM:
        return _CUSTOM[name]
    if name not in _BUILTIN:
        raise KeyError(f"Unknown dataset {name!r}; known datasets: {', '.join(names())}.")
    module, func = _BUILTIN[name]
    return getattr(importlib.import_module(f"tfreid.data.{module}"), func)


def build(name: str, root: str | os.PathLike | None = None, **kwargs) -> ReIDSplit:
    """Loads dataset `name` from `root` (None: `$TFREID_DATA`) with loader options `kwargs`.

    Returns:
      ReIDSplit with train / query / gallery tuples of ImageRecord(path, pid, camid).

    Raises:
      KeyError: unknown dataset. TypeError: an option the loader does not take.
      FileNotFoundError / ValueError: from the loader (missing folder, unparsable name,
      empty split).
    """
    loader = get(name)
    try:
        inspect.signature(loader).bind(root, **kwargs)
    except TypeError as err:
        raise TypeError(f"Dataset {name!r}: {err}") from None
    return loader(root, **kwargs)
