"""Packaging: the metadata is in setup.cfg; the zoo's files are listed here from the zoo folder,
so that a model published into zoo/ is installed (under <prefix>/share/tfreid/zoo, where
`tfreid.zoo` looks) without an edit of the packaging."""

from pathlib import Path

from setuptools import setup


def zoo_data_files(root: str = "zoo") -> list[tuple[str, list[str]]]:
    """[(install folder relative to the prefix, [files relative to this folder])], one entry per
    folder of `root` (cards, configs, models/<name>); hidden files are left out."""
    folders: dict[str, list[str]] = {}
    for path in sorted(Path(root).rglob("*")):
        if path.is_file() and not any(part.startswith(".") for part in path.parts):
            folders.setdefault(f"share/tfreid/{path.parent.as_posix()}", []).append(path.as_posix())
    return sorted(folders.items())


setup(data_files=zoo_data_files())
