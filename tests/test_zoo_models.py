"""The models committed in zoo/: load without data or network, embed, export -> reload round trip,
and (with TFREID_DATA) the card's CUHK03 metrics reproduced within 0.1 percentage points."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfreid import export, zoo
from tfreid.data import datasets
from tfreid.model_eval import compare_summaries, evaluate_model, query_counts, summarize

ROOT = Path(__file__).resolve().parent.parent


def shipped_cards() -> dict[str, dict]:
    """The cards in the repository's zoo/ that come with files, by name."""
    cards = (json.loads(p.read_text()) for p in (ROOT / "zoo" / "cards").glob("*.json"))
    return {card["name"]: card for card in sorted(cards, key=lambda c: c["name"]) if card.get("files")}


CARDS = shipped_cards()
SHIPPED = list(CARDS)
MAX_MODEL_BYTES = 25 * 2**20
MAX_ZOO_BYTES = 100 * 2**20


def images(n=3):
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (150 + 20 * i, 60 + 7 * i, 3)).astype(np.uint8) for i in range(n)]


def test_the_zoo_ships_the_issue_models_within_size_limits():
    assert {"siamese_lstm_cuhk03", "mlp_baseline_cuhk03", "rank_triplet_mobilenetv2_cuhk03"} <= set(SHIPPED)
    sizes = {p: p.stat().st_size for p in (ROOT / "zoo" / "models").rglob("*") if p.is_file()}
    assert all(size <= MAX_MODEL_BYTES for size in sizes.values()), sizes
    assert sum(sizes.values()) <= MAX_ZOO_BYTES


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_load_embed_export_round_trip(name, tmp_path):
    model = zoo.load(name)
    emb = model.embed(images())
    assert emb.shape == (3, model.dim) and np.isfinite(emb).all()
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    folder = export.export_saved_model(model, tmp_path, name)
    loaded = tf.saved_model.load(str(folder))
    encoded = tf.constant([tf.io.encode_png(im).numpy() for im in images()])
    np.testing.assert_allclose(loaded.signatures["embed_encoded"](images=encoded)["embedding"].numpy(),
                               emb, atol=1e-5)


LOAD_WITHOUT_DATA = r"""
import numpy as np, tfreid
m = tfreid.zoo.load(NAME)
e = m.embed([np.full((128, 64, 3), 120, np.uint8), np.zeros((200, 80, 3), np.uint8)])
print(e.shape[0], round(float(np.linalg.norm(e[0])), 4))
"""


@pytest.mark.parametrize("name", [n for n in SHIPPED if "lstm" in n or "mlp" in n])
def test_stripe_models_load_without_data(name, tmp_path, tools):
    """The Color Names table and codebook travel inside the model: no TFREID_DATA needed."""
    env = tools.env(drop=("TFREID_DATA", "TFREID_WEIGHTS"), TFREID_HOME=str(tmp_path / "home"))
    proc = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_DATA.replace("NAME", repr(name))],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-2:] == ["2", "1.0"]


@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.data(card["metrics"]["zoo"]["dataset"]))
                                  for name, card in CARDS.items()])  # data folders are named so
def test_card_metrics_reproduced_on_their_data(name, data_root):
    card = CARDS[name]["metrics"]["zoo"]
    model = zoo.load(name)
    split = datasets.build(card["dataset"], data_root, **card.get("dataset_options", {}))
    settings = card["settings"]
    result = evaluate_model(model, split, ap=settings["ap"],
                            single_shot_draws=settings["single_shot_draws"],
                            rerank=settings["rerank"], multi_query=settings["multi_query"])
    assert compare_summaries(summarize(result), card["results"], query_counts(result)) == []


@pytest.mark.parametrize("name", SHIPPED)
def test_card_says_what_the_model_is(name):
    card = json.loads((ROOT / "zoo" / "cards" / f"{name}.json").read_text())
    assert card["format_version"] == zoo.FORMAT_VERSION and card["name"] == name and card["paper"]
    assert card["architecture"]["model"] and card["input"]
    training = card["training"]
    assert training["dataset"] and training["protocol"]
    assert (ROOT / "zoo" / training["flagfile"]).is_file()
    assert card["metrics"]["zoo"]["command"].startswith("python tools/evaluate.py --zoo=" + name)
    assert all(len(f["sha256"]) == 64 and (ROOT / "zoo" / f["path"]).is_file() for f in card["files"])
