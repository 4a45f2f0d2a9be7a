"""Tests of tfreid.viz: ranked lists, gate heat maps, CMC curves and a run folder's pictures."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tfreid import viz
from tfreid.experiments import run_pictures
from tfreid.viz.gates import _normalized
from tfreid.viz.ranked import CORRECT_RGB, QUERY_RGB, WRONG_RGB


def read_png(path) -> np.ndarray:
    """uint8 RGB [H, W, 3] of a PNG, after checking the file signature."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def solid(color, size=(40, 20)) -> np.ndarray:
    return np.full(size + (3,), color, np.uint8)


def border_color(png, layout, row, col):
    """Colour of the frame of cell (row, col), sampled in the middle of its left border."""
    top, left, bottom, _ = layout.box(row, col)
    return tuple(png[(top + bottom) // 2, left + layout.frame // 2])


def interior_color(png, layout, row, col):
    top, left, bottom, right = layout.box(row, col)
    return tuple(png[(top + bottom) // 2, (left + right) // 2])


# ----------------------------------------------------------------------------- ranked lists

def test_ranked_frames_and_size(tmp_path):
    # Query 0 (pid 1, cam 0): gallery by distance: pid 1 cam 1 (correct), pid 2 (wrong),
    # pid 1 cam 2 (correct). Query 1 (pid 2, cam 1): pid 2 cam 0 first, then the others.
    g_pids, g_cams = np.array([2, 1, 1, 3]), np.array([0, 1, 2, 1])
    distmat = np.array([[0.2, 0.1, 0.3, 0.9],
                        [0.05, 0.5, 0.6, 0.4]])
    gallery = [solid((200, 200, 0)), solid((0, 200, 200)), solid((200, 0, 200)), solid((90, 90, 250))]
    query = [solid((10, 10, 10)), "unused-only-shown-images-are-read.jpg"]
    path = viz.plot_ranked_lists(query[:1] * 2, gallery, distmat, [1, 2], g_pids, [0, 1], g_cams,
                                 tmp_path / "r.png", top_k=3, query_indices=[0, 1])
    png = read_png(path)
    layout = viz.RankedLayout(rows=2, top_k=3)
    assert png.shape[:2] == layout.shape
    assert border_color(png, layout, 0, 0) == QUERY_RGB
    assert [border_color(png, layout, 0, c) for c in (1, 2, 3)] == [CORRECT_RGB, WRONG_RGB, CORRECT_RGB]
    assert [border_color(png, layout, 1, c) for c in (1, 2, 3)] == [CORRECT_RGB, WRONG_RGB, WRONG_RGB]
    # Only the images shown are read: a missing path that is never shown is fine, a shown one is not.
    with pytest.raises(FileNotFoundError, match="query_images\\[1\\]"):
        viz.plot_ranked_lists(query, gallery, distmat, [1, 2], g_pids, [0, 1], g_cams,
                              tmp_path / "r2.png", top_k=3, query_indices=[0, 1])


def test_ranked_excludes_junk(tmp_path):
    # Nearest: a same-id same-camera image (junk) and a pid -1 image (junk); they must not show.
    gallery_colors = [(255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 0)]
    g_pids, g_cams = np.array([7, -1, 7, 8]), np.array([0, 1, 1, 0])
    distmat = np.array([[0.0, 0.01, 0.5, 0.6]])
    path = viz.plot_ranked_lists([solid((0, 0, 0))], [solid(c) for c in gallery_colors], distmat,
                                 [7], g_pids, [0], g_cams, tmp_path / "j.png", top_k=3, colors=None)
    png = read_png(path)
    layout = viz.RankedLayout(rows=1, top_k=3)
    assert interior_color(png, layout, 0, 1) == (0, 255, 0)  # pid 7 from camera 1
    assert interior_color(png, layout, 0, 2) == (255, 255, 0)  # pid 8
    assert border_color(png, layout, 0, 1) == CORRECT_RGB
    assert border_color(png, layout, 0, 2) == WRONG_RGB
    assert interior_color(png, layout, 0, 3) == (255, 255, 255)  # nothing left for rank 3


def test_valid_ranking_matches_reference_loop():
    rng = np.random.default_rng(0)
    g_pids = rng.integers(-1, 4, 60)
    g_cams = rng.integers(0, 3, 60)
    distances = rng.integers(0, 10, 60).astype(float)  # many ties: order by gallery index
    for q_pid, q_cam in ((1, 0), (2, 2), (-1, 1)):
        got = viz.valid_ranking(distances, q_pid, q_cam, g_pids, g_cams)
        ref = sorted((j for j in range(60)
                      if g_pids[j] != -1 and not (g_pids[j] == q_pid and g_cams[j] == q_cam)),
                     key=lambda j: (distances[j], j))
        assert got.tolist() == ref


def test_ranked_default_queries_have_matches(tmp_path):
    # Query 1's identity is only in its own camera: no valid match, so it is not chosen.
    distmat = np.array([[0.1, 0.2], [0.1, 0.2], [0.3, 0.1]])
    images = [solid((50, 50, 50))] * 3
    path = viz.plot_ranked_lists(images, images[:2], distmat, [1, 2, 1], [1, 2], [0, 0, 0], [1, 0],
                                 tmp_path / "d.png", top_k=2, num_queries=5)
    assert read_png(path).shape[:2] == viz.RankedLayout(rows=2, top_k=2).shape


@pytest.mark.parametrize("change, message", [
    (dict(distmat=np.zeros(3)), "distmat must be \\[num_query, num_gallery\\]"),
    (dict(q_pids=[1]), "q_pids has 1 entries but distmat \\(2, 3\\) has 2 rows"),
    (dict(g_camids=[0, 1]), "g_camids has 2 entries .* 3 columns"),
    (dict(gallery_images=[np.zeros((8, 8, 3), np.uint8)] * 2), "gallery_images has 2 images"),
    (dict(query_images=[np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8)]),
     "query_images\\[1\\]: expected an RGB image"),
    (dict(query_indices=[0, 5]), "query_indices must be .* \\[0, 2\\)"),
    (dict(top_k=0), "top_k and num_queries must be >= 1"),
    (dict(path="r.jpg"), "PNG"),
])
def test_ranked_bad_inputs(tmp_path, change, message):
    args = dict(query_images=[np.zeros((8, 8, 3), np.uint8)] * 2,
                gallery_images=[np.zeros((8, 8, 3), np.uint8)] * 3, distmat=np.zeros((2, 3)),
                q_pids=[1, 2], g_pids=[1, 2, 3], q_camids=[0, 0], g_camids=[1, 1, 1], path="r.png",
                query_indices=[0, 1])
    args.update(change)
    args["path"] = tmp_path / args["path"]
    with pytest.raises(ValueError, match=message):
        viz.plot_ranked_lists(**args)


# ----------------------------------------------------------------------------- gate heat maps

def test_lomo_row_spans():
    spans = viz.lomo_row_spans()
    assert spans.shape == (40, 2)
    np.testing.assert_allclose(spans[0] * 128, [2.5, 7.5])  # window 0-10, step 5
    np.testing.assert_allclose(spans[23] * 128, [117.5, 122.5])
    np.testing.assert_allclose(spans[24] * 128, [5, 15])  # half resolution: window 0-20, step 10
    np.testing.assert_allclose(spans[35] * 128, [10, 30])  # quarter: window 0-40, step 20
    for lo, hi in ((0, 24), (24, 35), (35, 40)):  # each scale's rows tile their band
        np.testing.assert_allclose(spans[lo + 1:hi, 0], spans[lo:hi - 1, 1])
    np.testing.assert_allclose(viz.even_row_spans([2, 1]), [[0, 0.5], [0.5, 1], [0, 1]])


def test_gate_normalization_per_gate_and_scale():
    norms = np.random.default_rng(1).uniform(0, 5, (3, 7, 3))
    out = _normalized(norms, (4, 3), "gate")
    for rows in (slice(0, 4), slice(4, 7)):
        np.testing.assert_allclose(out[:, rows].min(axis=(0, 1)), 0)
        np.testing.assert_allclose(out[:, rows].max(axis=(0, 1)), 1)
    assert _normalized(norms, (7,), "none") is norms


def test_gate_heatmap_aligned_with_image(tmp_path):
    # Black image; two rows (top half, bottom half); input and output gates high on the top
    # row, the forget gate high on the bottom row. viridis: 1 -> yellow, 0 -> dark purple.
    norms = np.array([[[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]])
    path = viz.plot_gate_heatmaps([np.zeros((64, 24, 3), np.uint8)], norms, tmp_path / "g.png",
                                  normalize="none", cmap="viridis")
    png = read_png(path).astype(int)[:, :-100]  # leave out the colour bar
    def where(rgb):
        ys, xs = np.nonzero(np.abs(png - np.array(rgb)).sum(axis=2) < 30)
        return ys, xs
    black = np.abs(png).sum(axis=2) < 30
    img_x = np.flatnonzero(black.sum(axis=0) > 100)  # the image's columns (not the black text)
    img_y = np.flatnonzero(black[:, img_x].all(axis=1))
    middle = (img_y.min() + img_y.max()) / 2
    yellow_y, yellow_x = where((253, 231, 37))
    purple_y, purple_x = where((68, 1, 84))
    assert yellow_x.min() > img_x.max()  # heat map right of the image
    top, bottom = yellow_y < middle, yellow_y > middle
    # i and o columns yellow on top, f column yellow at the bottom, between them.
    # Each band spans exactly its half of the image (to the pixel, up to anti-aliasing).
    assert abs(yellow_y[top].min() - img_y.min()) <= 2 and abs(yellow_y[top].max() - middle) <= 2
    assert abs(yellow_y[bottom].min() - middle) <= 2 and abs(yellow_y[bottom].max() - img_y.max()) <= 2
    assert yellow_x[top].min() < yellow_x[bottom].min() <= yellow_x[bottom].max() < yellow_x[top].max()
    assert purple_y.min() >= img_y.min() - 1 and purple_y.max() <= img_y.max() + 1


def test_gate_heatmap_size_grows_with_panels(tmp_path):
    norms = np.random.default_rng(0).uniform(size=(4, 40, 3))
    images = [np.full((128, 48, 3), 120, np.uint8)] * 4
    kw = dict(scales=(24, 11, 5), row_spans=viz.lomo_row_spans(), labels=["a", "b", "c", "d"])
    wide = read_png(viz.plot_gate_heatmaps(images, norms, tmp_path / "a.png", **kw)).shape
    narrow = read_png(viz.plot_gate_heatmaps(images, norms, tmp_path / "b.png", show_scales=(0,),
                                             **kw)).shape
    two_rows = read_png(viz.plot_gate_heatmaps(images, norms, tmp_path / "c.png", panels_per_row=2,
                                               **kw)).shape
    assert 240 <= wide[0] < 240 + 120  # panel_height 2.4 in at 100 dpi plus captions
    assert wide[1] - narrow[1] == 4 * 2 * (5 + 36)  # two heat groups (gap + width) per panel
    assert two_rows[0] > wide[0] + 240 and two_rows[1] < wide[1]


@pytest.mark.parametrize("kwargs, message", [
    (dict(gate_norms=np.zeros((2, 5))), "gate_norms must be \\[batch, rows, 3\\]"),
    (dict(gate_norms=np.zeros((3, 5, 3))), "images has 2 images but gate_norms \\(3, 5, 3\\)"),
    (dict(scales=(3, 3)), "scales \\(3, 3\\) must be .* summing to the 5 rows"),
    (dict(row_spans=np.zeros((4, 2))), "row_spans must be \\[5, 2\\]"),
    (dict(scales=(3, 2), show_scales=(2,)), "show_scales"),
    (dict(labels=["x"]), "labels has 1 entries"),
    (dict(normalize="row"), "normalize must be one of"),
    (dict(gate_norms=np.full((2, 5, 3), np.nan)), "NaN"),
])
def test_gate_heatmap_bad_inputs(tmp_path, kwargs, message):
    args = dict(images=[np.zeros((16, 8, 3), np.uint8)] * 2, gate_norms=np.zeros((2, 5, 3)))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        viz.plot_gate_heatmaps(args.pop("images"), args.pop("gate_norms"), tmp_path / "g.png", **args)


# ----------------------------------------------------------------------------- CMC curves

def _report(r1):
    cmc = [r1] + [min(1.0, r1 + 0.1 * k) for k in range(1, 20)]
    part = {"cmc": cmc, "mAP": r1}
    return {"all_gallery": part, "single_shot": part, "multi_query": part}


STRIPE_METRICS = {"dataset": "toy", "channels": {"lomo": _report(0.5), "cn": _report(0.4)},
                  "input_features": {"lomo": _report(0.3), "cn": _report(0.2)},
                  "fused": _report(0.6), "config": {"architecture": "lstm"}}
CNN_METRICS = {"dataset": "toy", "test": _report(0.7), "test_reranked": _report(0.8),
               "config": {"backbone": "mobilenetv2", "loss": "rank_triplet", "height": 32, "width": 16}}


def test_cmc_curves_and_plot(tmp_path):
    curves = viz.cmc_curves(STRIPE_METRICS)
    assert list(curves) == ["lomo input features (Euclidean)", "cn input features (Euclidean)",
                            "siamese LSTM (lomo)", "siamese LSTM (cn)", "siamese LSTM (fused)"]
    assert viz.cmc_curves(STRIPE_METRICS, main_only=True, label="X") == {
        "X": _report(0.6)["all_gallery"]["cmc"]}
    assert list(viz.cmc_curves(CNN_METRICS)) == ["mobilenetv2/rank_triplet",
                                                 "mobilenetv2/rank_triplet + re-ranking"]
    assert read_png(viz.plot_cmc(curves, tmp_path / "c.png")).shape[:2] == (400, 550)
    with pytest.raises(ValueError, match="protocol must be one of"):
        viz.cmc_curves(CNN_METRICS, protocol="cuhk")
    with pytest.raises(ValueError, match="neither 'channels'"):
        viz.cmc_curves({"x": 1})
    with pytest.raises(ValueError, match="at least one curve"):
        viz.plot_cmc({}, tmp_path / "e.png")


def test_visualize_tool_compares_metrics(tmp_path, tools):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "metrics.json").write_text(json.dumps(STRIPE_METRICS))
    (tmp_path / "b.json").write_text(json.dumps(CNN_METRICS))
    proc = tools.run("visualize", f"--metrics={tmp_path / 'a'},{tmp_path / 'b.json'}", "--labels=LSTM,CNN",
                     f"--out={tmp_path / 'out'}", timeout=120)
    assert proc.returncode == 0, proc.stderr
    read_png(tmp_path / "out" / "cmc.png")
    with pytest.raises(ValueError, match="2 labels for 1 metrics"):
        run_pictures.plot_cmc_of_runs([tmp_path / "b.json"], tmp_path / "x.png", labels=["a", "b"])


# ----------------------------------------------------------------------------- run folders

@pytest.fixture(scope="module")
def tiny_split(synthetic_data):
    from tfreid.data import synthetic

    return synthetic.load(synthetic_data(num_train_ids=2, num_test_ids=3, num_cameras=2,
                                         images_per_camera=2))


def test_write_run_pictures_stripe_lstm(tmp_path, tiny_split):
    import keras

    from tfreid.features import LomoLayer
    from tfreid.models.stripe_deploy import build_deploy_model
    from tfreid.models.stripe_lstm import build_stripe_lstm

    layer = LomoLayer(output="rows", normalize="row", name="lomo")
    emb = build_stripe_lstm(40, layer.config.row_dim, hidden_units=3, scales=(24, 11, 5), seed=0,
                            name="lomo_embedding")
    run = tmp_path / "run"
    run.mkdir()
    build_deploy_model({"lomo": layer}, {"lomo": emb}).save(run / "model.keras")
    (run / "metrics.json").write_text(json.dumps(
        {"dataset": "synthetic", "channels": {"lomo": _report(0.5)},
         "input_features": {"lomo": _report(0.4)}, "config": {"architecture": "lstm"}}))
    messages = []
    pictures = run_pictures.write_run_pictures(run, tiny_split, tmp_path / "pics", num_queries=3, top_k=4,
                                      num_gate_images=2, log=messages.append)
    assert [p.name for p in pictures] == ["cmc.png", "ranked_lists.png", "gate_heatmaps.png"]
    assert any("embedding 6 query and 6 gallery images" in m for m in messages)
    assert read_png(pictures[1]).shape[:2] == viz.RankedLayout(rows=3, top_k=4, header=32).shape
    for p in pictures:
        read_png(p)
    keras.backend.clear_session()


def test_write_run_pictures_cnn(tmp_path, tiny_split, tiny_cnn):
    run = tmp_path / "run"
    run.mkdir()
    tiny_cnn((32, 16), dim=4).save(run / "model.keras")
    (run / "metrics.json").write_text(json.dumps(CNN_METRICS))
    pictures = run_pictures.write_run_pictures(run, tiny_split, tmp_path / "pics", log=lambda m: None)
    assert [p.name for p in pictures] == ["cmc.png", "ranked_lists.png"]
    with pytest.raises(FileNotFoundError, match="no metrics file"):
        run_pictures.write_run_pictures(tmp_path / "nothing", tiny_split, tmp_path / "pics")
