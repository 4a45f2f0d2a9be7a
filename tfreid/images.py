"""The one image path: files and bytes -> uint8 RGB pixels, the pixel contract, the one resize.

Every caller that reads an image (datasets and tf.data pipelines, `EmbeddingModel.embed_files`,
the feature extraction, the pictures, the tools) reads it here, so a model sees in training,
evaluation and serving the pixels a user gets from PIL (``np.asarray(Image.open(p).convert("RGB"))``)
or OpenCV (``cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB)``), whichever they use:

* Files and Python bytes are decoded by PIL: JPEG (libjpeg's accurate integer IDCT, which is also
  what OpenCV uses), PNG (8-bit, grey, palette, RGBA -> RGB by dropping alpha), BMP (VIPeR's,
  whose header TensorFlow's decoder rejects, included), GIF (first frame), TIFF, WebP and every
  other format PIL reads. One departure from PIL's ``convert("RGB")``: a 16-bit grey image keeps
  its high byte (PIL would clip every value above 255 to white; the high byte is what PIL does
  for 16-bit colour, and what OpenCV and TensorFlow do for both). EXIF orientation is not applied
  (as PIL; OpenCV's ``imread`` would rotate).
* Inside a graph (the exported SavedModel's ``embed_encoded``) there is no PIL: `decode_encoded`
  decodes JPEG with the accurate IDCT (``dct_method="INTEGER_ACCURATE"``, TensorFlow's default is
  the fast one, up to 23 grey levels away from PIL), PNG and GIF with TensorFlow's decoders and
  uncompressed 24/32-bit BMP with TensorFlow ops of its own; the tests check each against PIL.

TensorFlow's ``tf.io.decode_image`` is used nowhere else.
"""

from __future__ import annotations

import dataclasses
import io
import os
from typing import Callable, Iterable, Sequence

import numpy as np
import tensorflow as tf

SERVING_FORMATS = ("JPEG", "PNG", "GIF (first frame)", "BMP (uncompressed 24/32-bit)")
PIXEL_RANGE = (0.0, 255.0)


class UnreadableImageError(ValueError):
    """An image file or buffer that cannot be decoded; the message names it and says why."""


class BadImagesError(ValueError):
    """Some files of a dataset cannot be decoded.

    Attributes:
      bad: list of `BadImage`, every unreadable file with its reason.
    """

    def __init__(self, bad: Sequence["BadImage"], total: int, what: str = "dataset"):
        self.bad = list(bad)
        listing = "\n".join(f"  {b.path}: {b.reason}" for b in self.bad)
        super().__init__(f"{len(self.bad)} of {total} images of the {what} cannot be read:\n"
                         f"{listing}\nFix or remove them, or pass --skip_bad_images to leave them "
                         "out (the skipped files are recorded in the run folder).")


@dataclasses.dataclass(frozen=True)
class BadImage:
    """One unreadable file and why (e.g. "empty file", "truncated", "not an image")."""

    path: str
    reason: str


def _pil_to_rgb(image) -> np.ndarray:
    """A PIL image -> uint8 [h, w, 3] RGB (see the module docstring for the 16-bit grey case)."""
    if image.mode.startswith("I;16"):
        grey = np.asarray(image).astype(np.uint16) >> 8
        return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=-1)
    return np.asarray(image.convert("RGB"))


def _decode_with_pil(source, name: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError  # local: PIL is needed only when decoding

    try:
        with Image.open(source) as image:
            image.load()              # decodes everything now: a truncated file fails here
            pixels = _pil_to_rgb(image)
    except UnidentifiedImageError:
        raise UnreadableImageError(f"{name}: not an image (no format PIL knows)") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise UnreadableImageError(f"{name}: cannot be decoded ({err})") from None
    if pixels.size == 0:
        raise UnreadableImageError(f"{name}: has 0 pixels ({pixels.shape[1]}x{pixels.shape[0]})")
    return pixels


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Reads one image file.

    Args:
      path: an image file in any format PIL reads.

    Returns:
      uint8 [h, w, 3] RGB.

    Raises:
      FileNotFoundError: no such file.
      UnreadableImageError: empty, truncated, not an image, or 0 pixels (naming the file).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No image file at {path!r}")
    if os.path.getsize(path) == 0:
        raise UnreadableImageError(f"{path}: empty file (0 bytes)")
    return _decode_with_pil(path, path)


def decode_bytes(data: bytes, name: str = "image bytes") -> np.ndarray:
    """Decodes an encoded image held in memory (any format PIL reads) -> uint8 [h, w, 3] RGB."""
    if not data:
        raise UnreadableImageError(f"{name}: empty (0 bytes)")
    return _decode_with_pil(io.BytesIO(data), name)


def check_readable(path: str | os.PathLike) -> str | None:
    """None if `path` decodes to a non-empty image, else the reason it does not."""
    try:
        read_image(path)
    except FileNotFoundError:
        return "missing"
    except UnreadableImageError as err:
        return str(err).split(": ", 1)[-1]
    return None


def find_unreadable(paths: Iterable[str | os.PathLike],
                    progress: Callable[[int], None] | None = None) -> list[BadImage]:
    """Decodes every file once and lists those that cannot be read.

    Args:
      paths: image files.
      progress: called with the number of files done so far, every 256 files and at the end.

    Returns:
      list of BadImage in the order of `paths` (empty when all are readable).
    """
    bad, done = [], 0
    for done, path in enumerate(paths, 1):
        reason = check_readable(path)
        if reason is not None:
            bad.append(BadImage(os.fspath(path), reason))
        if progress is not None and done % 256 == 0:
            progress(done)
    if progress is not None:
        progress(done)
    return bad


def tf_read_image(path: tf.Tensor) -> tf.Tensor:
    """`read_image` inside tf.data: scalar string path -> uint8 [h, w, 3] (decoded by PIL)."""
    def read(p):
        return read_image(p.decode("utf-8") if isinstance(p, bytes) else str(p))

    image = tf.numpy_function(read, [path], tf.uint8, stateful=False)
    image.set_shape([None, None, 3])
    return image


# --- TensorFlow ops, for graphs that cannot call PIL (the exported SavedModel) ---

def _le_uint(contents: tf.Tensor, offset: int, size: int) -> tf.Tensor:
    """Little-endian unsigned int of `size` (2 or 4) bytes at `offset` -> int64 scalar."""
    raw = tf.io.decode_raw(tf.strings.substr(contents, offset, size), tf.uint8)
    weights = tf.constant([256 ** i for i in range(size)], tf.int64)
    return tf.reduce_sum(tf.cast(raw, tf.int64) * weights)


def decode_bmp(contents: tf.Tensor) -> tf.Tensor:
    """Uncompressed 24/32-bit BMP (bottom-up or top-down rows) -> uint8 [h, w, 3] RGB.

    Reads the header's own offset, size and row padding, and ignores trailing bytes (VIPeR's
    files carry 2, which `tf.io.decode_bmp` rejects).
    """
    offset = _le_uint(contents, 10, 4)
    width = _le_uint(contents, 18, 4)
    height_raw = _le_uint(contents, 22, 4)
    height_signed = tf.where(height_raw >= 2 ** 31, height_raw - 2 ** 32, height_raw)
    height = tf.abs(height_signed)
    bits = _le_uint(contents, 28, 2)
    compression = _le_uint(contents, 30, 4)
    supported = tf.logical_and(tf.logical_or(tf.equal(bits, 24), tf.equal(bits, 32)),
                               tf.logical_or(tf.equal(compression, 0), tf.equal(compression, 3)))
    checks = [tf.debugging.Assert(supported, ["Only uncompressed 24/32-bit BMP is decoded in the "
                                              "graph; got bits/compression", bits, compression])]
    with tf.control_dependencies(checks):
        channels = bits // 8
        row_bytes = (bits * width + 31) // 32 * 4
        data = tf.strings.substr(contents, offset, row_bytes * height)
    pixels = tf.reshape(tf.io.decode_raw(data, tf.uint8), tf.stack([height, row_bytes]))
    pixels = tf.reshape(pixels[:, : width * channels], tf.stack([height, width, channels]))
    rgb = tf.gather(pixels, [2, 1, 0], axis=-1)                 # stored as BGR(A)
    return tf.cond(height_signed > 0, lambda: tf.reverse(rgb, [0]), lambda: rgb)  # bottom-up


def decode_encoded(contents: tf.Tensor) -> tf.Tensor:
    """Encoded image bytes in a graph -> uint8 [h, w, 3] RGB, equal to `decode_bytes` for the
    formats in `SERVING_FORMATS` (JPEG with the accurate IDCT, grey repeated, alpha dropped).

    Args:
      contents: scalar string tensor.
    """
    magic = tf.strings.substr(contents, 0, 2)

    def jpeg():
        return tf.io.decode_jpeg(contents, channels=3, dct_method="INTEGER_ACCURATE")

    def png_or_gif():
        # Only PNG and GIF reach here (JPEG and BMP are routed above), the two formats whose
        # TensorFlow decoders give PIL's pixels.
        return tf.io.decode_image(contents, channels=3, expand_animations=False)

    image = tf.case([(tf.equal(magic, b"\xff\xd8"), jpeg), (tf.equal(magic, b"BM"),
                     lambda: decode_bmp(contents))], default=png_or_gif)
    image.set_shape([None, None, 3])
    return image


# --- the pixel contract and the resize ---

def check_pixels(images, what: str = "images") -> None:
    """Refuses pixels that are not RGB in 0..255.

    Args:
      images: array-like [batch, h, w, 3] (or a list of [h, w, 3]) of any numeric dtype.
      what: how the error names the input.

    Raises:
      ValueError: not 3 channels, NaN/inf (naming the image index), values outside 0..255, or a
        float image whose values are all within 0..1 (scaled to [0, 1]: multiply by 255).
    """
    for index, image in enumerate(images):
        array = np.asarray(image)
        if array.ndim != 3 or array.shape[-1] != 3:
            raise ValueError(f"{what}[{index}]: expected an RGB image [h, w, 3], got shape "
                             f"{array.shape}.")
        if array.size == 0:
            raise ValueError(f"{what}[{index}]: has 0 pixels (shape {array.shape}).")
        if array.dtype.kind in "ui" and array.dtype != np.uint8:
            low, high = int(array.min()), int(array.max())
        elif array.dtype.kind in "f":
            if not np.all(np.isfinite(array)):
                raise ValueError(f"{what}[{index}]: contains NaN or inf pixel values.")
            low, high = float(array.min()), float(array.max())
            if high <= 1.0 and high > 0.0:
                raise ValueError(f"{what}[{index}]: float pixels all within [0, 1] (max {high:g}); "
                                 "images are RGB in 0..255 - multiply by 255 (or pass uint8).")
        elif array.dtype == np.uint8:
            continue
        else:
            raise ValueError(f"{what}[{index}]: unsupported dtype {array.dtype}; pass uint8 or "
                             "float RGB in 0..255.")
        if low < PIXEL_RANGE[0] or high > PIXEL_RANGE[1]:
            raise ValueError(f"{what}[{index}]: pixel values span {low:g}..{high:g}, outside "
                             "0..255; pass uint8 or float RGB in 0..255.")


def resize(images: tf.Tensor, size: Sequence[int]) -> tf.Tensor:
    """The project's one resize: bilinear with antialiasing, clipped to 0..255.

    Args:
      images: [h, w, 3] or [batch, h, w, 3], any numeric dtype, values in 0..255.
      size: (H, W) of the output.

    Returns:
      float32 [H, W, 3] or [batch, H, W, 3] in 0..255; unchanged (only cast) when the static
      size already matches.
    """
    images = tf.cast(images, tf.float32)
    size = tuple(int(s) for s in size)
    if tuple(images.shape[-3:-1]) == size:
        return images
    resized = tf.image.resize(images, size, method="bilinear", antialias=True)
    return tf.clip_by_value(resized, *PIXEL_RANGE)  # the antialiasing filter can round past 255
