"""One embedding per image, whatever the model: the serving view of a trained tfreid model.

A trained model is one of two kinds (see `tfreid.training`):

- a CNN embedding: float32 images [B, H, W, 3] in 0..255 at a FIXED size -> [B, dim];
- a stripe model (siamese LSTM / Eq. 8-9 MLP): raw images [B, h, w, 3] of any size ->
  {channel: embedding [B, k_c]}, with the LOMO / Color Names feature layers inside.

Both are seen here as a list of *branches*: (name, input size (H, W), function [B, H, W, 3] ->
[B, k]). Every image is resized on its own to each branch's size (bilinear, antialiased, the
resize the stripe trainer and the feature layers use), so images of different sizes can be
batched, and the same numbers come out of `EmbeddingModel.embed`, of the exported SavedModel
signatures (`tfreid.export`) and of `tools/evaluate.py`.

The serving embedding of C branches is

    e = concat_c( s_c / ||s_c||_2 ) / sqrt(C)        (branches in sorted name order)

so ||e|| = 1 and ||e_p - e_q||^2 = mean_c ||s_c,p/|s_c,p| - s_c,q/|s_c,q|||^2: the squared
Euclidean distance of serving embeddings is the mean of the per-channel squared distances of
unit vectors. (The paper instead fuses per-query min-max-rescaled channel distances at test
time; `tools/evaluate.py` reports both.)

With test-time flip averaging (`flip_average`, a zoo card's `input.flip_average`), a branch's raw
embedding of an image x is the mean of the unit embeddings of x and of its horizontal flip,
s = (f(x)/||f(x)|| + f(flip x)/||f(flip x)||) / 2, so the serving embedding above is their
unit-norm mean; each image costs two passes of the network.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfreid import images as image_io
from tfreid.models.stripe_deploy import stripe_branches
from tfreid.progress import bar as progress_bar


@dataclasses.dataclass(frozen=True)
class Branch:
    """One embedding branch of a model.

    Attributes:
      name: "embedding" for a CNN, the channel ("lomo", "cn") for a stripe model.
      size: (H, W) every image is resized to before `fn`.
      fn: float32 [B, H, W, 3] in 0..255 -> float32 [B, k].
      dim: k.
    """

    name: str
    size: tuple[int, int]
    fn: Callable[[tf.Tensor], tf.Tensor]
    dim: int


def model_branches(model: keras.Model) -> list[Branch]:
    """Splits a trained tfreid model into its branches (sorted by name).

    Args:
      model: a CNN embedding model (fixed-size image input, one output) or a stripe deploy
        model (dict output {channel: embedding}; its branches are the ones it declares, see
        `tfreid.models.stripe_deploy`).

    Returns:
      list of `Branch`.

    Raises:
      ValueError: for a model of neither kind (naming its input / output structure).
    """
    if isinstance(model.output, dict):
        branches = []
        for channel, (feature, network) in stripe_branches(model).items():
            config = getattr(feature, "config", None)
            if config is None or not hasattr(config, "height"):
                raise ValueError(f"model {model.name!r}: layer {channel!r} is not a feature layer "
                                 "(LomoLayer / ColorNamesLayer) with an input size config.height/width")

            def fn(images, feature=feature, network=network):
                return network(feature(images), training=False)

            branches.append(Branch(channel, (int(config.height), int(config.width)), fn,
                                   int(network.outputs[0].shape[-1])))
        return branches
    shape = tuple(model.inputs[0].shape)
    if len(model.inputs) != 1 or len(shape) != 4 or shape[3] != 3 or None in shape[1:3]:
        raise ValueError(f"model {model.name!r}: expected a fixed-size image input [B, H, W, 3], "
                         f"got inputs {[tuple(t.shape) for t in model.inputs]}.")
    if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
        raise ValueError(f"model {model.name!r}: expected one embedding output [B, dim], got "
                         f"{[tuple(t.shape) for t in model.outputs]}.")
    return [Branch("embedding", (int(shape[1]), int(shape[2])),
                   lambda images: model(images, training=False), int(model.outputs[0].shape[-1]))]


class EmbeddingPipeline:
    """Graph-safe image -> serving embedding functions of one model (see the module docstring).

    Args:
      model: a trained tfreid model (see `model_branches`).
      antialias: antialiased bilinear resize (what the stripe trainer used).
      flip_average: average each branch over the image and its horizontal flip (see the module
        docstring).
    """

    def __init__(self, model: keras.Model, antialias: bool = True, flip_average: bool = False):
        self.model = model
        self.antialias = bool(antialias)
        self.flip_average = bool(flip_average)
        self.branches = model_branches(model)
        self.dim = sum(b.dim for b in self.branches)

    def resize_batch(self, images: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """uint8/float [B, h, w, 3] -> one float32 [B, H_b, W_b, 3] per branch (0..255)."""
        images = tf.cast(images, tf.float32)
        # A static size that already matches is not resized (an exact no-op otherwise; this
        # keeps ScaleAndTranslate, which ONNX lacks, out of fixed-size graphs).
        if self.antialias:
            return tuple(image_io.resize(images, b.size) for b in self.branches)
        return tuple(images if tuple(images.shape[1:3]) == b.size else
                     tf.image.resize(images, b.size, "bilinear") for b in self.branches)

    def resize_one(self, image: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """uint8/float [h, w, 3] -> one float32 [H_b, W_b, 3] per branch."""
        return tuple(r[0] for r in self.resize_batch(image[tf.newaxis]))

    def decode_one(self, contents: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """Encoded image (scalar string; `tfreid.images.SERVING_FORMATS`) -> one float32
        [H_b, W_b, 3] per branch, decoded as `tfreid.images.decode_encoded` (PIL's pixels)."""
        return self.resize_one(image_io.decode_encoded(contents))

    def raw(self, resized: Sequence[tf.Tensor]) -> dict[str, tf.Tensor]:
        """Per-branch resized batches -> {branch: raw embedding [B, k_b]} (not normalised; with
        flip averaging, the mean of the two views' unit embeddings)."""
        return {b.name: self._branch_raw(b, x) for b, x in zip(self.branches, resized)}

    def _branch_raw(self, branch: Branch, images: tf.Tensor) -> tf.Tensor:
        if not self.flip_average:
            return tf.cast(branch.fn(images), tf.float32)
        # One call on [images; flipped images] (axis 2 is the width).
        both = tf.cast(branch.fn(tf.concat([images, tf.reverse(images, axis=[2])], axis=0)),
                       tf.float32)
        image, flipped = tf.split(tf.math.l2_normalize(both, axis=-1, epsilon=1e-12), 2, axis=0)
        return (image + flipped) / 2.0

    def combine(self, raw: dict[str, tf.Tensor]) -> tf.Tensor:
        """{branch: [B, k_b]} -> serving embedding [B, dim] (unit norm, see module docstring)."""
        parts = [tf.math.l2_normalize(raw[b.name], axis=-1, epsilon=1e-12) for b in self.branches]
        joined = parts[0] if len(parts) == 1 else tf.concat(parts, axis=-1)
        return joined / math.sqrt(len(parts)) if len(parts) > 1 else joined

    def embed_batch(self, images: tf.Tensor) -> tf.Tensor:
        """float32/uint8 images [B, h, w, 3] (0..255, one size) -> embedding [B, dim]."""
        return self.combine(self.raw(self.resize_batch(images)))

    def embed_encoded(self, contents: tf.Tensor) -> tf.Tensor:
        """string [B] of encoded images (any sizes) -> embedding [B, dim]."""
        specs = tuple(tf.TensorSpec([*b.size, 3], tf.float32) for b in self.branches)
        resized = tf.map_fn(self.decode_one, contents, fn_output_signature=specs)
        return self.combine(self.raw(resized))


def _as_image_list(images) -> list[np.ndarray]:
    """A batch [n, h, w, 3] or a list of [h_i, w_i, 3] arrays -> list of arrays, checked
    against the pixel contract (`tfreid.images.check_pixels`: RGB in 0..255, finite)."""
    if isinstance(images, (np.ndarray, tf.Tensor)) and np.ndim(images) == 4:
        images = list(np.asarray(images))
    elif isinstance(images, (np.ndarray, tf.Tensor)) and np.ndim(images) == 3:
        raise ValueError(f"embed expects a batch [n, h, w, 3] or a list of images; got one image "
                         f"of shape {tuple(np.shape(images))} (wrap it in a list).")
    out = [np.asarray(image) for image in images]
    image_io.check_pixels(out, "images")
    return out


class EmbeddingModel:
    """A trained model ready to use: `embed`, `distance`, `rank` (what `tfreid.zoo.load` returns).

    Attributes:
      keras_model: the trained Keras model (for fine-tuning; see `model_branches` for its kinds).
      card: the zoo card (dict) or, for a run folder, a minimal description.
      pipeline: the `EmbeddingPipeline` (branches, sizes, graph functions).
      dim: embedding size.
    """

    def __init__(self, keras_model: keras.Model, card: dict | None = None, antialias: bool = True,
                 flip_average: bool = False):
        self.keras_model = keras_model
        self.card = dict(card or {})
        self.name = self.card.get("name", keras_model.name)
        self.pipeline = EmbeddingPipeline(keras_model, antialias, flip_average)
        self.dim = self.pipeline.dim
        sizes = [(None, None, 3)]
        self._resize_one = tf.function(self.pipeline.resize_one, reduce_retracing=True,
                                       input_signature=[tf.TensorSpec(sizes[0], tf.float32)])
        self._raw = tf.function(lambda *xs: self.pipeline.raw(xs), reduce_retracing=True)

    def __repr__(self):
        return (f"EmbeddingModel({self.name!r}, dim={self.dim}, branches="
                f"{[(b.name, b.size) for b in self.pipeline.branches]})")

    def _embed_resized(self, batches, with_raw: bool):
        raw = self._raw(*batches)
        emb = self.pipeline.combine(raw).numpy()
        return (emb, {k: v.numpy() for k, v in raw.items()}) if with_raw else emb

    def embed(self, images, batch_size: int = 64, with_raw: bool = False):
        """L2-normalised embeddings of images.

        Args:
          images: uint8 (or float 0..255) RGB images: a batch [n, h, w, 3] or a list of
            [h_i, w_i, 3] arrays of any sizes.
          batch_size: images per model call.
          with_raw: also return {branch: raw embedding [n, k_b]} (per-channel, not normalised).

        Returns:
          float32 [n, dim] (and the raw dict when asked).
        """
        images = _as_image_list(images)
        chunks, raws = [], []
        for start in range(0, len(images), batch_size):
            resized = [self._resize_one(tf.convert_to_tensor(im, tf.float32))
                       for im in images[start:start + batch_size]]
            batches = [tf.stack([r[i] for r in resized]) for i in range(len(self.pipeline.branches))]
            emb, raw = self._embed_resized(batches, True)
            chunks.append(emb)
            raws.append(raw)
        return self._finish(chunks, raws, with_raw)

    def embed_files(self, paths: Sequence[str], batch_size: int = 64, with_raw: bool = False,
                    progress: bool = False):
        """Like `embed` for image files, read by `tfreid.images.read_image` (any format PIL
        reads, PIL's pixels) on a few threads.

        Raises:
          FileNotFoundError / tfreid.images.UnreadableImageError: naming the file.
        """
        from concurrent.futures import ThreadPoolExecutor

        paths = [str(p) for p in paths]
        bar = progress_bar(len(paths), "image") if progress else None
        chunks, raws = [], []
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            for start in range(0, len(paths), batch_size):
                decoded = list(pool.map(image_io.read_image, paths[start:start + batch_size]))
                emb, raw = self.embed(decoded, batch_size=batch_size, with_raw=True)
                chunks.append(emb)
                raws.append(raw)
                if bar is not None:
                    bar.add(len(emb))
        return self._finish(chunks, raws, with_raw)

    def _finish(self, chunks, raws, with_raw):
        emb = np.concatenate(chunks) if chunks else np.zeros((0, self.dim), np.float32)
        if not with_raw:
            return emb
        raw = {b.name: (np.concatenate([r[b.name] for r in raws]) if raws
                        else np.zeros((0, b.dim), np.float32)) for b in self.pipeline.branches}
        return emb, raw

    @staticmethod
    def distance(a, b) -> np.ndarray:
        """Euclidean distances [n, m] between embeddings a [n, dim] and b [m, dim]."""
        from tfreid.evaluation import distance_matrix
        return distance_matrix(a, b, "euclidean")

    def rank(self, query_images, gallery_images, top_k: int = 10):
        """Nearest gallery images of each query.

        Args:
          query_images, gallery_images: as for `embed`.
          top_k: neighbours per query (at most the gallery size).

        Returns:
          (indices int64 [q, k] into the gallery, nearest first; distances float32 [q, k]),
          k = min(top_k, gallery size).
        """
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        dist = self.distance(self.embed(query_images), self.embed(gallery_images))
        k = min(top_k, dist.shape[1])
        order = np.argsort(dist, axis=1, kind="stable")[:, :k]
        return order.astype(np.int64), np.take_along_axis(dist, order, axis=1).astype(np.float32)


def load_keras_model(path) -> keras.Model:
    """Loads a tfreid `.keras` model (registers tfreid's layers first; safe mode, no pickle)."""
    import tfreid.features  # noqa: F401  (registers custom layers)
    import tfreid.losses  # noqa: F401
    import tfreid.models  # noqa: F401
    return keras.saving.load_model(str(path), compile=False, safe_mode=True)
