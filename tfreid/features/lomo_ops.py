"""LOMO: Local Maximal Occurrence features (Liao, Hu, Zhu & Li, CVPR 2015) as batched TF ops.

Pipeline for a batch of images resized to ``config.height x config.width`` (128x48 default):

1. Colour: multi-scale Retinex (see `retinex.py`; default the chromaticity-preserving MSRCP,
   sigmas 5 and 20), RGB -> HSV, each channel quantised to 8 bins, joint bin ``h + 8*s + 64*v``
   (the reference code's order) -> 512 bins.
2. Texture: SILTP (Liao et al., CVPR 2010) on the grey image of the input (not of the Retinex
   output): MATLAB's ``rgb2gray`` of the uint8 image, i.e. 0.298936 R + 0.587043 G + 0.114021 B
   rounded to an integer, / 255 (``grey="uint8"``, the reference; ``grey="float"``: 0.2989 R +
   0.5870 G + 0.1140 B unrounded, tfreid's first version), tau 0.3, four neighbours at distance R (right, up, left, down with weights
   1, 3, 9, 27), each coded 0 (within [(1-tau) I, (1+tau) I]), 1 (below) or 2 (above) -> 81
   patterns, for R = 3 and R = 5; borders replicate the edge pixels.
3. Histograms of 10x10 sub-windows with step 5; per horizontal row of sub-windows the bin-wise
   maximum over the windows of that row ("maximal occurrence").
4. Three scales: 2x2 average pooling between scales, dropping an odd last row/column; the HSV
   channel bin indices are averaged and floored, the grey image is averaged (as the reference
   code does). 128 px high -> 24, 11 and 5 rows.
5. log(x + 1), then L2 normalisation of each feature group (HSV, SILTP R=3, SILTP R=5) over the
   whole descriptor, as the reference code does (``normc`` inside each group's function); the
   option ``normalize="row"`` normalises each group within each row instead (for per-row models).

Window histograms are computed without a [B, H, W, bins] one-hot tensor: a window (10x10, step
5) is the union of two 10x5 bands, and one row-wise `tf.math.bincount` gives the histograms of
all bands of all three code maps at once (see `max_occurrence`).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfreid.features.retinex import RETINEX_MODES, msrcp_value, retinex
from tfreid.images import resize as resize_images

SILTP_NEIGHBOURS = 4          # right, up, left, down
SILTP_BINS = 3 ** SILTP_NEIGHBOURS
NORMALIZE_MODES = ("global", "row", "none")
GREY_MODES = ("uint8", "float")
# Settings of tfreid's first LOMO, which configs saved before these fields existed were made with
# (a LomoLayer config without them loads with these; see layers.LomoLayer.from_config).
LEGACY_SETTINGS = {"retinex": "msr_stretch", "grey": "float"}


@dataclasses.dataclass(frozen=True)
class LomoConfig:
    """LOMO hyper-parameters; defaults are the paper's for 128x48 images.

    Attributes:
      height, width: images are resized to this size first.
      block_size, block_step: sub-window size and step in pixels (size must be a multiple of step).
      num_scales: pyramid levels (2x2 average pooling between levels).
      hsv_bins: bins per H, S, V channel.
      retinex_sigmas: Gaussian surround sigmas of the multi-scale Retinex; empty = no Retinex
        (the RGB image / 255 goes straight to HSV).
      retinex: "msrcp" (default), "msrcr" or "msr_stretch" (tfreid's first version), see
        `retinex.retinex`. The authors' Retinex is a closed MEX file; docs/RESULTS.md has the
        measured effect of each.
      retinex_clip_std: stretch of the "msr_stretch" output, see `retinex.multiscale_retinex`.
      retinex_clip: fraction saturated at each end by the simplest colour balance of "msrcp" /
        "msrcr".
      grey: "uint8" (the reference's rgb2gray: MATLAB weights, rounded to an integer) or "float"
        (0.2989/0.5870/0.1140, unrounded; tfreid's first version).
      siltp_tau: SILTP scale-invariance tolerance.
      siltp_radii: one 81-bin SILTP histogram per radius.
      normalize: "global" (each group over the whole descriptor, as the reference), "row"
        (each group within each row) or "none" (only log(x + 1)).
      siltp_groups: "per_radius" (each radius's SILTP histogram is its own L2 group, as the
        reference code's per-radius `normc`) or "joint" (all radii form one SILTP group: two
        groups in all, HSV and SILTP).
    """

    height: int = 128
    width: int = 48
    block_size: int = 10
    block_step: int = 5
    num_scales: int = 3
    hsv_bins: tuple[int, int, int] = (8, 8, 8)
    retinex_sigmas: tuple[float, ...] = (5.0, 20.0)
    retinex_clip_std: float = 2.0
    siltp_tau: float = 0.3
    siltp_radii: tuple[int, ...] = (3, 5)
    normalize: str = "global"
    siltp_groups: str = "per_radius"
    retinex: str = "msrcp"
    retinex_clip: float = 0.01
    grey: str = "uint8"

    def __post_init__(self):
        object.__setattr__(self, "hsv_bins", tuple(int(b) for b in self.hsv_bins))
        object.__setattr__(self, "retinex_sigmas", tuple(float(s) for s in self.retinex_sigmas))
        object.__setattr__(self, "siltp_radii", tuple(int(r) for r in self.siltp_radii))
        if len(self.hsv_bins) != 3 or min(self.hsv_bins) < 1:
            raise ValueError(f"LomoConfig.hsv_bins must be 3 positive ints, got {self.hsv_bins}.")
        if self.block_step < 1 or self.block_size < self.block_step or self.block_size % self.block_step:
            raise ValueError(f"LomoConfig.block_size ({self.block_size}) must be a positive multiple "
                             f"of block_step ({self.block_step}).")
        if self.num_scales < 1:
            raise ValueError(f"LomoConfig.num_scales must be >= 1, got {self.num_scales}.")
        if self.normalize not in NORMALIZE_MODES:
            raise ValueError(f"LomoConfig.normalize must be one of {NORMALIZE_MODES}, "
                             f"got {self.normalize!r}.")
        if self.siltp_groups not in ("per_radius", "joint"):
            raise ValueError(f"LomoConfig.siltp_groups must be 'per_radius' or 'joint', "
                             f"got {self.siltp_groups!r}.")
        if self.retinex not in RETINEX_MODES:
            raise ValueError(f"LomoConfig.retinex must be one of {RETINEX_MODES}, "
                             f"got {self.retinex!r}.")
        if not 0 <= self.retinex_clip < 0.5:
            raise ValueError(f"LomoConfig.retinex_clip must be in [0, 0.5), got {self.retinex_clip}.")
        if self.grey not in GREY_MODES:
            raise ValueError(f"LomoConfig.grey must be one of {GREY_MODES}, got {self.grey!r}.")
        if not 0 <= self.siltp_tau < 1:
            raise ValueError(f"LomoConfig.siltp_tau must be in [0, 1), got {self.siltp_tau}.")
        if any(r < 1 for r in self.siltp_radii):
            raise ValueError(f"LomoConfig.siltp_radii must be positive, got {self.siltp_radii}.")
        height, width = self.height, self.width
        for scale in range(self.num_scales):
            if height < self.block_size or width < self.block_size:
                raise ValueError(
                    f"LomoConfig: an image of {self.height}x{self.width} is {height}x{width} at scale "
                    f"{scale}, smaller than block_size {self.block_size}; use fewer num_scales or a "
                    "larger image.")
            if self.siltp_radii and width < 2 * max(self.siltp_radii) + 1:
                raise ValueError(f"LomoConfig: width {width} at scale {scale} is too small for SILTP "
                                 f"radius {max(self.siltp_radii)}.")
            height, width = height // 2, width // 2

    @property
    def scale_sizes(self) -> tuple[tuple[int, int], ...]:
        """(height, width) of the image at each scale."""
        sizes, height, width = [], self.height, self.width
        for _ in range(self.num_scales):
            sizes.append((height, width))
            height, width = height // 2, width // 2
        return tuple(sizes)

    @property
    def rows_per_scale(self) -> tuple[int, ...]:
        """Rows of sub-windows per scale, e.g. (24, 11, 5) for 128 px high."""
        return tuple((h - self.block_size) // self.block_step + 1 for h, _ in self.scale_sizes)

    @property
    def num_rows(self) -> int:
        return sum(self.rows_per_scale)

    @property
    def color_bins(self) -> int:
        return int(np.prod(self.hsv_bins))

    @property
    def group_sizes(self) -> tuple[int, ...]:
        """Bins of each feature group in a row: (HSV, SILTP radius 1, SILTP radius 2, ...)."""
        return (self.color_bins,) + (SILTP_BINS,) * len(self.siltp_radii)

    @property
    def row_dim(self) -> int:
        """Dimension of one row, 674 by default."""
        return sum(self.group_sizes)

    @property
    def flat_dim(self) -> int:
        """Dimension of the flat vector, 26,960 for 128x48."""
        return self.num_rows * self.row_dim

    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}


class LomoFeatures(NamedTuple):
    """Outputs of `lomo`.

    Attributes:
      rows: float32 [batch, num_rows, row_dim] ([batch, 40, 674]); each row is
        [HSV 512 | SILTP R=3 81 | SILTP R=5 81].
      scales: tuple of float32 [batch, rows_s, row_dim] per scale ([24, 11, 5] rows).
      flat: float32 [batch, flat_dim] (26,960) in the reference code's order: the HSV group
        of all rows (row-major, bins fastest), then each SILTP group of all rows.
    """

    rows: tf.Tensor
    scales: tuple
    flat: tf.Tensor


def prepare_images(images, height: int, width: int) -> tf.Tensor:
    """uint8 / float [batch, h, w, 3] in [0, 255] of any size -> float32 [batch, height, width, 3].

    Bilinear resize with antialiasing; skipped when the static size already matches.
    """
    images = tf.convert_to_tensor(images)
    if images.shape.rank != 4 or images.shape[-1] != 3:
        raise ValueError(f"Expected images [batch, height, width, 3], got shape {images.shape}.")
    return tf.clip_by_value(resize_images(images, (height, width)), 0.0, 255.0)


def hsv_bin_maps(rgb01: tf.Tensor, bins=(8, 8, 8)) -> tf.Tensor:
    """Per-channel quantised HSV: float32 [B, H, W, 3] RGB in [0, 1] -> int32 [B, H, W, 3]."""
    return quantise_hsv(tf.image.rgb_to_hsv(rgb01), bins)


def quantise_hsv(hsv: tf.Tensor, bins=(8, 8, 8)) -> tf.Tensor:
    """float32 [B, H, W, 3] HSV in [0, 1] -> int32 [B, H, W, 3] bins min(floor(x * n), n - 1)."""
    counts = tf.constant(bins, tf.float32)
    return tf.cast(tf.minimum(tf.floor(hsv * counts), counts - 1.0), tf.int32)


def joint_hsv_codes(bin_maps: tf.Tensor, bins=(8, 8, 8)) -> tf.Tensor:
    """int32 [B, H, W, 3] per-channel bins -> int32 [B, H, W] joint bin h + nh*s + nh*ns*v."""
    weights = tf.constant([1, bins[0], bins[0] * bins[1]], tf.int32)
    return tf.reduce_sum(bin_maps * weights, axis=-1)


# MATLAB rgb2gray: the first row of the inverse of the NTSC (YIQ) matrix.
MATLAB_GREY_WEIGHTS = (0.298936021293776, 0.587043074451121, 0.114020904255103)


def grey_image(rgb255: tf.Tensor, mode: str = "float") -> tf.Tensor:
    """float32 [B, H, W, 3] in [0, 255] -> luminance [B, H, W] in [0, 1].

    mode "float": 0.2989 R + 0.5870 G + 0.1140 B (ITU-R BT.601), unrounded; "uint8": MATLAB's
    ``rgb2gray`` of a uint8 image (its weights, rounded half away from zero to an integer).
    """
    if mode == "uint8":
        grey = tf.reduce_sum(rgb255 * tf.constant(MATLAB_GREY_WEIGHTS, tf.float32), axis=-1)
        # Values >= 0: round half away from zero. A product, not "/ 255": a graph rewrites the
        # division into this product, and eager and graph must give the same grey levels (SILTP's
        # tolerance test on integer levels often sits exactly on its edge).
        return tf.floor(grey + 0.5) * (1.0 / 255.0)
    weights = tf.constant([0.2989, 0.5870, 0.1140], tf.float32)
    return tf.reduce_sum(rgb255 * weights, axis=-1) / 255.0


def siltp_codes(grey: tf.Tensor, tau: float = 0.3, radius: int = 3) -> tf.Tensor:
    """Scale-invariant local ternary patterns with four neighbours and replicated borders.

    Args:
      grey: float32 [B, H, W] (static H, W).
      tau: tolerance; neighbour n of centre I codes 1 if n < (1-tau) I, 2 if n > (1+tau) I.
      radius: neighbour distance R in pixels.

    Returns:
      int32 [B, H, W] in [0, 81): right + 3 up + 9 left + 27 down.
    """
    height, width = grey.shape[1], grey.shape[2]
    rows, cols = np.arange(height), np.arange(width)
    right = tf.gather(grey, np.minimum(cols + radius, width - 1), axis=2)
    left = tf.gather(grey, np.maximum(cols - radius, 0), axis=2)
    up = tf.gather(grey, np.maximum(rows - radius, 0), axis=1)
    down = tf.gather(grey, np.minimum(rows + radius, height - 1), axis=1)
    lower, upper = (1.0 - tau) * grey, (1.0 + tau) * grey
    code = tf.zeros_like(grey, tf.int32)
    for weight, neighbour in ((1, right), (3, up), (9, left), (27, down)):
        ternary = tf.cast(neighbour < lower, tf.int32) + 2 * tf.cast(neighbour > upper, tf.int32)
        code += weight * ternary
    return code


def _crop_even(x: tf.Tensor) -> tf.Tensor:
    height, width = x.shape[1], x.shape[2]
    return x[:, : height - height % 2, : width - width % 2]


def pool_bins(bin_maps: tf.Tensor) -> tf.Tensor:
    """2x2 average pooling of int32 [B, H, W, C] bin indices, floored -> [B, H//2, W//2, C]."""
    pooled = tf.nn.avg_pool2d(tf.cast(_crop_even(bin_maps), tf.float32), 2, 2, "VALID")
    return tf.cast(tf.floor(pooled + 1e-4), tf.int32)   # + 1e-4: averages of ints, guard rounding


def pool_grey(grey: tf.Tensor) -> tf.Tensor:
    """2x2 average pooling of float32 [B, H, W] -> [B, H//2, W//2]."""
    return tf.nn.avg_pool2d(_crop_even(grey)[..., None], 2, 2, "VALID")[..., 0]


def max_occurrence(code_maps, num_bins, block_size: int = 10, block_step: int = 5) -> tf.Tensor:
    """Per-row maximal occurrence of sub-window histograms of several code maps.

    Args:
      code_maps: list of int32 [B, H, W] code maps (same static H, W), map i with values in
        [0, num_bins[i]).
      num_bins: list of ints, bins of each map.
      block_size, block_step: sub-window size and step (size a multiple of step).

    Returns:
      float32 [B, rows, sum(num_bins)], rows = (H - block_size) // block_step + 1: for each row of
      sub-windows, the bin-wise max over its windows of the window histograms, maps concatenated.
    """
    height, width = code_maps[0].shape[1], code_maps[0].shape[2]
    k = block_size // block_step
    win_rows = (height - block_size) // block_step + 1
    win_cols = (width - block_size) // block_step + 1
    band_cols = win_cols + k - 1
    total_bins = int(sum(num_bins))
    # A "band" is block_size rows x block_step columns; a window is k adjacent bands. One
    # row-wise bincount over all bands of all maps (offset into one bin range) gives every band
    # histogram at once; this is several times faster on CPU than a flat bincount/segment sum
    # into [B * cells * bins] (whose per-thread partial outputs dominate).
    row_index = np.arange(win_rows)[:, None] * block_step + np.arange(block_size)[None, :]
    parts, offset = [], 0
    for codes, bins in zip(code_maps, num_bins):
        parts.append(tf.gather(codes[:, :, : band_cols * block_step] + offset, row_index, axis=1))
        offset += bins
    codes = tf.stack(parts, axis=-1)                    # [B, rows, block, band_cols*step, maps]
    codes = tf.reshape(codes, [-1, win_rows, block_size, band_cols, block_step, len(parts)])
    codes = tf.transpose(codes, [0, 1, 3, 2, 4, 5])
    codes = tf.reshape(codes, [-1, block_size * block_step * len(parts)])
    bands = tf.math.bincount(codes, minlength=total_bins, maxlength=total_bins, axis=-1,
                             dtype=tf.float32)
    bands = tf.reshape(bands, [-1, win_rows, band_cols, total_bins])
    windows = bands[:, :, :win_cols]
    for dx in range(1, k):
        windows += bands[:, :, dx: dx + win_cols]
    return tf.reduce_max(windows, axis=2)


def _normalize(rows: tf.Tensor, config: LomoConfig) -> tf.Tensor:
    """L2-normalises each feature group of float32 [B, rows, row_dim] (see LomoConfig.normalize)."""
    if config.normalize == "none":
        return rows
    axes = [1, 2] if config.normalize == "global" else [2]
    sizes = list(config.group_sizes)
    if config.siltp_groups == "joint":
        sizes = [sizes[0], sum(sizes[1:])]
    groups = tf.split(rows, sizes, axis=-1)
    return tf.concat([tf.math.l2_normalize(g, axis=axes, epsilon=1e-24) for g in groups], axis=-1)


def lomo(images, config: LomoConfig | None = None, **overrides) -> LomoFeatures:
    """LOMO features of a batch of images.

    Args:
      images: uint8 or float [batch, h, w, 3] RGB in [0, 255], any size (resized to
        config.height x config.width).
      config: LomoConfig; keyword overrides replace its fields (e.g. ``normalize="row"``).

    Returns:
      LomoFeatures(rows [batch, 40, 674], scales ([batch, 24, 674], [batch, 11, 674],
      [batch, 5, 674]), flat [batch, 26960]) for the defaults.
    """
    config = dataclasses.replace(config or LomoConfig(), **overrides)
    rgb = prepare_images(images, config.height, config.width)
    if config.retinex_sigmas and config.retinex == "msrcp":
        # Hue and saturation are the input's (see retinex.msrcp_value), V the Retinex's. H and
        # S are scale-free, so they come from the [0, 255] values themselves: no rounded
        # division first that a graph rewrite (x / 255 -> x * (1 / 255)) could move across a
        # bin edge, which integer RGB hits often (e.g. S = 1/2).
        hsv = tf.image.rgb_to_hsv(rgb)
        value = msrcp_value(rgb, config.retinex_sigmas, config.retinex_clip)
        bin_maps = quantise_hsv(tf.concat([hsv[..., :2], value], axis=-1), config.hsv_bins)
    else:
        colour = retinex(rgb, config.retinex, config.retinex_sigmas, config.retinex_clip_std,
                         config.retinex_clip) if config.retinex_sigmas else rgb / 255.0
        bin_maps = hsv_bin_maps(colour, config.hsv_bins)
    grey = grey_image(rgb, config.grey)
    per_scale = []
    for scale in range(config.num_scales):
        if scale:
            bin_maps, grey = pool_bins(bin_maps), pool_grey(grey)
        maps = [joint_hsv_codes(bin_maps, config.hsv_bins)]
        maps += [siltp_codes(grey, config.siltp_tau, r) for r in config.siltp_radii]
        per_scale.append(max_occurrence(maps, config.group_sizes, config.block_size,
                                        config.block_step))
    rows = _normalize(tf.math.log1p(tf.concat(per_scale, axis=1)), config)
    scales = tuple(tf.split(rows, list(config.rows_per_scale), axis=1))
    return LomoFeatures(rows=rows, scales=scales, flat=rows_to_flat(rows, config))


def rows_to_flat(rows: tf.Tensor, config: LomoConfig | None = None) -> tf.Tensor:
    """[batch, num_rows, row_dim] -> [batch, flat_dim] in the reference order (see LomoFeatures)."""
    config = config or LomoConfig()
    batch = tf.shape(rows)[0]
    return tf.concat([tf.reshape(g, [batch, -1])
                      for g in tf.split(rows, list(config.group_sizes), axis=-1)], axis=1)
