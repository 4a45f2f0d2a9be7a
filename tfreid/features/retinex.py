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
