"""Multi-scale Retinex (Jobson, Rahman & Woodell 1997) as batched TensorFlow ops.

LOMO (Liao et al., CVPR 2015, Sec. 3.1) applies multi-scale Retinex with Gaussian surrounds of
sigma 5 and 20 before the HSV histograms, to make colours of the same person comparable across
cameras; the paper does not state how the log-domain output is mapped back to [0, 1]. Choices
made here (documented because they change the histograms):

- Single-scale Retinex per RGB channel: ``log(I + 1) - log(G_sigma * (I + 1))``, averaged over
  the sigmas with equal weights (plain MSR, no colour restoration term).
- Gaussian surround truncated at 3 sigma, borders replicate the edge pixels. The blur is
  separable and applied as two small dense matrix products (a [H, H] and a [W, W] matrix in
  which the replicated border weights are folded onto the edge pixels), which is exact and much
  faster than a 121-tap convolution on a 128x48 image.
- Gain/offset: per image and per channel the output is stretched linearly so that
  ``mean - k*std`` maps to 0 and ``mean + k*std`` maps to 1 (k = ``clip_std``, default 2), then
  clipped to [0, 1] (the "dynamic" stretch of the GIMP MSRCR filter, per channel, which also
  acts as a grey-world colour constancy step).

The authors' LOMO package ships its Retinex only as a compiled MEX file ("we are not allowed to
release its source code", its README), so no variant here can be checked against it line by
line. Besides the stretch above (``multiscale_retinex``, tfreid's first choice, kept for saved
models), the two colour variants of Petro, Sbert & Morel, "Multiscale Retinex", IPOL 2014
(Algorithms 1 and 2) are here, both with the simplest colour balance (a fraction ``clip`` of the
values saturated at each end, then a linear stretch to [0, 1]):

- ``msrcr``: MSR per channel times the colour restoration ``log(alpha (I_c + 1)) -
  log(sum_c (I_c + 1))`` (alpha 125), simplest colour balance per channel.
- ``msrcp``: MSR of the intensity ``(R + G + B) / 3``, simplest colour balance, and every channel
  scaled by the same factor ``min(255 / max_c I_c, I_out / I)`` (chromaticity preserved, so hue
  and saturation are those of the input). On VIPeR with XQDA this is the best of the variants
  (docs/RESULTS.md) and LOMO's default.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
import tensorflow as tf


@functools.lru_cache(maxsize=64)
def gaussian_blur_matrix(n: int, sigma: float, truncate: float = 3.0) -> np.ndarray:
    """The [n, n] matrix G with ``G @ x`` = 1-D Gaussian blur of x with replicated borders.

    Args:
      n: signal length (image height or width).
      sigma: Gaussian standard deviation in pixels (> 0).
      truncate: kernel radius in sigmas.

    Returns:
      float32 [n, n], every row sums to 1.
    """
    if n < 1 or sigma <= 0:
        raise ValueError(f"gaussian_blur_matrix needs n >= 1 and sigma > 0, got n={n}, sigma={sigma}.")
    radius = int(np.ceil(truncate * sigma))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    matrix = np.zeros((n, n), np.float64)
    rows = np.arange(n)[:, None]
    cols = np.clip(rows + offsets[None, :], 0, n - 1)   # replicate: clamp the source index
    np.add.at(matrix, (np.broadcast_to(rows, cols.shape), cols), np.broadcast_to(kernel, cols.shape))
    return matrix.astype(np.float32)


def gaussian_blur(images: tf.Tensor, sigma: float) -> tf.Tensor:
    """Separable Gaussian blur with replicated borders.

    Args:
      images: float32 [batch, H, W, C] with static H and W.
      sigma: standard deviation in pixels.

    Returns:
      float32 [batch, H, W, C].
    """
    height, width = images.shape[1], images.shape[2]
    if height is None or width is None:
        raise ValueError("gaussian_blur needs a static image height and width; resize first.")
    g_h = tf.constant(gaussian_blur_matrix(int(height), float(sigma)))
    g_w = tf.constant(gaussian_blur_matrix(int(width), float(sigma)))
    # [B,H,W,C] -> [B,C,H,W]: blur columns with G_h @ X, rows with X @ G_w^T.
    x = tf.transpose(images, [0, 3, 1, 2])
    x = tf.matmul(tf.matmul(g_h, x), g_w, transpose_b=True)
    return tf.transpose(x, [0, 2, 3, 1])


def multiscale_retinex(images: tf.Tensor, sigmas: Sequence[float] = (5.0, 20.0),
                       clip_std: float = 2.0) -> tf.Tensor:
    """Multi-scale Retinex with a per-image, per-channel linear stretch to [0, 1].

    Args:
      images: float32 [batch, H, W, 3], values in [0, 255], static H and W.
      sigmas: Gaussian surround scales in pixels.
      clip_std: k of the stretch: [mean - k*std, mean + k*std] -> [0, 1], then clipped.

    Returns:
      float32 [batch, H, W, 3] in [0, 1].
    """
    if not sigmas:
        raise ValueError("multiscale_retinex needs at least one sigma.")
    if clip_std <= 0:
        raise ValueError(f"clip_std must be > 0, got {clip_std}.")
    images = tf.convert_to_tensor(images, tf.float32)
    log_image = tf.math.log(images + 1.0)
    response = tf.zeros_like(images)
    for sigma in sigmas:
        # Blur rows sum to 1, so G * (I + 1) = G * I + 1.
        response += log_image - tf.math.log(gaussian_blur(images, sigma) + 1.0)
    response /= float(len(sigmas))
    mean, var = tf.nn.moments(response, axes=[1, 2], keepdims=True)
    std = tf.sqrt(var)
    scale = 2.0 * clip_std * std + 1e-6   # a flat channel maps to 0.5 instead of dividing by 0
    return tf.clip_by_value((response - mean) / scale + 0.5, 0.0, 1.0)


RETINEX_MODES = ("msr_stretch", "msrcr", "msrcp")


def _msr(images: tf.Tensor, sigmas: Sequence[float]) -> tf.Tensor:
    """float32 [B, H, W, C] in [0, 255] -> MSR ``mean_s log(I + 1) - log(G_s * I + 1)``."""
    log_image = tf.math.log(images + 1.0)
    response = tf.zeros_like(images)
    for sigma in sigmas:
        response += log_image - tf.math.log(gaussian_blur(images, sigma) + 1.0)
    return response / float(len(sigmas))


def simplest_color_balance(x: tf.Tensor, clip: float = 0.01) -> tf.Tensor:
    """Per image and channel: saturate a fraction `clip` of the values at each end, stretch to [0, 1].

    The bounds are the order statistics ``floor(clip * n)`` and ``n - 1 - floor(clip * n)`` of the
    ``n = H * W`` values of a channel (IPOL 2014, "simplest color balance").

    Args:
      x: float32 [batch, H, W, C] with static H and W.
      clip: fraction in [0, 0.5).

    Returns:
      float32 [batch, H, W, C] in [0, 1]; a flat channel maps to 0.
    """
    if not 0 <= clip < 0.5:
        raise ValueError(f"simplest_color_balance: clip must be in [0, 0.5), got {clip}.")
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    n = int(height) * int(width)
    k = int(np.floor(clip * n))
    values = tf.sort(tf.reshape(tf.transpose(x, [0, 3, 1, 2]), [-1, channels, n]), axis=-1)
    low = values[..., k][:, None, None, :]
    high = values[..., n - 1 - k][:, None, None, :]
    return tf.clip_by_value((x - low) / tf.maximum(high - low, 1e-6), 0.0, 1.0)


def retinex(images: tf.Tensor, mode: str = "msrcp", sigmas: Sequence[float] = (5.0, 20.0),
            clip_std: float = 2.0, clip: float = 0.01, alpha: float = 125.0) -> tf.Tensor:
    """Colour Retinex of a batch: one of `RETINEX_MODES` (see the module docstring).

    Args:
      images: float32 [batch, H, W, 3], values in [0, 255], static H and W.
      mode: "msr_stretch" (`multiscale_retinex`), "msrcr" or "msrcp".
      sigmas: Gaussian surround scales in pixels.
      clip_std: k of the "msr_stretch" mode.
      clip: fraction saturated at each end by the simplest colour balance ("msrcr", "msrcp").
      alpha: colour restoration constant of "msrcr".

    Returns:
      float32 [batch, H, W, 3] in [0, 1].
    """
    if mode not in RETINEX_MODES:
        raise ValueError(f"retinex mode must be one of {RETINEX_MODES}, got {mode!r}.")
    if not sigmas:
        raise ValueError("retinex needs at least one sigma.")
    images = tf.convert_to_tensor(images, tf.float32)
    if mode == "msr_stretch":
        return multiscale_retinex(images, sigmas, clip_std)
    if mode == "msrcr":
        plus_one = images + 1.0
        restoration = (tf.math.log(alpha * plus_one)
                       - tf.math.log(tf.reduce_sum(plus_one, axis=-1, keepdims=True)))
        return simplest_color_balance(restoration * _msr(images, sigmas), clip)
    peak = tf.reduce_max(images, axis=-1, keepdims=True) / 255.0
    return tf.clip_by_value(images / 255.0 * (msrcp_value(images, sigmas, clip)
                                              / tf.maximum(peak, 1e-6)), 0.0, 1.0)


def msrcp_value(images: tf.Tensor, sigmas: Sequence[float] = (5.0, 20.0),
                clip: float = 0.01) -> tf.Tensor:
    """HSV value (max channel) of the "msrcp" output; its hue and saturation are the input's.

    MSRCP scales the three channels of a pixel by one factor ``min(255 / max_c I_c, I_out / I)``,
    so only V changes: ``V = min(1, I_out max_c I_c / (255 I))``. Taking H and S from the input
    and V from here gives the same bins as the image `retinex` returns, without the float32
    rounding of the scaled channels moving a saturation that lies exactly on a bin edge (common
    for integer RGB, e.g. min/max = 1/2) into the next bin.

    Args:
      images: float32 [batch, H, W, 3], values in [0, 255], static H and W.

    Returns:
      float32 [batch, H, W, 1] in [0, 1].
    """
    intensity = tf.reduce_mean(images, axis=-1, keepdims=True)              # [B, H, W, 1]
    balanced = simplest_color_balance(_msr(intensity, sigmas), clip)        # I_out / 255
    peak = tf.reduce_max(images, axis=-1, keepdims=True)
    return tf.minimum(1.0, balanced * peak / tf.maximum(intensity, 1e-6))
