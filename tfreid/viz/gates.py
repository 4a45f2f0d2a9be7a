"""LSTM gate heat maps (Varior et al., ECCV 2016, Fig. 3): each image beside the L2 norms of its
input, forget and output gate vectors per row, drawn as heat-map columns aligned with the image
stripes the rows were computed from.

Multi-scale LOMO has 24 + 11 + 5 rows: one group of three columns per scale (per_scale models
run one LSTM per scale, so each group is the gates of its own LSTM). Each row is drawn over the
image band it describes: with `lomo_row_spans`, row r of scale s is centred on its sub-window
(rows overlap by half, so each is drawn one step high around its centre); without spans, the
rows of each scale tile the image height evenly (right for Color Names stripes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.collections import PolyCollection
from matplotlib.colors import Normalize

from tfreid.viz.images import check_images, save_figure, to_rgb_uint8

GATES = ("input", "forget", "output")
NORMALIZATIONS = ("gate", "none")


def lomo_row_spans(config=None) -> np.ndarray:
    """Image bands of the LOMO rows, for `plot_gate_heatmaps(row_spans=...)`.

    Args:
      config: a `tfreid.features.lomo_ops.LomoConfig` (or anything with height, block_size,
        block_step, scale_sizes, rows_per_scale); None = the default 128 x 48 configuration.

    Returns:
      float64 [R, 2] (top, bottom) as fractions of the image height, scales in row order: row r
      of scale s is its sub-window's centre +- half a step (step and window scaled by the
      scale's down-sampling), so the rows of one scale tile the band they cover.
    """
    if config is None:
        from tfreid.features.lomo_ops import LomoConfig
        config = LomoConfig()
    spans = []
    for (scale_height, _), rows in zip(config.scale_sizes, config.rows_per_scale):
        factor = config.height / scale_height
        for r in range(rows):
            centre = (r * config.block_step + config.block_size / 2) * factor
            spans.append((centre - config.block_step * factor / 2, centre + config.block_step * factor / 2))
    return np.asarray(spans, dtype=np.float64) / config.height


def even_row_spans(scales: Sequence[int]) -> np.ndarray:
    """[sum(scales), 2] spans where the rows of each scale tile the image height evenly."""
    spans = [(r / n, (r + 1) / n) for n in scales for r in range(n)]
    return np.asarray(spans, dtype=np.float64)


def _check(images, gate_norms, scales, row_spans, show_scales, labels):
    norms = np.asarray(gate_norms, dtype=np.float64)
    if norms.ndim != 3 or norms.shape[2] != 3:
        raise ValueError("gate_norms must be [batch, rows, 3] (input, forget, output), "
                         f"got shape {norms.shape}")
    batch, rows, _ = norms.shape
    if batch == 0 or rows == 0:
        raise ValueError(f"gate_norms is empty: shape {norms.shape}")
    if not np.all(np.isfinite(norms)):
        raise ValueError("gate_norms contains NaN or infinite values")
    check_images(images, batch, "images", f"gate_norms {norms.shape} (batch)")
    scales = (rows,) if scales is None else tuple(int(s) for s in scales)
    if min(scales) < 1 or sum(scales) != rows:
        raise ValueError(f"scales {scales} must be positive row counts summing to the {rows} rows "
                         f"of gate_norms {norms.shape}")
    spans = even_row_spans(scales) if row_spans is None else np.asarray(row_spans, np.float64)
    if spans.shape != (rows, 2) or np.any(spans[:, 1] <= spans[:, 0]):
        raise ValueError(f"row_spans must be [{rows}, 2] (top < bottom, fractions of the image "
                         f"height), got shape {spans.shape}")
    show = tuple(range(len(scales))) if show_scales is None else tuple(int(k) for k in show_scales)
    if not show or min(show) < 0 or max(show) >= len(scales):
        raise ValueError(f"show_scales must be non-empty indices into scales {scales}, got {show_scales}")
    if labels is not None and len(labels) != batch:
        raise ValueError(f"labels has {len(labels)} entries but gate_norms has {batch} images")
    return norms, scales, spans, show


def _normalized(norms: np.ndarray, scales: tuple[int, ...], normalize: str) -> np.ndarray:
    """'gate': each (gate, scale) group min-max rescaled to [0, 1] over all images."""
    if normalize == "none":
        return norms
    out = np.empty_like(norms)
    bounds = np.cumsum((0,) + scales)
    for s in range(len(scales)):
        block = norms[:, bounds[s]:bounds[s + 1]]
        lo, hi = block.min(axis=(0, 1)), block.max(axis=(0, 1))
        span = np.where(hi > lo, hi - lo, 1.0)
        out[:, bounds[s]:bounds[s + 1]] = (block - lo) / span
    return out


def plot_gate_heatmaps(images: Sequence, gate_norms, path: str | Path, *,
                       scales: Sequence[int] | None = None, row_spans=None,
                       show_scales: Sequence[int] | None = None, labels: Sequence[str] | None = None,
                       normalize: str = "gate", panels_per_row: int = 6, panel_height: float = 2.4,
                       cmap: str = "magma", title: str = "") -> Path:
    """Writes a PNG of images, each beside heat-map columns of its per-row gate norms.

    Args:
      images: B images, each a file path or uint8 / 0..255 float array [H, W, 3].
      gate_norms: [B, R, 3] L2 norms of the input, forget and output gate vectors per row, as
        returned by `tfreid.models.lstm_gates.gate_norms` (rows top to bottom, scales in order).
      path: PNG file to write.
      scales: rows per scale summing to R, e.g. (24, 11, 5) for LOMO; None = one scale.
      row_spans: [R, 2] (top, bottom) image band of each row as fractions of the image height
        (`lomo_row_spans()` for LOMO); None = the rows of each scale tile the height evenly.
      show_scales: indices of the scales to draw (default all), e.g. (0,) for the finest only.
      labels: B captions (e.g. "id 12 c0").
      normalize: "gate": each gate of each scale is min-max rescaled over all images in the
        figure (comparable across images; the forget gate, started with bias +1, would otherwise
        saturate the shared colour range); "none": raw norms on one shared colour range.
      panels_per_row: images per figure row.
      panel_height: height of an image in inches (100 pixels per inch).
      cmap: matplotlib colour map.
      title: figure title.

    Returns:
      The path written.
    """
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    if panels_per_row < 1 or panel_height <= 0:
        raise ValueError(f"panels_per_row must be >= 1 and panel_height > 0, "
                         f"got {panels_per_row}, {panel_height}")
    norms, scales, spans, show = _check(images, gate_norms, scales, row_spans, show_scales, labels)
    values = _normalized(norms, scales, normalize)
    pictures = [to_rgb_uint8(image, f"images[{b}]") for b, image in enumerate(images)]
    aspect = float(np.clip(np.median([p.shape[1] / p.shape[0] for p in pictures]), 0.25, 1.0))

    # Geometry in inches: [image | gap | heat group | gap | heat group ...], panels side by side.
    image_w, heat_w, inner_gap, panel_gap = panel_height * aspect, 0.36, 0.05, 0.32
    panel_w = image_w + len(show) * (inner_gap + heat_w)
    left, right, top, bottom = 0.12, 0.9, 0.42 + (0.3 if title else 0.0), 0.28
    cols = min(panels_per_row, len(pictures))
    grid_rows = -(-len(pictures) // cols)
    row_h = top + panel_height + bottom - 0.18
    fig_w = left + cols * panel_w + (cols - 1) * panel_gap + right
    fig_h = grid_rows * row_h + 0.18
    fig = plt.figure(figsize=(fig_w, fig_h), dpi=100)

    def axes_at(x, y, w, h):  # inches from the top-left corner
        return fig.add_axes((x / fig_w, 1 - (y + h) / fig_h, w / fig_w, h / fig_h))

    norm = Normalize(0.0, 1.0) if normalize == "gate" else Normalize(float(values.min()), float(values.max()))
    bounds = np.cumsum((0,) + scales)
    for b, picture in enumerate(pictures):
        x = left + (b % cols) * (panel_w + panel_gap)
        y = (b // cols) * row_h + top
        ax = axes_at(x, y, image_w, panel_height)
        ax.imshow(picture, extent=(0, 1, 1, 0), aspect="auto", interpolation="antialiased")
        ax.set_axis_off()
        if labels is not None:
            ax.set_title(str(labels[b]), fontsize=7, pad=14 if len(show) else 3, loc="left")
        x += image_w
        for s in show:
            x += inner_gap
            ax = axes_at(x, y, heat_w, panel_height)
            rows = range(bounds[s], bounds[s + 1])
            polys = [[(g, spans[r, 0]), (g + 1, spans[r, 0]), (g + 1, spans[r, 1]), (g, spans[r, 1])]
                     for r in rows for g in range(3)]
            cells = PolyCollection(polys, array=values[b, bounds[s]:bounds[s + 1]].reshape(-1),
                                   cmap=cmap, norm=norm, edgecolors="face", linewidths=0.2)
            ax.add_collection(cells)
            ax.set_xlim(0, 3)
            ax.set_ylim(1, 0)
            ax.set_xticks([0.5, 1.5, 2.5], ["i", "f", "o"], fontsize=7)
            ax.tick_params(length=0, pad=2)
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if len(scales) > 1:
                ax.set_title(f"s{s + 1}\n{scales[s]} rows", fontsize=6, pad=2, linespacing=1.0)
            x += heat_w
    cax = axes_at(fig_w - right + 0.25, top, 0.1, panel_height)
    bar = fig.colorbar(ScalarMappable(norm, cmap), cax=cax)
    bar.ax.tick_params(labelsize=6)
    bar.set_label("L2 norm of the i(nput), f(orget), o(utput) gate"
                  + ("\n(min-max rescaled per gate and scale)" if normalize == "gate" else ""), fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9, x=left / fig_w, y=1 - 0.08 / fig_h, ha="left", va="top")
    return save_figure(fig, path)
