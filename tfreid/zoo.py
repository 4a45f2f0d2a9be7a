"""The model zoo: cards, integrity checks and `load(name)`.

A zoo root is a folder with

    cards/<name>.json          the model card (see `FORMAT_VERSION` and docs/SERVING.md)
    models/<name>/model.keras  the model, if committed or built (listed in the card with sha256)
    configs/<name>.cfg         the flagfile of tools/train.py that trains it

Roots, searched in this order: the zoo shipped with tfreid (the repository's `zoo/` in a clone
or editable install, `<prefix>/share/tfreid/zoo` in a regular install), then the local cache
`$TFREID_HOME/zoo` (default ~/.cache/tfreid/zoo) where `tools/publish.py` puts models that
users build themselves. A card without files is a recipe: `load` explains how to build it.

    import tfreid
    model = tfreid.zoo.load("siamese_lstm_cuhk03")
    emb = model.embed(images)               # uint8 [h, w, 3] images, any sizes -> [n, dim]
    idx, dist = model.rank(query_images, gallery_images, top_k=10)
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import sys
from pathlib import Path

from tfreid import paths

FORMAT_VERSION = 1
CARD_KEYS = ("format_version", "name", "paper", "architecture", "training", "input", "files",
             "metrics")


class ZooError(RuntimeError):
    """Base of the zoo's errors."""


class UnknownModelError(ZooError):
    """No card of that name in any zoo root."""


class WeightsNotPresentError(ZooError):
    """The card is a recipe: its model has not been built / published here yet."""


class IntegrityError(ZooError):
    """A model file is missing, truncated or altered (sha256 mismatch)."""


class CardFormatError(ZooError):
    """A card is malformed or of a newer format version than this tfreid reads."""


def package_root() -> Path | None:
    """The zoo shipped with tfreid: the source tree's `zoo/`, else `<prefix>/share/tfreid/zoo`."""
    candidates = [Path(__file__).resolve().parent.parent / "zoo",
                  Path(sys.prefix) / "share" / "tfreid" / "zoo"]
    return next((c for c in candidates if (c / "cards").is_dir()), None)


def cache_root() -> Path:
    """The local zoo cache, `$TFREID_HOME/zoo` (not created here)."""
    return paths.home() / "zoo"


def roots() -> list[Path]:
    """Zoo roots in search order (package zoo, then the local cache)."""
    return [r for r in (package_root(), cache_root()) if r is not None]


def list(with_weights: bool | None = None) -> list[str]:  # noqa: A001  (tfreid.zoo.list())
    """Names of the model cards in every zoo root, sorted.

    Args:
      with_weights: None: every card; True: only models that `load` loads here (a card with
        files, shipped or published into the cache); False: only recipes without weights here
        (`load` explains how to build them).
    """
    names = set()
    for root in roots():
        names.update(p.stem for p in (root / "cards").glob("*.json"))
    if with_weights is None:
        return sorted(names)
    return sorted(n for n in names if has_weights(n) == with_weights)


def has_weights(name: str) -> bool:
    """Whether zoo model `name` has its files here (False: a recipe; see `list`).

    Raises:
      UnknownModelError, CardFormatError.
    """
    return bool(find_card(name)[0]["files"])


def shipped_with_weights(name: str) -> bool:
    """Whether the zoo shipped with tfreid holds model `name` with its files (a card in the local
    cache would never be loaded in its place)."""
    root = package_root()
    path = root / "cards" / f"{name}.json" if root is not None else None
    return path is not None and path.is_file() and bool(read_card(path)["files"])


def sha256_of(path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_card(path) -> dict:
    """Reads and validates a card (format version first, so a newer card loads nothing).

    Raises:
      CardFormatError: unreadable JSON, a newer or missing format_version, missing keys, or a
        file entry without path / sha256.
    """
    path = Path(path)
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CardFormatError(f"model card {path} is not readable JSON: {err}") from err
    version = card.get("format_version") if isinstance(card, dict) else None
    if not isinstance(version, int):
        raise CardFormatError(f"model card {path}: 'format_version' must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise CardFormatError(
            f"model card {path} has format_version {version}, but this tfreid reads cards up to "
            f"version {FORMAT_VERSION}: upgrade tfreid (pip install -U tfreid) to load it.")
    missing = [k for k in CARD_KEYS if k not in card]
    if missing:
        raise CardFormatError(f"model card {path} lacks the keys {missing}")
    if card["name"] != path.stem:
        raise CardFormatError(f"model card {path} names the model {card['name']!r}; the file "
                              f"must be called {card['name']}.json")
    for entry in card["files"]:
        if not isinstance(entry, dict) or not {"path", "sha256"} <= set(entry):
            raise CardFormatError(f"model card {path}: file entry {entry!r} needs 'path' and 'sha256'")
        if Path(entry["path"]).is_absolute() or ".." in Path(entry["path"]).parts:
            raise CardFormatError(f"model card {path}: file path {entry['path']!r} must stay "
                                  "inside the zoo folder")
    return card


def find_card(name: str) -> tuple[dict, Path]:
    """(card, zoo root) of the first root whose card of `name` has files, else of the first card.

    Raises:
      UnknownModelError: listing the known names; CardFormatError.
    """
    found = []
    for root in roots():
        path = root / "cards" / f"{name}.json"
        if path.is_file():
            found.append((read_card(path), root))
    if not found:
        recipes = set(builtins.list(_recipe_names()))
        known = ", ".join(n + (" (recipe without weights)" if n in recipes else "")
                          for n in list()) or "none"
        raise UnknownModelError(f"unknown zoo model {name!r}; known models: {known} "
                                f"(zoo folders searched: {', '.join(str(r) for r in roots())})")
    return next(((c, r) for c, r in found if c["files"]), found[0])


def _recipe_names():
    for n in list():
        try:
            if not has_weights(n):
                yield n
        except ZooError:  # a malformed card is reported when it is loaded, not here
            continue


def verify_files(card: dict, root) -> dict[str, Path]:
    """Checks every file of a card against its size and sha256.

    Returns:
      {relative path: absolute path}.

    Raises:
      IntegrityError: naming the file, what was expected and what was found.
    """
    out = {}
    for entry in card["files"]:
        path = Path(root) / entry["path"]
        if not path.is_file():
            raise IntegrityError(f"zoo model {card['name']!r}: file {path} is missing")
        size = path.stat().st_size
        if "bytes" in entry and size != entry["bytes"]:
            raise IntegrityError(f"zoo model {card['name']!r}: file {path} has {size} bytes, the card "
                                 f"says {entry['bytes']} (truncated or replaced); nothing was loaded")
        digest = sha256_of(path)
        if digest != entry["sha256"]:
            raise IntegrityError(f"zoo model {card['name']!r}: file {path} has sha256 {digest}, the "
                                 f"card says {entry['sha256']} (altered or corrupt); nothing was loaded")
        out[entry["path"]] = path
    return out


def build_instructions(card: dict, root=None) -> str:
    """The commands that build and publish a recipe card's model into the local cache."""
    name = card["name"]
    flagfile = card["training"].get("flagfile", f"configs/{name}.cfg")
    flagpath = Path(root) / flagfile if root is not None else Path("zoo") / flagfile
    dataset = card["training"].get("dataset", "the dataset")
    return (f"  python tools/train.py --flagfile={flagpath} --data_dir=DATA --out=runs/{name}\n"
            f"  python tools/publish.py --run=runs/{name} --name={name} --data_dir=DATA"
            f"{' --flip_average' if card.get('input', {}).get('flip_average') else ''}"
            f"  # writes {cache_root()} ($TFREID_HOME/zoo)\n"
            f"(DATA: the data root holding the {dataset} folder and colornames/; `python` of the "
            ".venv that `make install` creates)")


def load(name: str):
    """Loads a zoo model after checking its files.

    Args:
      name: a name of `list()`.

    Returns:
      `tfreid.serving.EmbeddingModel` with `.embed`, `.distance`, `.rank`, `.keras_model`, `.card`.

    Raises:
      UnknownModelError, WeightsNotPresentError (with the commands that build the model),
      IntegrityError, CardFormatError.
    """
    card, root = find_card(name)
    if not card["files"]:
        why = card.get("availability", "its weights are not distributed with tfreid")
        raise WeightsNotPresentError(
            f"zoo model {name!r} is a recipe without weights here ({why}). Build it with\n"
            f"{build_instructions(card, root)}\nafter which tfreid.zoo.load({name!r}) finds it.")
    return load_card(card, root)


def load_card(card: dict, root):
    """Verifies and loads the model of an already read card (see `load`)."""
    from tfreid.serving import EmbeddingModel, load_keras_model

    files = verify_files(card, root)
    model_file = card.get("model", {}).get("file")
    if model_file not in files:
        raise CardFormatError(f"zoo model {card['name']!r}: its model file {model_file!r} is not "
                              f"among the card's checked files {builtins.list(files)}")
    return EmbeddingModel(load_keras_model(files[model_file]), card,
                          antialias=card["input"].get("antialias", True),
                          flip_average=card["input"].get("flip_average", False))


def from_run(run_dir, flip_average: bool = False) -> "EmbeddingModel":  # noqa: F821
    """An `EmbeddingModel` of a tools/train.py run folder's model.keras (no card checks);
    `flip_average`: see `tfreid.serving`."""
    from tfreid.serving import EmbeddingModel, load_keras_model

    from tfreid.rundir import RunDir

    run_dir = Path(run_dir)
    path = RunDir(run_dir).model
    if not path.is_file():
        raise FileNotFoundError(f"--run={run_dir}: no model.keras there (is the training finished?)")
    return EmbeddingModel(load_keras_model(path), {"name": run_dir.name, "run": str(run_dir)},
                          flip_average=flip_average)


def write_card(card: dict, root) -> Path:
    """Writes cards/<name>.json under a zoo root (atomically)."""
    path = Path(root) / "cards" / f"{card['name']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card, indent=1) + "\n")
    os.replace(tmp, path)
    return path
