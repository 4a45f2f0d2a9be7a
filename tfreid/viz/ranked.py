"""Ranked lists: each query beside its top-k gallery images, framed green (same identity) or
red (another identity), one query per row.

The gallery is ranked as in `tfreid.evaluation.evaluate`: ascending distance, ties by gallery
index, and junk removed first (pid -1 entries, and entries of the query's identity seen by
the query's camera). The picture is composed pixel for pixel (no resampling of the frames), so
`RankedLayout.box` tells exactly where each framed cell lies in the PNG.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

from tfreid.data.records import JUNK_PID
from tfreid.viz.images import check_images, figure_of_canvas, framed, save_figure, text_at, to_rgb_uint8

CORRECT_RGB = (30, 160, 60)
WRONG_RGB = (215, 35, 35)
QUERY_RGB = (60, 60, 60)
BACKGROUND_RGB = (255, 255, 255)


@dataclasses.dataclass(frozen=True)
class RankedLayout:
    """Pixel geometry of a ranked-list picture (all sizes in pixels).

    Column 0 is the query, columns 1..top_k the ranks; rows are the chosen queries.
    """

    rows: int
    top_k: int
    cell_size: tuple[int, int] = (128, 64)
    frame: int = 4
    gap: int = 4
    query_gap: int = 18
    header: int = 18
    label: int = 26
    margin: int = 6

    @property
    def cell(self) -> tuple[int, int]:
        """(height, width) of a framed cell."""
        return self.cell_size[0] + 2 * self.frame, self.cell_size[1] + 2 * self.frame

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the whole picture."""
        ch, cw = self.cell
        height = 2 * self.margin + self.header + self.rows * (ch + self.label) + (self.rows - 1) * self.gap
        width = 2 * self.margin + (self.top_k + 1) * cw + (self.top_k - 1) * self.gap + self.query_gap
        return height, width

    def box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of framed cell (row, col), bottom/right exclusive."""
        ch, cw = self.cell
        top = self.margin + self.header + row * (ch + self.label + self.gap)
        left = self.margin + col * cw + (0 if col == 0 else self.query_gap + (col - 1) * self.gap)
        return top, left, top + ch, left + cw


def valid_ranking(distances: np.ndarray, q_pid: int, q_camid: int, g_pids: np.ndarray,
                  g_camids: np.ndarray) -> np.ndarray:
    """Gallery indices of one query in ranked order, junk removed (see the module docstring).

    Args:
      distances: [g] distances of the query to the gallery.
      q_pid, q_camid: the query's identity and camera.
      g_pids, g_camids: [g] of the gallery.

    Returns:
      int64 [g'] gallery indices, nearest first.
    """
    order = np.argsort(distances, kind="stable")
    junk = (g_pids == JUNK_PID) | ((g_pids == q_pid) & (g_camids == q_camid))
    return order[~junk[order]]


def _default_queries(distmat: np.ndarray, q_pids, g_pids, q_camids, g_camids, num: int) -> np.ndarray:
    """`num` queries evenly spread over those with a valid true match (the evaluated ones)."""
    valid = [i for i in range(len(q_pids))
             if np.any(g_pids[valid_ranking(distmat[i], q_pids[i], q_camids[i], g_pids, g_camids)]
                       == q_pids[i])]
    if not valid:
        valid = list(range(len(q_pids)))
    picks = np.linspace(0, len(valid) - 1, min(num, len(valid))).round().astype(int)
    return np.asarray(valid)[np.unique(picks)]


def plot_ranked_lists(query_images: Sequence, gallery_images: Sequence, distmat, q_pids, g_pids,
                      q_camids, g_camids, path: str | Path, top_k: int = 10, num_queries: int = 6,
                      query_indices: Sequence[int] | None = None,
                      cell_size: tuple[int, int] = (128, 64), show_distances: bool = True,
                      colors: int | None = 256, title: str = "") -> Path:
    """Writes a PNG of ranked lists: one row per query, the query then its top_k gallery images.

    Frames: dark grey around the query; green around a gallery image of the query's identity,
    red around any other. Under each gallery image: its identity, camera and distance; under the
    query: its identity, camera and the rank of its first true match (after junk removal).

    Args:
      query_images: q images, each a file path or uint8 / 0..255 float array [H, W, 3] (any
        size; only the shown ones are read).
      gallery_images: g images, likewise.
      distmat: [q, g] distances (smaller = more similar).
      q_pids, q_camids: [q] int identities and cameras of the queries.
      g_pids, g_camids: [g] of the gallery (pid -1 = junk).
      path: PNG file to write.
      top_k: gallery images per query.
      num_queries: rows when query_indices is None: queries evenly spread over those that have a
        true match in the gallery (all queries if none has).
      query_indices: the queries to show, in order (overrides num_queries).
      cell_size: (height, width) every image is resized to.
      show_distances: print the distance under each gallery image.
      colors: palette size of the PNG (frame and background colours kept exact; 256 makes the
        file about 3x smaller than full colour); None writes full RGB.
      title: text in the picture's top-left corner.

    Returns:
      The path written.
    """
    distmat = np.asarray(distmat, dtype=np.float64)
    if distmat.ndim != 2:
        raise ValueError(f"distmat must be [num_query, num_gallery], got shape {distmat.shape}")
    num_q, num_g = distmat.shape
    ids = {}
    for name, values, n, side in (("q_pids", q_pids, num_q, "rows"), ("q_camids", q_camids, num_q, "rows"),
                                  ("g_pids", g_pids, num_g, "columns"),
                                  ("g_camids", g_camids, num_g, "columns")):
        ids[name] = np.asarray(values).reshape(-1)
        if ids[name].shape != (n,):
            raise ValueError(f"{name} has {ids[name].size} entries but distmat {distmat.shape} "
                             f"has {n} {side}")
    q_pids, q_camids, g_pids, g_camids = ids["q_pids"], ids["q_camids"], ids["g_pids"], ids["g_camids"]
    check_images(query_images, num_q, "query_images", f"distmat {distmat.shape} (rows)")
    check_images(gallery_images, num_g, "gallery_images", f"distmat {distmat.shape} (columns)")
    if top_k < 1 or num_queries < 1:
        raise ValueError(f"top_k and num_queries must be >= 1, got top_k={top_k}, num_queries={num_queries}")
    if len(cell_size) != 2 or min(cell_size) < 8:
        raise ValueError(f"cell_size must be (height, width) of at least 8 pixels, got {cell_size}")
    if query_indices is None:
        rows = _default_queries(distmat, q_pids, g_pids, q_camids, g_camids, num_queries)
    else:
        rows = np.asarray(query_indices, dtype=np.int64).reshape(-1)
        if rows.size == 0 or rows.min() < 0 or rows.max() >= num_q:
            raise ValueError(f"query_indices must be non-empty indices in [0, {num_q}), got {list(rows)}")

    layout = RankedLayout(len(rows), top_k, tuple(int(s) for s in cell_size), header=32 if title else 18)
    canvas = np.empty(layout.shape + (3,), np.uint8)
    canvas[:] = BACKGROUND_RGB
    texts = []  # (x, y, text, colour)

    def place(row, col, image, color, where):
        top, left, bottom, right = layout.box(row, col)
        canvas[top:bottom, left:right] = framed(to_rgb_uint8(image, where), layout.cell_size,
                                                layout.frame, color)
        return (left + right) / 2, bottom + 2

    for row, i in enumerate(rows):
        ranking = valid_ranking(distmat[i], q_pids[i], q_camids[i], g_pids, g_camids)
        hits = np.flatnonzero(g_pids[ranking] == q_pids[i])
        first = f"1st match r{hits[0] + 1}" if hits.size else "no match"
        x, y = place(row, 0, query_images[i], QUERY_RGB, f"query_images[{i}]")
        texts.append((x, y, f"id {q_pids[i]} c{q_camids[i]}\n{first}", QUERY_RGB))
        for col, j in enumerate(ranking[:top_k], start=1):
            correct = g_pids[j] == q_pids[i]
            color = CORRECT_RGB if correct else WRONG_RGB
            x, y = place(row, col, gallery_images[j], color, f"gallery_images[{j}]")
            label = f"id {g_pids[j]} c{g_camids[j]}"
            if show_distances:
                label += f"\n{distmat[i, j]:.3g}"
            texts.append((x, y, label, color))

    fig = figure_of_canvas(canvas)
    header_y = layout.margin + layout.header - 4
    for col in range(top_k + 1):
        top, left, _, right = layout.box(0, col)
        text_at(fig, (left + right) / 2, header_y, "query" if col == 0 else str(col),
                ha="center", va="bottom", fontsize=8, fontweight="bold" if col == 0 else "normal")
    if title:
        text_at(fig, layout.margin, 2, title, ha="left", va="top", fontsize=8)
    for x, y, text, color in texts:
        text_at(fig, x, y, text, ha="center", va="top", fontsize=6.5, linespacing=1.15,
                color=np.asarray(color) / 255.0)
    return save_figure(fig, path, colors=colors,
                       reserved=(CORRECT_RGB, WRONG_RGB, QUERY_RGB, BACKGROUND_RGB) if colors else ())
