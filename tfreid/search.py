"""A persistent gallery of embeddings searched with faiss: "here is a person, find them".

    import tfreid
    from tfreid.search import GalleryIndex
    model = tfreid.zoo.load("rank_triplet_mobilenetv2_cuhk03")
    index = GalleryIndex.build(model, sorted(Path("crops").glob("*.jpg")))   # embeds the images
    index.save("gallery/")
    index = GalleryIndex.load("gallery/", model=model)      # refuses another model / dim / metric
    hits = index.search(["person.jpg"], k=10)                # files, images or embeddings
    hits.paths[0], hits.distances[0]                         # nearest first

Distances. tfreid embeddings are L2-normalised (`tfreid.serving`), and the index returns the
distances of `tfreid.evaluation.distance_matrix`:

  * metric="euclidean" (default; what `tools/evaluate.py` ranks by): a faiss L2 index, whose
    squared distances are returned as their square root, ||a - b|| in [0, 2];
  * metric="cosine": a faiss inner-product index on re-normalised vectors, returned as 1 - a.b.

Both rank unit vectors identically (||a - b||^2 = 2 - 2 a.b). Results are ordered by (distance,
gallery index), the tie policy of `tfreid.evaluation.evaluate`.

Index kinds (`factory`, a faiss index factory string over the embedding dimension):

  * "Flat" (default): exact search, memory 4 * dim bytes per entry.
  * "IVF{n},Flat": inverted lists; `nprobe` of the n lists are scanned. Exact distances, recall
    < 1 when a neighbour lies in an unscanned list. Needs training (k-means) on >= 39 n vectors.
  * "IVF{n},PQ{m}" / "IVF{n}_HNSW32,PQ{m}": product-quantised codes of m bytes per entry
    (dim 256, PQ32: 32 bytes instead of 1024); approximate distances, for 10^7+ entries.
  * "HNSW32": graph search, no training, ~1.5x the memory of Flat; recall set by efSearch.

docs/RESULTS.md ("Gallery search") lists the recall@10 each kind trades for its speed on 10^5 -
10^7 vectors; set `search_params` (e.g. "nprobe=32", "efSearch=128") to move along that curve.

Files of a saved index (a folder; see `save`): meta.json (format, model, dim, metric, factory,
search_params, count, and the size + sha256 of the two data files), index-<sha>.faiss (the faiss
index) and entries-<sha>.npz (paths, pids, camids; plain arrays, loaded without pickle).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from tfreid.data.layout import IMAGE_SUFFIXES
from tfreid.rundir import RunDir

FORMAT_VERSION = 1
METRICS = ("euclidean", "cosine")
NO_ID = -1  # pid / camid of an entry added without ids (pid -1 is junk in evaluation)


class IndexFileError(RuntimeError):
    """A saved index that is missing, truncated, altered or of another format."""


class IndexMismatchError(ValueError):
    """A saved index built with another model, embedding size or metric than the one in use."""


def _faiss():
    try:
        import faiss
    except ImportError as err:
        raise ImportError("tfreid.search needs faiss: pip install 'tfreid[search]' "
                          "(the faiss-cpu package)") from err
    if faiss.cvar.distance_compute_blas_database_bs == 1024:  # faiss's default
        # Exact search multiplies query blocks by gallery blocks; 1024-row gallery blocks keep
        # sgemm far from its peak (3.4x slower than one product over the same data here), 16384
        # rows reach it (temporary: 4096 queries x 16384 floats = 256 MB at most).
        faiss.cvar.distance_compute_blas_database_bs = 16384
    return faiss


def list_images(folder) -> list[str]:
    """Image files (by suffix) under `folder`, recursively, sorted: a stable gallery order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    return sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def model_identity(model) -> dict:
    """{"name", "sha256"} of an `EmbeddingModel`: its zoo card's model file digest, or the
    digest of a run folder's model.keras; None where neither is known."""
    card = getattr(model, "card", {}) or {}
    digest = None
    model_file = card.get("model", {}).get("file") if isinstance(card.get("model"), dict) else None
    for entry in card.get("files", []):
        if isinstance(entry, dict) and entry.get("path") == model_file:
            digest = entry.get("sha256")
    if digest is None and card.get("run"):
        path = RunDir(card["run"]).model
        digest = _sha256(path.read_bytes()) if path.is_file() else None
    return {"name": str(getattr(model, "name", card.get("name", ""))), "sha256": digest,
            "run": card.get("run")}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclasses.dataclass
class SearchResult:
    """Neighbours of each query, nearest first.

    Attributes:
      indices: int64 [q, k] gallery entry numbers (-1 where an approximate index found fewer).
      distances: float32 [q, k] (see the module docstring; inf where indices is -1).
      paths: q lists of k paths (None for -1 or entries added without a path).
    """

    indices: np.ndarray
    distances: np.ndarray
    paths: list[list[str | None]]


class GalleryIndex:
    """Embeddings of gallery images in a faiss index, with each entry's path, pid and camid.

    Args:
      dim: embedding size.
      metric: "euclidean" or "cosine" (see the module docstring).
      factory: faiss index factory string; "Flat" = exact search.
      model: the `EmbeddingModel` that embeds images given to `add` / `search` (optional when
        only embeddings are used).
      model_info: {"name", "sha256"} recorded with the index (default: `model_identity(model)`).
      search_params: faiss parameters for searching, e.g. "nprobe=32" (IVF) or "efSearch=128".
    """

    def __init__(self, dim: int, metric: str = "euclidean", factory: str = "Flat", model=None,
                 model_info: dict | None = None, search_params: str = ""):
        faiss = _faiss()
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        if model is not None and model.dim != dim:
            raise IndexMismatchError(f"model {model.name!r} embeds to {model.dim} dimensions, "
                                     f"the index holds {dim}")
        self.dim, self.metric, self.factory = int(dim), metric, factory
        self.model = model
        self.model_info = dict(model_info or (model_identity(model) if model is not None
                                              else {"name": "", "sha256": None}))
        faiss_metric = faiss.METRIC_L2 if metric == "euclidean" else faiss.METRIC_INNER_PRODUCT
        try:
            self.index = faiss.index_factory(self.dim, factory, faiss_metric)
        except RuntimeError as err:
            raise ValueError(f"faiss cannot build index factory {factory!r} for dim {dim}: "
                             f"{str(err).strip().splitlines()[-1]}") from None
        self.search_params = ""
        self.set_search_params(search_params)
        self.paths: list[str | None] = []
        self.pids = np.zeros(0, np.int64)
        self.camids = np.zeros(0, np.int64)

    @classmethod
    def for_model(cls, model, factory: str = "Flat", metric: str = "euclidean",
                  search_params: str = "") -> "GalleryIndex":
        """An empty index for `model`'s embeddings."""
        return cls(model.dim, metric, factory, model=model, search_params=search_params)

    @classmethod
    def build(cls, model, images, pids=None, camids=None, factory: str = "Flat",
              metric: str = "euclidean", search_params: str = "", batch_size: int = 64,
              progress: bool = False) -> "GalleryIndex":
        """Embeds `images` (a folder, or a list of files / arrays) with `model` into a new index.

        An index that needs training (IVF, PQ) is trained on these embeddings first.
        """
        if isinstance(images, (str, os.PathLike)) and Path(images).is_dir():
            images = list_images(images)
        index = cls.for_model(model, factory, metric, search_params)
        emb, paths = index._embed(images, batch_size, progress)
        index.train(emb)
        index.add(emb, paths=paths, pids=pids, camids=camids)
        return index

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def __repr__(self):
        return (f"GalleryIndex({len(self)} entries, dim={self.dim}, metric={self.metric!r}, "
                f"factory={self.factory!r}, model={self.model_info.get('name')!r})")

    @property
    def is_trained(self) -> bool:
        return bool(self.index.is_trained)

    def set_search_params(self, params: str) -> None:
        """faiss search parameters, e.g. "nprobe=32" (IVF) or "efSearch=128" (HNSW)."""
        if params:
            try:
                _faiss().ParameterSpace().set_index_parameters(self.index, params)
            except RuntimeError as err:
                raise ValueError(f"search_params {params!r} do not apply to a {self.factory!r} "
                                 f"index: {str(err).strip().splitlines()[-1]}") from None
        self.search_params = params

    # -- embeddings in ---------------------------------------------------------------------
    def _embed(self, items, batch_size: int = 64, progress: bool = False):
        """(float32 [n, dim], paths or None) of embeddings, image files or image arrays."""
        if isinstance(items, (str, os.PathLike)):
            items = [items]
        arr = items if isinstance(items, np.ndarray) else None
        if arr is not None and arr.ndim == 2 and np.issubdtype(arr.dtype, np.floating):
            return self._vectors(arr), None
        items = list(items)
        if items and all(isinstance(x, (str, os.PathLike)) for x in items):
            if self.model is None:
                raise ValueError("this index has no model to embed image files with; pass "
                                 "model= when creating or loading it")
            paths = [str(p) for p in items]
            missing = [p for p in paths if not Path(p).is_file()]
            if missing:
                raise FileNotFoundError(f"{len(missing)} image file(s) not found, e.g. {missing[0]}")
            return self._vectors(self.model.embed_files(paths, batch_size=batch_size,
                                                        progress=progress)), paths
        if self.model is None:
            raise ValueError("this index has no model to embed images with; pass model=")
        return self._vectors(self.model.embed(items, batch_size=batch_size)), None

    def _vectors(self, emb) -> np.ndarray:
        emb = np.ascontiguousarray(np.asarray(emb, dtype=np.float32))
        if emb.ndim != 2 or emb.shape[1] != self.dim:
            raise ValueError(f"embeddings must be [n, {self.dim}], got shape {emb.shape}")
        if not np.isfinite(emb).all():
            raise ValueError("embeddings contain NaN or inf")
        if self.metric == "cosine":
            emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return emb

    def train(self, items, max_training_points: int = 1 << 18, seed: int = 0) -> None:
        """Trains an IVF / PQ index (no-op for Flat/HNSW or a trained index).

        Args:
          items: embeddings [n, dim] (or images / files, embedded with the model).
          max_training_points: a random subset of at most this many is used.
          seed: of that subset and of faiss's k-means.
        """
        if self.is_trained:
            return
        emb, _ = self._embed(items)
        if len(emb) > max_training_points:
            emb = emb[np.random.default_rng(seed).choice(len(emb), max_training_points, replace=False)]
        nlist = getattr(_faiss().extract_index_ivf(self.index), "nlist", 0) \
            if "IVF" in self.factory else 0
        if len(emb) < max(nlist, 1):
            raise ValueError(f"a {self.factory!r} index needs at least {nlist} training vectors "
                             f"(39 x {nlist} recommended), got {len(emb)}; use fewer lists or Flat")
        self.index.train(emb)

    def add(self, items, paths: Sequence[str] | None = None, pids=None, camids=None,
            batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Adds gallery entries.

        Args:
          items: embeddings float [n, dim], image files, or uint8 images (see `EmbeddingModel.embed`).
          paths: one per entry (default: the files themselves, else None).
          pids, camids: optional int [n] person / camera ids (default -1: unknown).
          batch_size, progress: for embedding images.

        Returns:
          int64 [n] the new entries' numbers.
        """
        emb, file_paths = self._embed(items, batch_size, progress)
        n = len(emb)
        paths = list(file_paths or [None] * n) if paths is None else [str(p) for p in paths]
        ids = []
        for name, values in (("pids", pids), ("camids", camids)):
            values = np.full(n, NO_ID, np.int64) if values is None else \
                np.asarray(values, np.int64).reshape(-1)
            if values.shape != (n,):
                raise ValueError(f"{name} has {values.size} entries for {n} embeddings")
            ids.append(values)
        if len(paths) != n:
            raise ValueError(f"paths has {len(paths)} entries for {n} embeddings")
        if not self.is_trained:
            raise ValueError(f"the {self.factory!r} index is not trained yet: call train() with "
                             "representative embeddings first (GalleryIndex.build does)")
        first = len(self)
        self.index.add(emb)
        self.paths.extend(paths)
        self.pids = np.concatenate([self.pids, ids[0]])
        self.camids = np.concatenate([self.camids, ids[1]])
        return np.arange(first, first + n, dtype=np.int64)

    # -- search ----------------------------------------------------------------------------
    def search(self, queries, k: int = 10, batch_size: int = 64) -> SearchResult:
        """The k nearest gallery entries of each query (embeddings, image files or images)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        emb, _ = self._embed(queries, batch_size)
        idx, dist = self.search_embeddings(emb, k)
        paths = [[self.paths[j] if j >= 0 else None for j in row] for row in idx]
        return SearchResult(idx, dist, paths)

    def search_embeddings(self, emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices int64 [q, k'], distances float32 [q, k']), k' = min(k, len(self))."""
        emb = self._vectors(emb)
        k = min(int(k), len(self))
        if k == 0:
            return np.zeros((len(emb), 0), np.int64), np.zeros((len(emb), 0), np.float32)
        raw, idx = self.index.search(emb, k)
        if self.metric == "euclidean":
            dist = np.sqrt(np.maximum(raw, 0.0))
        else:
            dist = np.clip(1.0 - raw, 0.0, 2.0)
        dist = np.where(idx < 0, np.inf, dist).astype(np.float32)
        order = np.lexsort((idx, dist), axis=1)  # (distance, index): evaluate()'s tie policy
        return np.take_along_axis(idx, order, 1).astype(np.int64), np.take_along_axis(dist, order, 1)

    def evaluate(self, query, q_pids, q_camids, k: int = 100, max_rank: int = 50,
                 ap: str = "market", remove_same_camera: bool = True, query_block: int = 1024):
        """CMC / mAP / mINP of `query` against this gallery from each query's k nearest entries.

        Memory is O(queries x k); with k >= len(self) (and an exact index) the result equals
        `tfreid.evaluation.evaluate` on the dense distance matrix. See
        `tfreid.evaluation.neighbors` for how truncation at k is counted.

        Args:
          query: query embeddings [q, dim] (or image files / images, embedded with the model).
          q_pids, q_camids: int [q] ids of the queries; the gallery's come from `add`.
        """
        from tfreid.evaluation.neighbors import evaluate_ranked

        if (self.pids == NO_ID).all() and len(self):
            raise ValueError("the gallery entries have no person ids (add them with pids=...)")
        emb, _ = self._embed(query)
        ranked = np.concatenate([self.search_embeddings(emb[i:i + query_block], k)[0]
                                 for i in range(0, len(emb), query_block)] or
                                [np.zeros((0, min(k, len(self))), np.int64)])
        return evaluate_ranked(ranked, q_pids, self.pids, q_camids, self.camids,
                               max_rank=max_rank, ap=ap, remove_same_camera=remove_same_camera)

    # -- files -----------------------------------------------------------------------------
    def save(self, folder) -> Path:
        """Writes the index to `folder` atomically: data files under new content-addressed
        names first, then meta.json replaced in one rename, then the old data files removed.
        A reader sees the old index or the new one, never a mix."""
        faiss = _faiss()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        blob = faiss.serialize_index(self.index).tobytes()
        paths = np.array(["" if p is None else p for p in self.paths], dtype=str)
        has_path = np.array([p is not None for p in self.paths], dtype=bool)
        buf = _npz_bytes(paths=paths, has_path=has_path, pids=self.pids, camids=self.camids)
        files = {}
        for kind, data, suffix in (("index", blob, "faiss"), ("entries", buf, "npz")):
            digest = _sha256(data)
            name = f"{kind}-{digest[:16]}.{suffix}"
            _atomic_write(folder / name, data)
            files[kind] = {"file": name, "bytes": len(data), "sha256": digest}
        meta = {"format_version": FORMAT_VERSION, "model": self.model_info, "dim": self.dim,
                "metric": self.metric, "factory": self.factory,
                "search_params": self.search_params, "count": len(self), "files": files}
        _atomic_write(folder / "meta.json", (json.dumps(meta, indent=1) + "\n").encode())
        keep = {f["file"] for f in files.values()}
        for old in list(folder.glob("index-*.faiss")) + list(folder.glob("entries-*.npz")):
            if old.name not in keep:
                old.unlink(missing_ok=True)
        return folder

    @classmethod
    def load(cls, folder, model=None, metric: str | None = None,
             search_params: str | None = None) -> "GalleryIndex":
        """Reads an index saved by `save`, checking everything before building anything.

        Args:
          folder: the saved index.
          model: the `EmbeddingModel` in use; its name, model file digest (where both sides know
            one) and embedding size must match those recorded with the index.
          metric: if given, must equal the recorded metric.
          search_params: overrides the recorded search parameters.

        Raises:
          IndexFileError: missing / unreadable meta.json, a newer format, a data file missing,
            truncated or altered (size or sha256), or contents that disagree with meta.json.
          IndexMismatchError: another model, embedding size or metric.
        """
        faiss = _faiss()
        folder = Path(folder)
        meta_path = folder / "meta.json"
        try:
            meta = json.loads(meta_path.read_text())
            version = meta["format_version"]
            files, dim, saved_metric = meta["files"], int(meta["dim"]), meta["metric"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise IndexFileError(f"{meta_path}: not a readable tfreid gallery index ({err!r})") from err
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise IndexFileError(f"{meta_path}: format_version {version!r}; this tfreid reads up "
                                 f"to {FORMAT_VERSION} (upgrade tfreid)")
        if metric is not None and metric != saved_metric:
            raise IndexMismatchError(f"{folder}: the index uses metric {saved_metric!r}, "
                                     f"{metric!r} was asked for")
        if model is not None:
            mine, theirs = model_identity(model), meta.get("model", {})
            if model.dim != dim:
                raise IndexMismatchError(f"{folder}: the index holds {dim}-d embeddings of "
                                         f"{theirs.get('name')!r}; model {mine['name']!r} embeds "
                                         f"to {model.dim}")
            if mine["name"] != theirs.get("name") or (
                    mine["sha256"] and theirs.get("sha256") and mine["sha256"] != theirs["sha256"]):
                raise IndexMismatchError(
                    f"{folder}: the index was built with model {theirs.get('name')!r} "
                    f"(sha256 {theirs.get('sha256')}), not with {mine['name']!r} (sha256 "
                    f"{mine['sha256']}); rebuild it with tools/index.py for this model")
        data = {}
        for kind in ("index", "entries"):
            entry = files.get(kind) if isinstance(files, dict) else None
            if not entry:
                raise IndexFileError(f"{meta_path}: no {kind!r} file recorded")
            path = folder / Path(entry["file"]).name
            try:
                blob = path.read_bytes()
            except OSError as err:
                raise IndexFileError(f"{path}: missing or unreadable ({err.strerror}); nothing "
                                     "was loaded") from err
            if len(blob) != entry["bytes"]:
                raise IndexFileError(f"{path}: {len(blob)} bytes, meta.json says {entry['bytes']} "
                                     "(truncated or replaced); nothing was loaded")
            if _sha256(blob) != entry["sha256"]:
                raise IndexFileError(f"{path}: sha256 differs from meta.json (altered or "
                                     "corrupt); nothing was loaded")
            data[kind] = blob
        with np.load(_BytesIO(data["entries"]), allow_pickle=False) as z:
            entries = {key: z[key] for key in ("paths", "has_path", "pids", "camids")}
        raw = faiss.deserialize_index(np.frombuffer(data["index"], dtype=np.uint8))
        count = int(meta.get("count", -1))
        expected_metric = faiss.METRIC_L2 if saved_metric == "euclidean" else faiss.METRIC_INNER_PRODUCT
        sizes = {len(entries[k]) for k in entries}
        if raw.d != dim or raw.ntotal != count or sizes != {count} or raw.metric_type != expected_metric:
            raise IndexFileError(f"{folder}: contents disagree with meta.json (faiss index d="
                                 f"{raw.d}, ntotal={raw.ntotal}, metric={raw.metric_type}; "
                                 f"entries {sorted(sizes)}; meta dim={dim}, count={count})")
        out = cls(dim, saved_metric, meta["factory"], model=model, model_info=meta.get("model"))
        out.index = raw
        out.set_search_params(meta.get("search_params", "") if search_params is None else search_params)
        out.paths = [str(p) if h else None for p, h in zip(entries["paths"], entries["has_path"])]
        out.pids, out.camids = entries["pids"].astype(np.int64), entries["camids"].astype(np.int64)
        return out


def _BytesIO(data: bytes):
    import io
    return io.BytesIO(data)


def _npz_bytes(**arrays) -> bytes:
    import io
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _atomic_write(path: Path, data: bytes) -> None:
    """Writes `data` to a temporary file beside `path`, fsyncs it and renames it over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
