"""tools/evaluate.py end to end on a tiny synthetic dataset (zoo model published with its
measured metrics, then reproduced by the tool with --check_card)."""

import json
import os

import numpy as np
import pytest

from tfreid import publish, zoo
from tfreid.data import datasets
from tfreid.data.records import arrays
from tfreid.evaluation import distance_matrix, evaluate
from tfreid.model_eval import compare_summaries, evaluate_model, query_counts, summarize


@pytest.fixture(scope="module")
def setup(tmp_path_factory, synthetic_data, make_run):
    tmp = tmp_path_factory.mktemp("evaluate")
    data = synthetic_data(num_train_ids=3, num_test_ids=5, num_cameras=2, images_per_camera=2,
                          size=(32, 16))
    home = tmp / "home"
    old = os.environ.get("TFREID_HOME")
    os.environ["TFREID_HOME"] = str(home)
    try:
        card = publish.publish(make_run(tmp / "run"), "tiny_eval", data_dir=str(data),
                               log=lambda s: None)
    finally:
        if old is None:
            os.environ.pop("TFREID_HOME")
        else:
            os.environ["TFREID_HOME"] = old
    return tmp, data, home, json.loads(card.read_text())


def test_card_metrics_match_a_reference_evaluation(setup, monkeypatch):
    tmp, data, home, card = setup
    monkeypatch.setenv("TFREID_HOME", str(home))
    split = datasets.build("synthetic", str(data))
    model = zoo.load("tiny_eval")
    q_paths, q_pids, q_cams = arrays(split.query)
    g_paths, g_pids, g_cams = arrays(split.gallery)
    # Reference: images read one by one by the user's PIL (the pixels the tool reads too),
    # embedded through the in-memory API, then the library's metrics.
    from PIL import Image
    read = lambda p: np.asarray(Image.open(p).convert("RGB"))  # noqa: E731
    q, g = model.embed([read(p) for p in q_paths]), model.embed([read(p) for p in g_paths])
    dist = distance_matrix(q, g)
    ref = evaluate(dist, q_pids, g_pids, q_cams, g_cams, max_rank=min(50, len(g_paths)))
    zoo_metrics = card["metrics"]["zoo"]
    assert zoo_metrics["results"]["embedding"]["all_gallery"]["rank1"] == pytest.approx(ref.rank(1), abs=1e-6)
    assert zoo_metrics["results"]["embedding"]["all_gallery"]["mAP"] == pytest.approx(ref.mAP, abs=1e-5)
    assert "--zoo=tiny_eval" in zoo_metrics["command"] and "--check_card" in zoo_metrics["command"]


def test_tool_reproduces_card_and_writes_json(setup, tools):
    tmp, data, home, card = setup
    out = tmp / "eval.json"
    proc = tools.run("evaluate", "--zoo=tiny_eval", f"--data_dir={data}", "--check_card", "--ap=market",
                     "--single_shot_draws=10", f"--out_json={out}", env=tools.env(TFREID_HOME=str(home)),
                     cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "card metrics reproduced" in proc.stdout and "all-gallery" in proc.stdout
    result = json.loads(out.read_text())
    assert set(result) >= {"embedding", "channels", "settings", "summary"}
    assert result["summary"] == card["metrics"]["zoo"]["results"]


def test_rerank_sections_and_card_comparison(setup, monkeypatch):
    tmp, data, home, card = setup
    monkeypatch.setenv("TFREID_HOME", str(home))
    result = evaluate_model(zoo.load("tiny_eval"), datasets.build("synthetic", str(data)),
                            rerank=True, multi_query=False, single_shot_draws=3)
    assert "embedding_reranked" in result and "multi_query" not in result["embedding"]
    assert result["settings"] == {"ap": "market", "single_shot_draws": 3, "rerank": True,
                                  "multi_query": False}
    summary, queries = summarize(result), query_counts(result)
    n = queries["all_gallery"]
    assert queries["single_shot"] == n == result["num_query"]
    assert compare_summaries(summary, summary, queries) == []
    one_query = json.loads(json.dumps(summary))
    one_query["embedding"]["all_gallery"]["rank1"] -= 1.0 / n       # one query moved: allowed
    assert compare_summaries(summary, one_query, queries) == []
    two_queries = json.loads(json.dumps(summary))
    two_queries["embedding"]["all_gallery"]["rank1"] -= 2.0 / n
    assert len(compare_summaries(summary, two_queries, queries)) == 1
    assert compare_summaries(summary, two_queries, queries, tolerance_queries=2) == []


def test_flip_average_flag(setup, tools):
    tmp, data, home, card = setup
    env = tools.env(TFREID_HOME=str(home))
    proc = tools.run("evaluate", "--zoo=tiny_eval", f"--data_dir={data}", "--flip_average",
                     f"--out_json={tmp / 'flip.json'}", env=env, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "test-time flip averaging" in proc.stdout
    assert json.loads((tmp / "flip.json").read_text())["flip_average"] is True
    proc = tools.run("evaluate", "--zoo=tiny_eval", f"--data_dir={data}", "--flip_average",
                     "--check_card", env=env, cwd=tmp)
    assert proc.returncode == 2 and "leave out --flip_average" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
