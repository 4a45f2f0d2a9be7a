"""Export for serving: TensorFlow Serving SavedModels and ONNX.

SavedModel layout (what TF Serving's `--model_base_path` points at):

    <base>/<model_name>/<version>/saved_model.pb
    <base>/<model_name>/<version>/variables/...

tag "serve", two signatures, every step of preprocessing inside the graph (resize, LOMO /
Color Names for stripe models, normalisation), so a client needs nothing but TensorFlow:

- ``serving_default``: ``images`` float32 [batch, height, width, 3] RGB in 0..255, ANY height and
  width (one size per request; each model resizes to its own input size(s): 256x128 for the CNN
  zoo models, 128x48 LOMO and 128x64 Color Names for the stripe models) -> ``embedding``
  float32 [batch, dim];
- ``embed_encoded``: ``images`` string [batch] of encoded images (`tfreid.images.SERVING_FORMATS`:
  JPEG decoded with the accurate IDCT, PNG, GIF, uncompressed BMP; PIL's pixels), each of its own
  size (REST clients send them as {"b64": ...}) -> ``embedding`` float32 [batch, dim].

``embedding`` is L2-normalised (multi-channel stripe models: see `tfreid.serving`). Compare
embeddings with the Euclidean distance. See docs/SERVING.md for the REST request.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfreid.serving import EmbeddingModel, EmbeddingPipeline

SIGNATURES = ("serving_default", "embed_encoded")
META_FILE = "tfreid_export.json"  # beside saved_model.pb: dim, branches, card name (informative)


def _pipeline(model) -> tuple[EmbeddingPipeline, dict]:
    if isinstance(model, EmbeddingModel):
        return model.pipeline, model.card
    if isinstance(model, keras.Model):
        return EmbeddingPipeline(model), {}
    raise TypeError(f"expected a keras.Model or an EmbeddingModel (tfreid.zoo.load), got {type(model)}")


def version_dir(base_dir, model_name: str, version: int | None = None) -> Path:
    """`<base>/<model_name>/<version>`; version None = one more than the highest existing one."""
    if not model_name or "/" in model_name or model_name.startswith("."):
        raise ValueError(f"model_name must be a plain folder name, got {model_name!r}")
    root = Path(base_dir) / model_name
    if version is None:
        existing = [int(p.name) for p in root.glob("*") if p.is_dir() and p.name.isdigit()]
        version = max(existing, default=0) + 1
    if int(version) < 1:
        raise ValueError(f"version must be a positive integer (TF Serving's convention), got {version}")
    return root / str(int(version))


def export_saved_model(model, base_dir, model_name: str, version: int | None = None,
                       overwrite: bool = False) -> Path:
    """Writes a TF Serving SavedModel (see the module docstring).

    Args:
      model: a trained tfreid keras.Model or an `EmbeddingModel` (e.g. `tfreid.zoo.load(name)`).
      base_dir: TF Serving model base folder.
      model_name: sub-folder name (the name clients call: /v1/models/<model_name>:predict).
      version: integer version; None = next free version.
      overwrite: replace an existing version folder (else it is an error).

    Returns:
      The version folder.
    """
    pipeline, card = _pipeline(model)
    target = version_dir(base_dir, model_name, version)
    if target.exists():
        if not overwrite:
            raise FileExistsError(f"{target} exists; pass overwrite=True (--overwrite) or another version")
        shutil.rmtree(target)

    archive = keras.export.ExportArchive()
    archive.track(pipeline.model)
    archive.add_endpoint(
        "serving_default",
        lambda images: {"embedding": pipeline.embed_batch(images)},
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="images")])
    archive.add_endpoint(
        "embed_encoded",
        lambda images: {"embedding": pipeline.embed_encoded(images)},
        input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    archive.write_out(str(tmp), verbose=False)
    meta = {"name": card.get("name", pipeline.model.name), "dim": pipeline.dim,
            "signatures": list(SIGNATURES),
            "branches": [{"name": b.name, "height": b.size[0], "width": b.size[1], "dim": b.dim}
                         for b in pipeline.branches],
            "antialias": pipeline.antialias, "flip_average": pipeline.flip_average,
            "distance": "euclidean"}
    (tmp / "assets.extra").mkdir(exist_ok=True)
    (tmp / "assets.extra" / META_FILE).write_text(json.dumps(meta, indent=1))
    os.replace(tmp, target)  # TF Serving polls the base folder: never show a half-written version
    return target


def export_onnx(model, path, opset: int = 17, verify: bool = True, seed: int = 0) -> Path:
    """Writes an ONNX model of the embedding (needs the `[onnx]` extra: tf2onnx).

    ONNX has no antialiased resize (TF's ScaleAndTranslate) and no image decoder, so the ONNX
    graph starts after the resize: one float32 input per branch, images [batch, H_b, W_b, 3] in
    0..255 already resized to that branch's size (named "images" for a one-branch model, else
    "images_<branch>"), e.g. with `tf.image.resize(..., antialias=True)` or PIL's bilinear
    reduce; output "embedding" [batch, dim] as the SavedModel's.

    Args:
      model: keras.Model or `EmbeddingModel`.
      path: output `.onnx` file.
      opset: ONNX opset.
      verify: run the file with onnxruntime on random images and compare with TensorFlow
        (a conversion that computes something else is deleted and raises).
      seed: seed of the verification images.

    Returns:
      path.

    Raises:
      ImportError: tf2onnx (or, with verify, onnxruntime) missing: pip install 'tfreid[onnx]'.
      RuntimeError: an op of the model has no ONNX conversion (named in the message), or the
        converted model's embeddings differ from TensorFlow's by more than 1e-4.
    """
    try:
        import tf2onnx
    except ImportError as err:
        raise ImportError("ONNX export needs tf2onnx: pip install 'tfreid[onnx]' "
                          f"(tf2onnx, onnxruntime); import failed: {err}") from err
    pipeline, _ = _pipeline(model)
    specs = onnx_input_specs(pipeline)
    fn = tf.function(lambda *xs: {"embedding": pipeline.combine(pipeline.raw(xs))},
                     input_signature=specs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        tf2onnx.convert.from_function(fn, input_signature=specs, opset=opset, output_path=str(path))
    except Exception as err:  # tf2onnx raises bare Exceptions for graphs it cannot handle
        raise RuntimeError(f"tf2onnx could not convert {pipeline.model.name!r}: {err}") from err
    unsupported = unsupported_onnx_ops(path)
    if unsupported:
        path.unlink(missing_ok=True)  # tf2onnx keeps such ops as-is; onnxruntime refuses the file
        raise RuntimeError(
            f"tf2onnx has no ONNX conversion for the TensorFlow ops {unsupported} of "
            f"{pipeline.model.name!r} (branches {[b.name for b in pipeline.branches]}).")
    if verify:
        rng = np.random.default_rng(seed)
        inputs = {spec.name: rng.integers(0, 256, (2, *spec.shape[1:])).astype(np.float32)
                  for spec in specs}
        expected = fn(*inputs.values())["embedding"].numpy()
        got = onnx_embed(path, inputs)
        err = float(np.max(np.abs(got - expected))) if np.all(np.isfinite(got)) else float("nan")
        if not err <= 1e-4:
            path.unlink(missing_ok=True)
            raise RuntimeError(
                f"the ONNX conversion of {pipeline.model.name!r} (branches "
                f"{[b.name for b in pipeline.branches]}) computes other embeddings than "
                f"TensorFlow (max abs difference {err}); not written.")
    return path


def unsupported_onnx_ops(path) -> list[str]:
    """Op types of an ONNX file (sub-graphs included) that are not standard ONNX ops."""
    import onnx

    found = set()

    def visit(graph):
        for node in graph.node:
            if node.domain in ("", "ai.onnx") and not onnx.defs.has(node.op_type):
                found.add(node.op_type)
            for attr in node.attribute:
                for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    visit(sub)

    visit(onnx.load(str(path)).graph)
    return sorted(found)


def onnx_input_specs(pipeline: EmbeddingPipeline) -> list[tf.TensorSpec]:
    """The ONNX model's inputs: float32 [None, H_b, W_b, 3] per branch."""
    single = len(pipeline.branches) == 1
    return [tf.TensorSpec([None, *b.size, 3], tf.float32,
                          name="images" if single else f"images_{b.name}")
            for b in pipeline.branches]


def onnx_embed(path, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Runs an exported ONNX model with onnxruntime.

    Args:
      path: the `.onnx` file.
      inputs: {input name: float32 [B, H_b, W_b, 3]} (see `export_onnx`).

    Returns:
      float32 [B, dim].
    """
    import onnxruntime as ort
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    missing = sorted(set(names) - set(inputs))
    if missing:
        raise ValueError(f"{path}: missing ONNX inputs {missing}; the model takes {names}")
    return session.run(None, {n: np.asarray(inputs[n], np.float32) for n in names})[0]
