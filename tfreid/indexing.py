"""The workflow behind tools/index.py and tools/search.py: resumable gallery indexing of a folder.

`build_resumable` embeds the images in chunks saved under <out>/embeddings/ (one .npz each,
written atomically, plain arrays), so an interrupted run repeated with the same command only
embeds the chunks that are missing; then it builds the faiss index (`tfreid.search`) from all
chunks and saves it into <out>/. A manifest records the model, the image list's digest and the
chunk size: a run with other images or another model is refused instead of mixing embeddings.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from tfreid.errors import UserError
from tfreid.progress import bar as progress_bar
from tfreid.search import GalleryIndex, IndexMismatchError, _atomic_write, list_images, model_identity

ID_PATTERNS = {
    "market": re.compile(r"^(?P<pid>-1|\d+)_c(?P<camid>\d+)s\d+_"),
    "duke": re.compile(r"^(?P<pid>-1|\d+)_c(?P<camid>\d+)_f\d+"),
}


def image_paths(images_dir: str | None, list_file: str | None) -> list[str]:
    """Gallery image paths from a folder (sorted, recursive) or a file of one path per line."""
    if images_dir:
        if not Path(images_dir).is_dir():
            raise UserError(f"--images={images_dir}: no such folder")
        paths = list_images(images_dir)
        if not paths:
            raise UserError(f"--images={images_dir}: no .jpg/.jpeg/.png/.bmp/.gif files in it")
        return paths
    try:
        lines = Path(list_file).read_text().splitlines()
    except OSError as err:
        raise UserError(f"--list={list_file}: cannot read it ({err.strerror})") from None
    paths = [line.strip() for line in lines if line.strip()]
    missing = [p for p in paths if not Path(p).is_file()]
    if not paths or missing:
        raise UserError(f"--list={list_file}: " + (f"{len(missing)} listed file(s) do not exist, "
                                                   f"e.g. {missing[0]}" if missing else "empty"))
    return paths


def parse_ids(paths: Sequence[str], kind: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(pids, 0-based camids) parsed from Market / Duke file names, or (None, None) for "none"."""
    if kind == "none":
        return None, None
    pattern = ID_PATTERNS[kind]
    pids, camids = [], []
    for path in paths:
        match = pattern.match(Path(path).name)
        if match is None:
            raise UserError(f"--ids={kind}: file name {Path(path).name!r} does not follow the "
                            f"{kind} pattern ({pattern.pattern})")
        pids.append(int(match.group("pid")))
        camids.append(int(match.group("camid")) - 1)
    return np.asarray(pids, np.int64), np.asarray(camids, np.int64)


def load_model(zoo: str | None, run: str | None):
    """The `EmbeddingModel` of a zoo name or a run folder."""
    from tfreid import zoo as zoo_module
    return zoo_module.load(zoo) if zoo else zoo_module.from_run(run)


def _digest(paths: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(paths).encode()).hexdigest()


def embed_chunks(model, paths: Sequence[str], folder: Path, chunk_size: int = 2048,
                 batch_size: int = 64, log=print) -> np.ndarray:
    """Embeddings [n, dim] of `paths`, computed chunk by chunk and kept in `folder` (resumable).

    Raises:
      UserError: `folder` holds chunks of other images, another model or chunk size.
    """
    if chunk_size < 1:
        raise UserError(f"--chunk_size must be >= 1, got {chunk_size}")
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"model": model_identity(model), "images_sha256": _digest(paths),
                "count": len(paths), "chunk_size": chunk_size, "dim": model.dim}
    manifest_path = folder / "manifest.json"
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        if old != manifest:
            changed = sorted(k for k in manifest if old.get(k) != manifest[k])
            raise UserError(f"{folder} holds embeddings of another job (different {changed}); "
                            "use another --out, or delete that folder to start over")
    else:
        _atomic_write(manifest_path, json.dumps(manifest, indent=1).encode())
    starts = range(0, len(paths), chunk_size)
    out = np.empty((len(paths), model.dim), np.float32)
    todo = []
    for number, start in enumerate(starts):
        path = folder / f"chunk-{number:06d}.npz"
        stop = min(start + chunk_size, len(paths))
        try:
            with np.load(path, allow_pickle=False) as z:
                emb = z["embeddings"]
            if emb.shape == (stop - start, model.dim):
                out[start:stop] = emb
                continue
        except (OSError, ValueError, KeyError):
            pass  # missing or partial: embed again
        todo.append((path, start, stop))
    done = len(paths) - sum(stop - start for _, start, stop in todo)
    if done:
        log(f"Resuming: {done} of {len(paths)} images already embedded in {folder}")
    bar = progress_bar(len(paths) - done, "image")  # ETA of the work left
    for path, start, stop in todo:
        emb = model.embed_files(paths[start:stop], batch_size=batch_size)
        buf = _npz(embeddings=emb.astype(np.float32))
        _atomic_write(path, buf)
        out[start:stop] = emb
        bar.add(stop - start)
    return out


def _npz(**arrays) -> bytes:
    import io
    b = io.BytesIO()
    np.savez(b, **arrays)
    return b.getvalue()


def build_resumable(model, paths: Sequence[str], out, factory: str = "Flat",
                    metric: str = "euclidean", search_params: str = "", ids: str = "none",
                    chunk_size: int = 2048, batch_size: int = 64, seed: int = 0,
                    log=print) -> GalleryIndex:
    """Embeds `paths` (resumably, see the module docstring) and writes the index into `out`."""
    out = Path(out)
    pids, camids = parse_ids(paths, ids)
    start = time.perf_counter()
    emb = embed_chunks(model, list(paths), out / "embeddings", chunk_size, batch_size, log)
    log(f"{len(emb)} embeddings ready in {time.perf_counter() - start:.1f} s; building the "
        f"{factory!r} index")
    try:
        index = GalleryIndex.for_model(model, factory, metric, search_params)
        index.train(emb, seed=seed)
    except ValueError as err:
        raise UserError(f"--factory={factory}: {err}") from None
    for i in range(0, len(emb), 65536):
        index.add(emb[i:i + 65536], paths=paths[i:i + 65536],
                  pids=None if pids is None else pids[i:i + 65536],
                  camids=None if camids is None else camids[i:i + 65536])
    index.save(out)
    return index


def open_index(folder: str, zoo: str | None = None, run: str | None = None,
               search_params: str | None = None) -> GalleryIndex:
    """Loads an index with its model (the recorded one unless zoo / run name another)."""
    meta_path = Path(folder) / "meta.json"
    try:
        recorded = json.loads(meta_path.read_text()).get("model", {})
    except (OSError, ValueError) as err:
        raise UserError(f"--index={folder}: no readable index there ({meta_path}: {err})") from None
    if not zoo and not run:
        run = recorded.get("run")
        zoo = None if run else recorded.get("name")
    model = load_model(zoo, run)
    try:
        return GalleryIndex.load(folder, model=model, search_params=search_params)
    except IndexMismatchError as err:
        raise UserError(str(err)) from None


def search_files(index: GalleryIndex, queries: Sequence[str], top_k: int):
    missing = [q for q in queries if not Path(q).is_file()]
    if missing:
        raise UserError(f"--query: no such file {missing[0]}")
    return index.search(list(queries), k=top_k)


def draw(index: GalleryIndex, queries: Sequence[str], result, out) -> Path:
    """Ranked-list PNG (tfreid.viz.plot_ranked_lists) of the search result.

    Frames are green / red only where the gallery has person ids; a query has no id here, so
    its matches cannot be judged and every frame is red ("identity unknown").
    """
    from tfreid.viz import plot_ranked_lists

    rows = [[j for j in row if j >= 0] for row in result.indices]
    gallery = sorted({j for row in rows for j in row})
    if any(index.paths[j] is None for j in gallery):
        raise UserError("the index entries have no image paths to draw (added as embeddings)")
    col = {j: c for c, j in enumerate(gallery)}
    dist = np.full((len(rows), len(gallery)), np.inf)
    for r, (row, d) in enumerate(zip(rows, result.distances)):
        for j, v in zip(row, d):
            dist[r, col[j]] = v
    g_pids = np.where(index.pids[gallery] < 0, -2, index.pids[gallery])  # -1 would be junk
    return plot_ranked_lists(list(queries), [index.paths[j] for j in gallery], dist,
                             np.full(len(rows), -3), g_pids, np.zeros(len(rows), np.int64),
                             index.camids[gallery], out, top_k=max(len(r) for r in rows),
                             query_indices=list(range(len(rows))),
                             title=f"{index.model_info.get('name')}: {len(index)} gallery images")
