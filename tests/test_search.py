"""tfreid.search (faiss gallery index), tfreid.evaluation.neighbors and tools/index.py / search.py."""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss")

from tfreid import indexing  # noqa: E402
from tfreid.errors import UserError  # noqa: E402
from tfreid.evaluation import distance_matrix, evaluate  # noqa: E402
from tfreid.evaluation.neighbors import evaluate_ranked, positives_per_query  # noqa: E402
from tfreid.search import GalleryIndex, IndexFileError, IndexMismatchError  # noqa: E402


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    """Identity-clustered unit embeddings with Market-like ids (junk, distractors, cameras)."""
    rng = np.random.default_rng(0)
    centres = unit(rng.normal(size=(30, 32)))
    g_pids = rng.integers(0, 30, 400)
    g_pids[:10] = -1
    gallery = unit(centres[np.maximum(g_pids, 0)] + 0.4 * rng.normal(size=(400, 32)))
    q_pids = rng.integers(0, 32, 60)  # 30, 31: no positive in the gallery
    query = unit(centres[np.minimum(q_pids, 29)] + 0.4 * rng.normal(size=(60, 32)))
    return dict(gallery=gallery, g_pids=g_pids, g_cams=rng.integers(0, 3, 400), query=query,
                q_pids=q_pids, q_cams=rng.integers(0, 3, 60))


class FakeModel:
    """Stands in for an EmbeddingModel: a deterministic unit vector per file, calls counted."""

    def __init__(self, dim=8, name="fake"):
        self.dim, self.name, self.card, self.calls = dim, name, {"name": name}, []

    def embed_files(self, paths, batch_size=64, progress=False):
        self.calls.append(list(paths))
        rows = [np.random.default_rng(abs(hash(Path(p).name)) % 2**32).normal(size=self.dim)
                for p in paths]
        return unit(np.asarray(rows).reshape(len(paths), self.dim))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_search_distances_are_the_evaluation_distances(data, metric):
    index = GalleryIndex(32, metric)
    index.add(data["gallery"])
    idx, dist = index.search_embeddings(data["query"], 15)
    dense = distance_matrix(data["query"], data["gallery"], metric)
    order = np.argsort(dense, axis=1, kind="stable")[:, :15]
    np.testing.assert_array_equal(idx, order)
    np.testing.assert_allclose(dist, np.take_along_axis(dense, order, 1), atol=2e-6)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("ap", ["market", "mean_precision"])
def test_evaluation_through_the_index_equals_dense_when_k_covers_the_gallery(data, metric, ap):
    index = GalleryIndex(32, metric)
    index.add(data["gallery"], pids=data["g_pids"], camids=data["g_cams"])
    got = index.evaluate(data["query"], data["q_pids"], data["q_cams"], k=400, max_rank=20, ap=ap,
                         query_block=7)
    want = evaluate(distance_matrix(data["query"], data["gallery"], metric), data["q_pids"],
                    data["g_pids"], data["q_cams"], data["g_cams"], max_rank=20, ap=ap)
    np.testing.assert_allclose(got.cmc, want.cmc, atol=1e-12)
    assert got.mAP == pytest.approx(want.mAP, abs=1e-12)
    assert got.mINP == pytest.approx(want.mINP, abs=1e-12)
    assert (got.num_valid_queries, got.num_skipped_queries) == (want.num_valid_queries,
                                                                want.num_skipped_queries)


def test_truncated_lists_bound_the_dense_result(data):
    index = GalleryIndex(32)
    index.add(data["gallery"], pids=data["g_pids"], camids=data["g_cams"])
    dense = evaluate(distance_matrix(data["query"], data["gallery"]), data["q_pids"],
                     data["g_pids"], data["q_cams"], data["g_cams"], max_rank=5)
    top = index.evaluate(data["query"], data["q_pids"], data["q_cams"], k=30, max_rank=5)
    np.testing.assert_allclose(top.cmc, dense.cmc)  # 30 neighbours cover rank 5 despite junk
    assert top.mAP <= dense.mAP + 1e-12 and top.mINP <= dense.mINP + 1e-12


def test_positives_per_query_and_bad_ranked_input():
    counts = positives_per_query([1, 1, 2, -1], [0, 1, 0, 0], [1, 1, 1, 2, -1], [0, 1, 1, 0, 0])
    np.testing.assert_array_equal(counts, [2, 1, 0, 0])  # query 2: same-camera junk only
    with pytest.raises(ValueError, match="outside the gallery"):
        evaluate_ranked(np.array([[5]]), [1], [1], [0], [0])


def test_save_load_round_trip_and_refusals(data, tmp_path):
    model = FakeModel(dim=32, name="m1")
    index = GalleryIndex(32, model=model, model_info={"name": "m1", "sha256": "abc"})
    index.add(data["gallery"], paths=[f"g{i}.jpg" for i in range(400)], pids=data["g_pids"],
              camids=data["g_cams"])
    index.save(tmp_path)
    index.add(data["query"][:3])  # a second save replaces the files atomically
    index.save(tmp_path)
    assert len(list(tmp_path.glob("index-*.faiss"))) == 1 == len(list(tmp_path.glob("entries-*.npz")))
    loaded = GalleryIndex.load(tmp_path, metric="euclidean")
    assert len(loaded) == 403 and loaded.paths[5] == "g5.jpg" and loaded.paths[401] is None
    np.testing.assert_array_equal(loaded.pids[:400], data["g_pids"])
    np.testing.assert_array_equal(loaded.search_embeddings(data["query"], 5)[0],
                                  index.search_embeddings(data["query"], 5)[0])

    with pytest.raises(IndexMismatchError, match="built with model 'm1'"):
        GalleryIndex.load(tmp_path, model=FakeModel(dim=32, name="other"))
    with pytest.raises(IndexMismatchError, match="embeds to 16"):
        GalleryIndex.load(tmp_path, model=FakeModel(dim=16, name="m1"))
    with pytest.raises(IndexMismatchError, match="metric"):
        GalleryIndex.load(tmp_path, metric="cosine")

    meta = json.loads((tmp_path / "meta.json").read_text())
    faiss_file = tmp_path / meta["files"]["index"]["file"]
    blob = faiss_file.read_bytes()
    faiss_file.write_bytes(blob[:-100])
    with pytest.raises(IndexFileError, match="truncated"):
        GalleryIndex.load(tmp_path)
    altered = bytearray(blob)
    altered[len(blob) // 2] ^= 0xFF
    faiss_file.write_bytes(bytes(altered))
    with pytest.raises(IndexFileError, match="altered"):
        GalleryIndex.load(tmp_path)
    faiss_file.unlink()
    with pytest.raises(IndexFileError, match="missing"):
        GalleryIndex.load(tmp_path)
    (tmp_path / "meta.json").write_text("{")
    with pytest.raises(IndexFileError, match="not a readable"):
        GalleryIndex.load(tmp_path)


def test_approximate_index_trains_and_keeps_its_search_parameters(data, tmp_path):
    index = GalleryIndex(32, factory="IVF4,Flat", search_params="nprobe=4")
    with pytest.raises(ValueError, match="not trained"):
        index.add(data["gallery"])
    index.train(data["gallery"])
    index.add(data["gallery"])
    exact = GalleryIndex(32)
    exact.add(data["gallery"])
    # nprobe = nlist scans every list: exact results.
    np.testing.assert_array_equal(index.search_embeddings(data["query"], 10)[0],
                                  exact.search_embeddings(data["query"], 10)[0])
    index.save(tmp_path)
    assert GalleryIndex.load(tmp_path).search_params == "nprobe=4"
    with pytest.raises(ValueError, match="factory"):
        GalleryIndex(32, factory="NoSuchIndex")


def test_indexing_resumes_without_embedding_finished_chunks_again(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(10):
        (images / f"{i:04d}_c{1 + i % 2}s1_000001_01.jpg").write_bytes(b"x")
    paths = indexing.image_paths(str(images), None)
    model = FakeModel()
    out = tmp_path / "gallery"
    first = indexing.build_resumable(model, paths, out, ids="market", chunk_size=4, log=lambda s: None)
    assert [len(c) for c in model.calls] == [4, 4, 2]
    np.testing.assert_array_equal(first.pids, np.arange(10))
    np.testing.assert_array_equal(first.camids, np.arange(10) % 2)
    (out / "embeddings" / "chunk-000001.npz").unlink()   # as if killed while writing it
    model.calls.clear()
    again = indexing.build_resumable(model, paths, out, ids="market", chunk_size=4, log=lambda s: None)
    assert model.calls == [paths[4:8]]
    np.testing.assert_array_equal(again.search_embeddings(model.embed_files(paths[:2]), 1)[0][:, 0],
                                  [0, 1])
    with pytest.raises(UserError, match="another job"):
        indexing.build_resumable(model, paths[:5], out, chunk_size=4, log=lambda s: None)


@pytest.mark.slow
def test_tools_index_then_search_print_and_draw(tmp_path, tiny_cnn, tools):
    import cv2

    run = tmp_path / "run"
    run.mkdir()
    tiny_cnn((32, 16), dim=8, filters=4).save(run / "model.keras")
    images = tmp_path / "crops"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        cv2.imwrite(str(images / f"{i:02d}.png"), rng.integers(0, 256, (40 + i, 20, 3), np.uint8))
    out = tmp_path / "gallery"
    built = tools.run("index", f"--run={run}", f"--images={images}", f"--out={out}", "--chunk_size=5")
    assert built.returncode == 0, built.stderr[-2000:]
    assert sorted(p.name for p in (out / "embeddings").glob("chunk-*")) == [
        "chunk-000000.npz", "chunk-000001.npz", "chunk-000002.npz"]
    query = images / "03.png"
    found = tools.run("search", f"--index={out}", f"--query={query}", "--top_k=4",
                      f"--out={tmp_path / 'ranked.png'}")
    assert found.returncode == 0, found.stderr[-2000:]
    lines = [line.split() for line in found.stdout.splitlines() if line.startswith("    ")]
    assert len(lines) == 4 and lines[0][2] == str(query) and float(lines[0][1]) < 1e-3
    assert (tmp_path / "ranked.png").stat().st_size > 0
    wrong = tools.run("search", f"--index={tmp_path}", f"--query={query}")
    assert wrong.returncode == 2 and "no readable index" in wrong.stderr
