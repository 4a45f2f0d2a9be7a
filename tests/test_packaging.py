"""Packaging: what setuptools would install holds every zoo file, and the version is tfreid's."""

import json
import runpy
from pathlib import Path

import pytest
import setuptools
from setuptools.config.setupcfg import read_configuration

import tfreid

REPO = Path(__file__).resolve().parent.parent
ZOO = REPO / "zoo"


@pytest.fixture(scope="module")
def data_files():
    """The data_files setup.py hands to setuptools.setup (captured, nothing is built)."""
    captured = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO)  # setup.py lists the zoo relative to its own folder
        patch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
        runpy.run_path("setup.py")
    return captured["data_files"]


def _installed(data_files) -> set[str]:
    """Zoo-relative paths of the data files, as they would land under <prefix>/share/tfreid/zoo."""
    installed = set()
    for folder, files in data_files:
        for source in files:
            target = Path(folder) / Path(source).name
            assert target.parts[:3] == ("share", "tfreid", "zoo"), target
            assert (REPO / source).is_file(), source
            installed.add(target.relative_to("share/tfreid/zoo").as_posix())
    return installed


def test_every_zoo_model_card_and_config_is_installed(data_files):
    installed = _installed(data_files)
    wanted = {p.relative_to(ZOO).as_posix()
              for pattern in ("models/*/model.keras", "cards/*.json", "configs/*.cfg")
              for p in ZOO.glob(pattern)}
    for card in ZOO.glob("cards/*.json"):  # and whatever a card names
        card = json.loads(card.read_text())
        wanted |= {entry["path"] for entry in card["files"]} | {card["training"]["flagfile"]}
    assert any(name.startswith("models/") for name in wanted)
    assert wanted <= installed, sorted(wanted - installed)


def test_version_comes_from_the_package():
    assert read_configuration(REPO / "setup.cfg")["metadata"]["version"] == tfreid.__version__
