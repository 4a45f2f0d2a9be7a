"""Packaging: what setuptools would install holds every zoo file, and the version is tfreid's."""

import json
from pathlib import Path

import pytest
from setuptools._distutils.core import run_setup

import tfreid

REPO = Path(__file__).resolve().parent.parent
ZOO = REPO / "zoo"


@pytest.fixture(scope="module")
def distribution():
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO)  # setup.py lists the zoo relative to its own folder
        return run_setup("setup.py", stop_after="config")


def _installed(distribution) -> set[str]:
    """Zoo-relative paths of the data files, as they would land under <prefix>/share/tfreid/zoo."""
    installed = set()
    for folder, files in distribution.data_files:
        for source in files:
            target = Path(folder) / Path(source).name
            assert target.parts[:3] == ("share", "tfreid", "zoo"), target
            assert (REPO / source).is_file(), source
            installed.add(target.relative_to("share/tfreid/zoo").as_posix())
    return installed


def test_every_zoo_model_card_and_config_is_installed(distribution):
    installed = _installed(distribution)
    wanted = {p.relative_to(ZOO).as_posix()
              for pattern in ("models/*/model.keras", "cards/*.json", "configs/*.cfg")
              for p in ZOO.glob(pattern)}
    for card in ZOO.glob("cards/*.json"):  # and whatever a card names
        card = json.loads(card.read_text())
        wanted |= {entry["path"] for entry in card["files"]} | {card["training"]["flagfile"]}
    assert any(name.startswith("models/") for name in wanted)
    assert wanted <= installed, sorted(wanted - installed)


def test_version_comes_from_the_package(distribution):
    assert distribution.get_version() == tfreid.__version__
