"""Image helpers of the pictures: load / convert to uint8 RGB, resize, write figures and mosaics."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np

from tfreid import images as image_io

DPI = 100


def to_rgb_uint8(image, where: str = "image") -> np.ndarray:
    """One image as uint8 RGB [H, W, 3].

    Args:
      image: a file path (read by `tfreid.images.read_image`, as every model input is) or an
        array [H, W, 3] / [H, W] (uint8, or float in 0..255 as the project's pipelines produce;
        rounded and clipped).
      where: name of the image in error messages, e.g. "query_images[3]".
    """
    if isinstance(image, (str, os.PathLike)):
        try:
            return image_io.read_image(image)
        except FileNotFoundError:
            raise FileNotFoundError(f"{where}: no image file at {os.fspath(image)!r}") from None
        except image_io.UnreadableImageError as err:
            raise ValueError(f"{where}: {err}") from None
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3 or min(array.shape[:2]) < 1:
        raise ValueError(f"{where}: expected an RGB image [H, W, 3] (or a file path), "
                         f"got an array of shape {array.shape}")
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"{where}: expected uint8 or real 0..255 pixel values, got dtype {array.dtype}")
    return np.clip(np.rint(array), 0, 255).astype(np.uint8)


def check_images(images, count: int, name: str, expected_from: str):
    """Checks a sequence of images (paths or arrays, or one [N, H, W, 3] array) has `count` items."""
    if isinstance(images, (str, os.PathLike)):
        raise ValueError(f"{name} must be a sequence of images or paths, got the single path {images!r}")
    if len(images) != count:
        raise ValueError(f"{name} has {len(images)} images but {expected_from} has {count}")
    return images


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [size[0], size[1], 3] (the project's resize, `tfreid.images`)."""
    if image.shape[:2] == tuple(size):
        return image
    return np.rint(image_io.resize(image, size).numpy()).astype(np.uint8)


def framed(image: np.ndarray, size: tuple[int, int], frame: int, color: Sequence[int]) -> np.ndarray:
    """image resized to `size` inside a solid `frame`-pixel border: [h + 2f, w + 2f, 3] uint8."""
    height, width = size
    out = np.empty((height + 2 * frame, width + 2 * frame, 3), np.uint8)
    out[:] = np.asarray(color, np.uint8)
    out[frame:frame + height, frame:frame + width] = resize(image, size)
    return out


def figure_of_canvas(canvas: np.ndarray):
    """A matplotlib figure exactly the size of canvas [H, W, 3] uint8, which fills it pixel for
    pixel (no resampling), so text can be drawn over it at pixel positions (`text_at`)."""
    height, width = canvas.shape[:2]
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    fig.figimage(canvas, xo=0, yo=0, origin="upper", resize=False)
    return fig


def text_at(fig, x: float, y: float, text: str, **kwargs) -> None:
    """Draws text at pixel (x, y) of a `figure_of_canvas` figure (y from the top)."""
    width, height = fig.get_size_inches() * DPI
    fig.text(x / width, 1.0 - y / height, text, **kwargs)


def save_figure(fig, path: str | Path, colors: int | None = None,
                reserved: Sequence[Sequence[int]] = ()) -> Path:
    """Writes fig as a PNG at the module DPI (exact canvas size, no tight cropping), closes it.

    Args:
      fig: the figure.
      path: a .png path (parent folders are created).
      colors: None writes full RGB; a number 2..256 writes a palette PNG of that many colours
        (median cut, no dithering: about 3x smaller for photo mosaics).
      reserved: RGB colours kept exactly in the palette (e.g. frame colours).
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"pictures are written as PNG; got the path {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if colors is None:
        fig.savefig(path, dpi=DPI, pil_kwargs={"optimize": True})
        plt.close(fig)
        return path
    if not len(reserved) < colors <= 256:
        raise ValueError(f"colors must be in ({len(reserved)}, 256], got {colors}")
    from PIL import Image

    fig.set_dpi(DPI)
    fig.canvas.draw()
    rgb = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    plt.close(fig)
    adaptive = rgb.quantize(colors - len(reserved), method=Image.Quantize.MEDIANCUT,
                            dither=Image.Dither.NONE)
    entries = adaptive.getpalette()[:3 * (colors - len(reserved))]
    entries += [int(v) for color in reserved for v in color]
    palette = Image.new("P", (1, 1))
    palette.putpalette(entries + [0] * (768 - len(entries)))
    # Nearest palette entry per pixel: a reserved colour maps to itself exactly.
    rgb.quantize(palette=palette, dither=Image.Dither.NONE).save(path, optimize=True)
    return path
