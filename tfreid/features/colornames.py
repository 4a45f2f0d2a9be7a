"""Colour Names (van de Weijer et al., IEEE TIP 2009) bag-of-words stripe features.

As used by the siamese LSTM paper (Varior et al., ECCV 2016) after the Market-1501 BoW
baseline (Zheng et al., ICCV 2015):

1. Every pixel's RGB (0..255) indexes the 32,768 x 11 ``w2c`` table at row
   ``R//8 + 32*(G//8) + 1024*(B//8)``, giving a distribution over the 11 colour names
   (black, blue, brown, grey, green, orange, pink, purple, red, white, yellow).
2. A 4x4 patch (step 4) descriptor is the mean of its pixels' distributions (11-d).
3. Patch descriptors are assigned to a codebook learned by k-means (k-means++ init, seeded; see
   `codebook.fit_codebook`) on patches of training images.
4. The assignments of the patches of each horizontal stripe are summed into that stripe's
   histogram (16 stripes for a 128x64 image: 2 patch rows x 16 patch columns each).

Choices (all in `ColorNamesConfig`):
- assignment "soft" (default): each patch votes for its ``knn`` (5) nearest words with weights
  proportional to ``exp(-d^2 / (2 sigma^2))`` summing to 1 (sigma 0.05, about the median
  distance to the 5th nearest word of a 350-word CUHK03 codebook), the "multiple assignment" of
  the Market-1501 paper, which reduces quantisation noise; "hard": one vote for the nearest
  word (that paper's plain baseline). Both cost about the same (votes go into the stripe
  histograms with one weighted bincount).
- burstiness "sqrt" (default): element-wise square root of each stripe histogram (power-law
  normalisation, damps words repeated over large uniform regions such as a shirt); or "none".
- normalize "l2" (default): L2 normalisation of each stripe histogram; or "l1", "none".
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfreid import paths
from tfreid.images import resize as resize_images

W2C_ROWS = 32768
NUM_COLOR_NAMES = 11
COLOR_NAMES = ("black", "blue", "brown", "grey", "green", "orange", "pink", "purple", "red",
               "white", "yellow")
W2C_FILES = ("w2c.npy", "w2c.mat")
ASSIGNMENTS = ("soft", "hard")
BURSTINESS = ("sqrt", "none")
NORMALIZATIONS = ("l2", "l1", "none")


@dataclasses.dataclass(frozen=True)
class ColorNamesConfig:
    """Colour Names stripe bag-of-words hyper-parameters (see the module docstring).

    Attributes:
      height, width: images are resized to this size (128x64 as in the siamese LSTM paper).
      patch_size, patch_step: square patches, in pixels.
      num_stripes: horizontal stripes; patch row r belongs to stripe r * num_stripes // rows.
      assignment: "soft" or "hard".
      knn: words per patch for soft assignment.
      sigma: Gaussian bandwidth of soft assignment (distance units of 11-d colour-name vectors).
      burstiness: "sqrt" or "none".
      normalize: per-stripe "l2", "l1" or "none".
    """

    height: int = 128
    width: int = 64
    patch_size: int = 4
    patch_step: int = 4
    num_stripes: int = 16
    assignment: str = "soft"
    knn: int = 5
    sigma: float = 0.05
    burstiness: str = "sqrt"
    normalize: str = "l2"

    def __post_init__(self):
        for name, value, allowed in (("assignment", self.assignment, ASSIGNMENTS),
                                     ("burstiness", self.burstiness, BURSTINESS),
                                     ("normalize", self.normalize, NORMALIZATIONS)):
            if value not in allowed:
                raise ValueError(f"ColorNamesConfig.{name} must be one of {allowed}, got {value!r}.")
        if self.patch_size < 1 or self.patch_step < 1:
            raise ValueError("ColorNamesConfig.patch_size and patch_step must be >= 1, got "
                             f"{self.patch_size} and {self.patch_step}.")
        if self.height < self.patch_size or self.width < self.patch_size:
            raise ValueError(f"ColorNamesConfig: image {self.height}x{self.width} is smaller than "
                             f"patch_size {self.patch_size}.")
        if not 1 <= self.num_stripes <= self.patch_rows:
            raise ValueError(f"ColorNamesConfig.num_stripes must be in [1, {self.patch_rows}] (patch "
                             f"rows of a {self.height}-pixel-high image), got {self.num_stripes}.")
        if self.knn < 1 or self.sigma <= 0:
            raise ValueError(f"ColorNamesConfig needs knn >= 1 and sigma > 0, got knn={self.knn}, "
                             f"sigma={self.sigma}.")

    @property
    def patch_rows(self) -> int:
        return (self.height - self.patch_size) // self.patch_step + 1

    @property
    def patch_cols(self) -> int:
        return (self.width - self.patch_size) // self.patch_step + 1

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def validate_w2c(table, source: str = "the w2c table") -> np.ndarray:
    """Checks a w2c table and returns it as float32 [32768, 11].

    Raises:
      ValueError: naming `source` when the shape is not [32768, 11] or values are not finite
        non-negative numbers.
    """
    try:
        table = np.asarray(table, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: could not read a numeric array ({err}); expected a float "
                         f"array of shape [{W2C_ROWS}, {NUM_COLOR_NAMES}].") from err
    if table.shape != (W2C_ROWS, NUM_COLOR_NAMES):
        raise ValueError(f"{source}: expected a w2c table of shape [{W2C_ROWS}, {NUM_COLOR_NAMES}], "
                         f"got {list(table.shape)}.")
    if not np.all(np.isfinite(table)) or table.min() < 0:
        raise ValueError(f"{source}: the w2c table must hold finite non-negative probabilities.")
    return table


def load_w2c(path: str | os.PathLike | None = None, data_dir=None) -> np.ndarray:
    """Loads the Colour Names table.

    Args:
      path: a ``.npy`` (read with allow_pickle=False) or ``.mat`` file (variable ``w2c``), or a
        folder holding w2c.npy / w2c.mat. None: ``<data root>/colornames/`` where the data root
        is `data_dir` or ``$TFREID_DATA``.
      data_dir: data root used when `path` is None.

    Returns:
      float32 [32768, 11].

    Raises:
      FileNotFoundError / ValueError naming the path and the expected shape.
    """
    if path is None:
        path = paths.data_root(data_dir) / "colornames"
    path = Path(path).expanduser()
    if path.is_dir():
        candidates = [path / name for name in W2C_FILES if (path / name).is_file()]
        if not candidates:
            raise FileNotFoundError(f"No Colour Names table in {str(path)!r}: expected one of "
                                    f"{W2C_FILES} holding a [{W2C_ROWS}, {NUM_COLOR_NAMES}] array.")
        path = candidates[0]
    if not path.is_file():
        raise FileNotFoundError(f"Colour Names table {str(path)!r} does not exist (expected a .npy or "
                                f".mat file with a [{W2C_ROWS}, {NUM_COLOR_NAMES}] array).")
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".mat"):
        raise ValueError(f"Colour Names table {str(path)!r}: unknown extension {suffix!r}, "
                         "expected .npy or .mat.")
    try:
        if suffix == ".npy":
            table = np.load(path, allow_pickle=False)
        else:
            import scipy.io
            contents = scipy.io.loadmat(path)
            table = contents.get("w2c")
    except Exception as err:   # corrupt file, pickled object array, ...: say which file
        raise ValueError(f"Could not read the Colour Names table {str(path)!r}: {err}") from err
    if table is None:
        raise ValueError(f"{str(path)!r} has no variable 'w2c' (found "
                         f"{sorted(k for k in contents if not k.startswith('__'))}).")
    return validate_w2c(table, repr(str(path)))


def w2c_index(rgb):
    """Row of the w2c table for integer RGB values: R//8 + 32*(G//8) + 1024*(B//8).

    Args:
      rgb: int array or tensor [..., 3] with values in 0..255.

    Returns:
      int [...] in [0, 32768).
    """
    if isinstance(rgb, np.ndarray):
        q = rgb.astype(np.int64) // 8
    else:
        q = tf.cast(rgb, tf.int32) // 8
    return q[..., 0] + 32 * q[..., 1] + 1024 * q[..., 2]


def prepare_images(images, height: int, width: int) -> tf.Tensor:
    """uint8 / float [batch, h, w, 3] in [0, 255] -> int32 [batch, height, width, 3] in 0..255."""
    images = tf.convert_to_tensor(images)
    if images.shape.rank != 4 or images.shape[-1] != 3:
        raise ValueError(f"Expected images [batch, height, width, 3], got shape {images.shape}.")
    if tuple(images.shape[1:3]) != (height, width):
        images = resize_images(images, (height, width))
    if images.dtype.is_integer:
        return tf.clip_by_value(tf.cast(images, tf.int32), 0, 255)
    # Float pixels: round to the nearest integer level, as an 8-bit image would store them.
    return tf.cast(tf.clip_by_value(tf.round(tf.cast(images, tf.float32)), 0.0, 255.0), tf.int32)


def pixel_color_names(rgb: tf.Tensor, table: tf.Tensor) -> tf.Tensor:
    """int32 [B, H, W, 3] in 0..255, table [32768, 11] -> float32 [B, H, W, 11]."""
    return tf.gather(tf.convert_to_tensor(table, tf.float32), w2c_index(rgb))


def patch_descriptors(images, table, config: ColorNamesConfig | None = None) -> tf.Tensor:
    """Mean colour-name distribution of every patch.

    Args:
      images: uint8 / float [B, h, w, 3] RGB in [0, 255], any size.
      table: float32 [32768, 11].
      config: ColorNamesConfig (size, patch_size, patch_step).

    Returns:
      float32 [B, patch_rows, patch_cols, 11] ([B, 32, 16, 11] for 128x64).
    """
    config = config or ColorNamesConfig()
    names = pixel_color_names(prepare_images(images, config.height, config.width), table)
    return tf.nn.avg_pool2d(names, config.patch_size, config.patch_step, "VALID")


def assign_words(descriptors: tf.Tensor, codebook: tf.Tensor,
                 config: ColorNamesConfig | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """Votes of each patch for codebook words.

    Args:
      descriptors: float32 [..., 11].
      codebook: float32 [num_words, 11].

    Returns:
      (words int32 [..., v], weights float32 [..., v]) with v = 1 for hard assignment (weight 1)
      and v = knn for soft assignment (weights summing to 1 per patch).
    """
    config = config or ColorNamesConfig()
    codebook = tf.convert_to_tensor(codebook, tf.float32)
    sq_dist = (tf.reduce_sum(tf.square(descriptors), -1, keepdims=True)
               - 2.0 * tf.tensordot(descriptors, codebook, [[-1], [1]])
               + tf.reduce_sum(tf.square(codebook), -1))
    sq_dist = tf.maximum(sq_dist, 0.0)
    if config.assignment == "hard" or config.knn == 1:
        words = tf.argmin(sq_dist, axis=-1, output_type=tf.int32)[..., None]
        return words, tf.ones_like(words, tf.float32)
    neg_sq_dist, words = tf.math.top_k(-sq_dist, k=min(config.knn, codebook.shape[0]))
    return words, tf.nn.softmax(neg_sq_dist / (2.0 * config.sigma ** 2), axis=-1)


def color_names_bow(images, table, codebook, config: ColorNamesConfig | None = None) -> tf.Tensor:
    """Colour Names bag of words per horizontal stripe.

    Args:
      images: uint8 / float [B, h, w, 3] RGB in [0, 255], any size (resized to config size).
      table: float32 [32768, 11] w2c table.
      codebook: float32 [num_words, 11].
      config: ColorNamesConfig.

    Returns:
      float32 [B, num_stripes, num_words] ([B, 16, 350] by default).
    """
    config = config or ColorNamesConfig()
    codebook = tf.convert_to_tensor(codebook, tf.float32)
    num_words, num_stripes = codebook.shape[0], config.num_stripes
    words, weights = assign_words(patch_descriptors(images, table, config), codebook, config)
    # Votes go straight into (image, stripe, word) bins: no dense [B, rows, cols, words] tensor.
    stripe_of_row = np.arange(config.patch_rows) * num_stripes // config.patch_rows
    batch = tf.shape(words)[0]
    ids = ((tf.range(batch)[:, None, None, None] * num_stripes
            + tf.constant(stripe_of_row, tf.int32)[None, :, None, None]) * num_words + words)
    size = batch * num_stripes * num_words
    hist = tf.math.bincount(tf.reshape(ids, [-1]), weights=tf.reshape(weights, [-1]),
                            minlength=size, maxlength=size, dtype=tf.float32)
    hist = tf.reshape(hist, [batch, num_stripes, num_words])
    if config.burstiness == "sqrt":
        hist = tf.sqrt(hist)
    if config.normalize == "l2":
        hist = tf.math.l2_normalize(hist, axis=-1, epsilon=1e-24)
    elif config.normalize == "l1":
        hist = hist / tf.maximum(tf.reduce_sum(hist, axis=-1, keepdims=True), 1e-12)
    return hist


def validate_codebook(codebook) -> np.ndarray:
    """float [num_words, 11] -> float32, with a clear error otherwise."""
    codebook = np.asarray(codebook, np.float32)
    if codebook.ndim != 2 or codebook.shape[1] != NUM_COLOR_NAMES or codebook.shape[0] < 1:
        raise ValueError(f"Expected a Colour Names codebook of shape [num_words, {NUM_COLOR_NAMES}], "
                         f"got {list(codebook.shape)}.")
    if not np.all(np.isfinite(codebook)):
        raise ValueError("The Colour Names codebook holds non-finite values.")
    return codebook
