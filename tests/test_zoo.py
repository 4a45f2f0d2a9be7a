"""The zoo: cards, list/load, integrity failures, recipes, publish."""

import json

import numpy as np
import pytest

from tfreid import publish, zoo
from tfreid.serving import EmbeddingModel


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TFREID_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture()
def published(home, tmp_path, make_run):
    card = publish.publish(make_run(tmp_path / "run"), "tiny_cnn_test", evaluate=False, log=lambda s: None)
    return card


def images(n=3):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (20 + 5 * i, 10 + i, 3)).astype(np.uint8) for i in range(n)]


def test_package_cards_are_valid_and_listed(home):
    root = zoo.package_root()
    assert root is not None and (root / "cards").is_dir()
    names = zoo.list()
    for name in ("siamese_lstm_cuhk03", "siamese_lstm_viper", "siamese_lstm_market1501"):
        assert name in names
        card = zoo.read_card(root / "cards" / f"{name}.json")
        assert (root / card["training"]["flagfile"]).is_file()
        for entry in card["files"]:  # committed models: each <= 25 MB
            assert (root / entry["path"]).stat().st_size <= publish.MAX_FILE_BYTES


def test_publish_then_load(published, home, tiny_cnn):
    card = json.loads(published.read_text())
    assert published == home / "zoo" / "cards" / "tiny_cnn_test.json"
    assert card["format_version"] == zoo.FORMAT_VERSION
    entry = card["files"][0]
    assert entry["sha256"] == zoo.sha256_of(home / "zoo" / entry["path"])
    assert card["metrics"]["training_run"]["results"]["test"]["all_gallery"] == {"rank1": 0.5, "mAP": 0.25}
    assert card["input"]["branches"] == [{"name": "embedding", "height": 32, "width": 16, "dim": 8}]
    assert "tiny_cnn_test" in zoo.list()

    model = zoo.load("tiny_cnn_test")
    assert isinstance(model, EmbeddingModel) and model.card["name"] == "tiny_cnn_test"
    emb = model.embed(images())
    assert emb.shape == (3, 8) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-6)
    dist = model.distance(emb, emb[:2])
    ref = np.array([[np.linalg.norm(a - b) for b in emb[:2]] for a in emb])
    np.testing.assert_allclose(dist, ref, atol=1e-3)  # expansion formula: sqrt of rounding
    idx, d = model.rank(images()[:1], images(), top_k=5)
    assert idx.shape == (1, 3) and idx[0, 0] == 0 and d[0, 0] == pytest.approx(0, abs=1e-3)
    assert model.keras_model.count_params() == tiny_cnn((32, 16), dim=8, filters=4).count_params()


def test_altered_and_truncated_files_load_nothing(published, home, monkeypatch):
    path = home / "zoo" / "models" / "tiny_cnn_test" / "model.keras"
    data = path.read_bytes()
    loaded = []
    import tfreid.serving
    monkeypatch.setattr(tfreid.serving, "load_keras_model", lambda p: loaded.append(p))
    path.write_bytes(data[:-10])
    with pytest.raises(zoo.IntegrityError, match="truncated"):
        zoo.load("tiny_cnn_test")
    altered = bytearray(data)
    altered[len(data) // 2] ^= 1
    path.write_bytes(bytes(altered))
    with pytest.raises(zoo.IntegrityError, match="sha256"):
        zoo.load("tiny_cnn_test")
    path.unlink()
    with pytest.raises(zoo.IntegrityError, match="missing"):
        zoo.load("tiny_cnn_test")
    assert loaded == []


def test_unknown_name_lists_known(home):
    with pytest.raises(zoo.UnknownModelError, match="siamese_lstm_market1501") as err:
        zoo.load("no_such_model")
    assert "no_such_model" in str(err.value)


def test_newer_format_version(published, home):
    card = json.loads(published.read_text())
    card["format_version"] = zoo.FORMAT_VERSION + 1
    published.write_text(json.dumps(card))
    with pytest.raises(zoo.CardFormatError, match="upgrade tfreid"):
        zoo.load("tiny_cnn_test")
    published.write_text("{not json")
    with pytest.raises(zoo.CardFormatError, match="not readable JSON"):
        zoo.load("tiny_cnn_test")


def test_card_paths_stay_inside(published, home):
    card = json.loads(published.read_text())
    card["files"][0]["path"] = "../../etc/passwd"
    published.write_text(json.dumps(card))
    with pytest.raises(zoo.CardFormatError, match="inside the zoo"):
        zoo.load("tiny_cnn_test")


def test_recipe_explains_how_to_build(home):
    with pytest.raises(zoo.WeightsNotPresentError) as err:
        zoo.load("siamese_lstm_market1501")
    message = str(err.value)
    assert "tools/train.py --flagfile=" in message and "siamese_lstm_market1501.cfg" in message
    assert ("tools/publish.py --run=runs/siamese_lstm_market1501 --name=siamese_lstm_market1501"
            in message)
    assert str(home / "zoo") in message


def test_recipe_found_in_cache_after_publish(home, tmp_path, make_run):
    publish.publish(make_run(tmp_path / "run", "market1501"), "siamese_lstm_market1501",
                    evaluate=False, log=lambda s: None)
    model = zoo.load("siamese_lstm_market1501")  # the package card is a recipe; the cache has weights
    assert model.card["files"] and model.card["paper"].startswith("R. R. Varior")
    assert (home / "zoo" / "configs" / "siamese_lstm_market1501.cfg").is_file()


def test_publish_errors(home, tmp_path, make_run):
    with pytest.raises(FileNotFoundError, match="flags.json and model.keras"):
        publish.publish(tmp_path, "x", evaluate=False)
    with pytest.raises(ValueError, match="zoo name"):
        publish.publish(make_run(tmp_path / "run"), "bad/name", evaluate=False)
    with pytest.raises(ValueError, match="exceeds the zoo limit"):
        publish.publish(tmp_path / "run", "big", evaluate=False, max_bytes=100, log=lambda s: None)
    assert not (home / "zoo" / "models" / "big" / "model.keras").exists()


def test_list_tells_recipes_from_models_with_weights(home, tmp_path, make_run):
    names = zoo.list()
    with_weights, recipes = zoo.list(with_weights=True), zoo.list(with_weights=False)
    assert sorted(with_weights + recipes) == names and not set(with_weights) & set(recipes)
    assert "siamese_lstm_market1501" in recipes and "siamese_lstm_viper" in with_weights
    assert not zoo.has_weights("siamese_lstm_market1501")
    with pytest.raises(zoo.UnknownModelError,
                       match=r"siamese_lstm_market1501 \(recipe without weights\)"):
        zoo.load("no_such_model")
    publish.publish(make_run(tmp_path / "run", "market1501"), "siamese_lstm_market1501",
                    evaluate=False, log=lambda s: None)
    assert "siamese_lstm_market1501" in zoo.list(with_weights=True)  # built into the cache


def test_publishing_under_a_shipped_name_is_refused(home, tmp_path, make_run):
    shipped = zoo.list(with_weights=True)[0]
    with pytest.raises(ValueError, match=f"--name={shipped}: tfreid ships a zoo model"):
        publish.publish(make_run(tmp_path / "run"), shipped, evaluate=False, log=lambda s: None)
    assert not (home / "zoo" / "cards" / f"{shipped}.json").exists()


def test_card_train_command_restates_the_flags_the_run_changed_from_its_flagfile(tmp_path):
    flagfile = tmp_path / "x.cfg"
    flagfile.write_text("--model=cnn\n--seed=0\n--height=32\n--loss=triplet\n")
    ran = {"model": "cnn", "seed": 1, "height": 32, "loss": "triplet", "out": "elsewhere", "p": 16}
    command = publish.train_command("x", flagfile, ran)
    assert command.startswith("python tools/train.py --flagfile=zoo/configs/x.cfg --data_dir=DATA")
    # seed differs; height and loss agree; out is not a recorded flag; p is left to the model.
    assert command.endswith(" --seed=1") and "--height" not in command and "--p=" not in command
    assert publish.train_command("x", tmp_path / "missing.cfg", ran).endswith("--out=runs/x")


def test_flip_average_is_a_card_setting(home, tmp_path, make_run):
    card_path = publish.publish(make_run(tmp_path / "run"), "tiny_flip", evaluate=False,
                                flip_average=True, log=lambda s: None)
    assert json.loads(card_path.read_text())["input"]["flip_average"] is True
    model = zoo.load("tiny_flip")
    assert model.pipeline.flip_average
    np.testing.assert_allclose(model.embed([im[:, ::-1] for im in images()]), model.embed(images()),
                               atol=1e-5)
    assert not zoo.from_run(tmp_path / "run").pipeline.flip_average
