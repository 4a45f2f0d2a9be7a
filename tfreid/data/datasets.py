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
cuhk01         `two_camera.cuhk01`              num_train_ids, split_index, num_splits, seed,
                                                direction
viper          `two_camera.viper`               same as cuhk01
folder         `folder.folder_dataset`          pattern, train_dir, query_dir, gallery_dir,
                                                camid_base, name
synthetic      `synthetic.load`                 generate's arguments (generates if needed)
=============  ===============================  ============================================

Modules are imported on first use, so `import tfreid.data.datasets` stays cheap.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import re
from typing import Callable

from tfreid.data.records import ReIDSplit

# name -> (module under tfreid.data, function name)
_BUILTIN = {
    "market1501": ("market", "market1501"),
    "dukemtmc": ("market", "dukemtmc"),
    "cuhk03": ("cuhk03", "cuhk03"),
    "cuhk03_pair1": ("cuhk03", "cuhk03_pair1"),
    "cuhk01": ("two_camera", "cuhk01"),
    "viper": ("two_camera", "viper"),
    "folder": ("folder", "folder_dataset"),
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


def build(name: str, root: str | os.PathLike | None = None, *, check_images: bool = True,
          skip_bad_images: bool = False, **kwargs) -> ReIDSplit:
    """Loads dataset `name` from `root` (None: `$TFREID_DATA`) with loader options `kwargs`.

    Args:
      check_images: decode every file once now (see `check_split_images`), so that a bad file
        stops the run before any training rather than hours into it.
      skip_bad_images: leave unreadable files out (listed in the split's `skipped`) instead of
        refusing the dataset.

    Returns:
      ReIDSplit with train / query / gallery tuples of ImageRecord(path, pid, camid).

    Raises:
      KeyError: unknown dataset. TypeError: an option the loader does not take.
      FileNotFoundError / ValueError: from the loader (missing folder, unparsable name,
      empty split). tfreid.images.BadImagesError: unreadable files, all listed by path.
    """
    loader = get(name)
    try:
        inspect.signature(loader).bind(root, **kwargs)
    except TypeError as err:
        raise TypeError(f"Dataset {name!r}: {err}") from None
    split = loader(root, **kwargs)
    if check_images and isinstance(split, ReIDSplit):   # (a custom loader may return more)
        split = check_split_images(split, skip_bad_images)
    return split


def check_split_images(split: ReIDSplit, skip_bad_images: bool = False,
                       log: Callable[[str], None] | None = None) -> ReIDSplit:
    """Decodes every image of a split once (as `tfreid.images.read_image` will in training).

    Args:
      split: a loaded split.
      skip_bad_images: drop the unreadable records and list them in `skipped`, instead of raising.
      log: where progress lines go (default: stderr).

    Returns:
      the split, unchanged when every file reads; else, with `skip_bad_images`, without the
      unreadable records and with `skipped` = ((path, reason), ...).

    Raises:
      tfreid.images.BadImagesError: some files are unreadable (every one listed with its reason)
        and skip_bad_images is False.
    """
    import dataclasses
    import sys
    import time

    from tfreid import images

    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    paths = sorted({r.path for part in (split.train, split.query, split.gallery) for r in part})
    start, last = time.monotonic(), [time.monotonic()]

    def progress(done):
        now = time.monotonic()
        if now - last[0] >= 10 and done < len(paths):   # a line every 10 s on large datasets
            eta = (now - start) / done * (len(paths) - done)
            log(f"checking images of {split.name}: {done}/{len(paths)}, ETA {eta:.0f} s")
            last[0] = now

    bad = images.find_unreadable(paths, progress)
    if not bad:
        return split
    if not skip_bad_images:
        raise images.BadImagesError(bad, len(paths), f"dataset {split.name!r}")
    reasons = {b.path: b.reason for b in bad}
    log(f"skipping {len(bad)} unreadable images of {split.name} (--skip_bad_images): "
        + ", ".join(sorted(reasons)[:5]) + (" ..." if len(bad) > 5 else ""))
    parts = {part: tuple(r for r in getattr(split, part) if r.path not in reasons)
             for part in ("train", "query", "gallery")}
    return dataclasses.replace(split, **parts,
                               skipped=split.skipped + tuple(sorted(reasons.items())))


# ----------------------------------------------------------------------------- loader options
#
# The one declaration of the options a user can give a loader from the command line: every
# keyword argument of a built-in loader (after `root`, which is --data_dir), read from its
# signature and docstring. Tools turn them into flags named `<dataset>_<argument>` (e.g.
# --folder_pattern, --viper_split_index), see `tfreid.cli`. A dataset name prefixes its own
# options, so two loaders' `seed` or `split_index` never share a flag.

# Loaders that take **kwargs and pass them on: the function whose signature lists them.
_OPTIONS_OF = {"synthetic": ("synthetic", "generate")}
# Arguments that are not options of a run (`name` of the generic folder loader only renames it).
_NOT_OPTIONS = {"synthetic": ("out_dir",)}


@dataclasses.dataclass(frozen=True)
class LoaderOption:
    """One keyword argument of a dataset loader, as a command-line option.

    Attributes:
      dataset: the dataset name.
      argument: the loader's keyword.
      kind: "int", "float", "bool", "str" or "ints" (a comma-separated list of ints).
      default: the loader's default (None: not given to the loader unless set).
      optional: the loader takes None (for "str": an empty value gives None).
      required: the loader has no default.
      help: the loader's docstring text for the argument.
    """

    dataset: str
    argument: str
    kind: str
    default: object
    optional: bool
    required: bool
    help: str

    @property
    def flag(self) -> str:
        return f"{self.dataset}_{self.argument}"


def _kind(annotation, default) -> tuple[str, bool]:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    parts = [p.strip() for p in text.split("|")] if text else []
    optional = "None" in parts or default is None
    base = next((p for p in parts if p != "None"), "")
    if not base and default is not None:
        base = type(default).__name__
    if base.startswith("tuple[int") or base.startswith("Sequence[int"):
        return "ints", optional
    if base in ("int", "float", "bool"):
        return base, optional
    return "str", optional


def _arg_help(doc: str) -> dict[str, str]:
    """Google-style `Args:` entries of a docstring: {argument: text} ("a, b: text" -> both)."""
    out, current, indent, in_args = {}, [], None, False
    for line in (doc or "").splitlines():
        stripped = line.strip()
        if stripped == "Args:":
            in_args = True
            continue
        if not in_args or not stripped:
            continue
        depth = len(line) - len(line.lstrip())
        indent = depth if indent is None else indent
        if depth < indent:  # the next section (Returns:, Raises:)
            break
        match = re.match(r"([\w, ]+):\s*(.*)", stripped)
        if depth == indent and match:
            current = [n.strip() for n in match.group(1).split(",")]
            out.update({n: match.group(2) for n in current})
        else:
            out.update({n: out[n] + " " + stripped for n in current})
    return out


def options(name: str) -> list[LoaderOption]:
    """The command-line options of dataset `name` (its loader's keyword arguments after root).

    Raises:
      KeyError: unknown dataset.
    """
    loader = get(name)
    if name in _OPTIONS_OF:
        module, func = _OPTIONS_OF[name]
        loader = getattr(importlib.import_module(f"tfreid.data.{module}"), func)
    params = list(inspect.signature(loader).parameters.values())[1:]  # [0] is the root
    helps = _arg_help(inspect.getdoc(loader))
    out = []
    for p in params:
        if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) or \
                p.name in _NOT_OPTIONS.get(name, ()):
            continue
        required = p.default is p.empty
        default = None if required else p.default
        kind, optional = _kind(p.annotation, default)
        out.append(LoaderOption(name, p.name, kind, default, optional, required,
                                " ".join(helps.get(p.name, "").split())
                                or f"Argument {p.name!r} of the {name} loader."))
    return out


def loader_name(name: str) -> tuple[str, str]:
    """(module, function) of the loader whose signature lists dataset `name`'s options."""
    if name in _OPTIONS_OF:
        module, func = _OPTIONS_OF[name]
        return f"tfreid.data.{module}", func
    if name in _BUILTIN and name not in _CUSTOM:
        module, func = _BUILTIN[name]
        return f"tfreid.data.{module}", func
    loader = get(name)
    return loader.__module__, getattr(loader, "__name__", repr(loader))


def all_options() -> list[LoaderOption]:
    """The options of every registered dataset (see `options`)."""
    return [o for n in names() for o in options(n)]


def recorded_options(name: str, values: dict) -> dict:
    """The loader options of dataset `name` among recorded flag values (a run's flags.json):
    {argument: value} for each option whose flag holds a value other than its default."""
    out = {}
    for option in options(name):
        if option.flag in values and values[option.flag] != option.default:
            value = values[option.flag]
            out[option.argument] = tuple(value) if option.kind == "ints" else value
    return out
