"""Drawing of the synthetic pedestrians (see `tfreid.data.synthetic` for the dataset).

A figure is drawn on a 2x supersampled canvas with OpenCV primitives and shrunk with area
interpolation (anti-aliased edges), then the camera's photometry is applied. Identities,
cameras and images each get their own random stream derived from (seed, kind, ids), so an
image depends only on its own keys, never on generation order.
"""

from __future__ import annotations

import numpy as np

_SS = 2  # supersampling factor of the drawing canvas (anti-aliased edges after INTER_AREA)

# Small palettes (RGB) so that colours collide between identities: patterns, bags and shape
# must be used to tell them apart.
_CLOTH = np.array([
    [200, 30, 30], [30, 60, 170], [40, 130, 60], [230, 200, 40], [240, 240, 235], [25, 25, 30],
    [120, 120, 125], [150, 90, 40], [230, 120, 30], [120, 40, 140], [90, 170, 220], [230, 140, 170],
], dtype=np.float32)
_LOWER = np.array([
    [25, 25, 30], [40, 55, 110], [110, 110, 115], [150, 120, 80], [220, 215, 200], [70, 45, 30],
    [60, 80, 50], [160, 30, 40],
], dtype=np.float32)
_SKIN = np.array([[240, 200, 170], [210, 160, 120], [170, 120, 85], [110, 75, 50]], np.float32)
_HAIR = np.array([[20, 15, 10], [70, 45, 25], [150, 110, 60], [200, 180, 130], [120, 120, 120]],
                 np.float32)


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """An independent random stream for (seed, kind, ids...); all keys are ints >= 0."""
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


def _jitter(rng, color, amount=18.0):
    return np.clip(color + rng.normal(0, amount, 3), 0, 255).astype(np.float32)


def identity(seed: int, pid: int, distractor: bool = False) -> dict:
    """Appearance of person `pid` (distractor number `pid` if `distractor`)."""
    rng = rng_for(seed, 5 if distractor else 1, pid)
    upper = _jitter(rng, _CLOTH[rng.integers(len(_CLOTH))])
    return {
        "upper": upper,
        "upper2": _jitter(rng, _CLOTH[rng.integers(len(_CLOTH))]),
        "pattern": rng.choice(["plain", "plain", "hstripes", "vstripes", "checks"]),
        "period": float(rng.uniform(0.035, 0.07)),   # stripe period, fraction of height
        "long_sleeves": bool(rng.random() < 0.6),
        "lower": _jitter(rng, _LOWER[rng.integers(len(_LOWER))]),
        "lower_kind": rng.choice(["trousers", "trousers", "shorts", "skirt"]),
        "shoes": _jitter(rng, _LOWER[rng.integers(3)], 10),
        "skin": _jitter(rng, _SKIN[rng.integers(len(_SKIN))], 8),
        "hair": _jitter(rng, _HAIR[rng.integers(len(_HAIR))], 8),
        "long_hair": bool(rng.random() < 0.3),
        "bag": rng.choice(["none", "none", "backpack", "shoulder", "hand"]),
        "bag_color": _jitter(rng, _CLOTH[rng.integers(len(_CLOTH))]),
        "height": float(rng.uniform(0.84, 1.0)),
        "width": float(rng.uniform(0.8, 1.2)),
    }


def camera(seed: int, cam: int, shape: tuple[int, int], shift: float = 1.0) -> dict:
    """Parameters of camera `cam` for images of `shape` (H, W): preferred view, photometry,
    framing, and a background strip [H, 3W, 3] float32 (RGB 0..255).

    `shift` scales how far the camera's colour cast, gain and gamma are from neutral (1: the
    default data; 3: cameras whose colours differ strongly, as across real camera networks).
    """
    rng = rng_for(seed, 2, cam)
    h, w = shape
    views = ["front", "back", "side"]

    def muted(low, high, tint=8.0):  # greyish colour: a grey level plus a small tint
        return rng.uniform(low, high) + rng.normal(0, tint, 3)

    wall = muted(110, 160)
    ground = wall * rng.uniform(0.7, 0.95) + rng.normal(0, 8, 3)
    # A background strip 3x wider than the image; each image shows a random window of it.
    bg = np.empty((h, 3 * w, 3), np.float32)
    horizon = int(h * rng.uniform(0.55, 0.8))
    bg[:horizon] = wall
    bg[horizon:] = ground
    for _ in range(int(rng.integers(3, 7))):  # boxes: doors, windows, bushes, signs
        x0, y0 = int(rng.integers(0, 3 * w)), int(rng.integers(0, horizon))
        bw, bh = int(rng.integers(w // 8, w // 2)), int(rng.integers(h // 12, h // 3))
        bg[y0:y0 + bh, x0:x0 + bw] = 0.6 * wall + 0.4 * muted(30, 230, 30)
    bg += np.linspace(-25, 25, h, dtype=np.float32)[:, None, None] * rng.choice([-1, 1])
    cast = rng.uniform(0.88, 1.12, 3)
    view = views[cam % 3] if cam < 3 else views[int(rng.integers(3))]
    gain = rng.uniform(0.8, 1.15)
    cast = np.maximum(1 + shift * (cast - 1), 0.05) if shift != 1.0 else cast
    gain = max(1 + shift * (gain - 1), 0.3) if shift != 1.0 else gain
    gamma = rng.uniform(0.85, 1.15)  # (draws in the order of version 1: default data unchanged)
    gamma = max(1 + shift * (gamma - 1), 0.3) if shift != 1.0 else gamma
    return {
        "view": view,
        "gain": float(gain),
        "cast": (cast / cast.mean()).astype(np.float32),   # chromatic only; gain is separate
        "gamma": float(gamma),
        "noise": float(rng.uniform(2.0, 7.0)),
        "blur": float(rng.uniform(0.0, 1.2)),
        "scale": float(rng.uniform(0.86, 0.96)),
        "shift": float(rng.uniform(-0.04, 0.04)),
        "background": np.clip(bg, 0, 255),
    }


def _pattern(ident: dict, top: float, center: float, height: float):
    """Upper-clothes texture anchored at the torso: a colour, or fn(ys, xs) -> [n, 3] colours."""
    kind = ident["pattern"]
    if kind == "plain":
        return ident["upper"]
    period = max(ident["period"] * height, 3.0)
    colors = np.stack([ident["upper"], ident["upper2"]])

    def texture(ys, xs):
        yy, xx = ys - top, xs - center
        if kind == "hstripes":
            sel = (yy // (period / 2)) % 2
        elif kind == "vstripes":
            sel = (xx // (period / 2)) % 2
        else:
            sel = ((yy // period) + (xx // period)) % 2
        return colors[sel.astype(np.intp)]

    return texture


def _paint(canvas: np.ndarray, draw, texture) -> None:
    """Draws a shape with `draw(image, color)`, filled with `texture` (a colour or a function
    of pixel coordinates, see `_pattern`)."""
    if not callable(texture):  # plain colour: draw straight onto the canvas
        draw(canvas, tuple(float(v) for v in texture))
        return
    mask = np.zeros(canvas.shape[:2], np.uint8)
    draw(mask, 255)
    ys, xs = np.nonzero(mask)
    canvas[ys, xs] = texture(ys.astype(np.float32), xs.astype(np.float32))


def render(ident: dict, cam: dict, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """One [H, W, 3] uint8 RGB image of `ident` seen by `cam`; `size` = (H, W); all per-image
    randomness (view, pose, framing, lighting, occluder, noise) comes from `rng`."""
    import cv2

    h, w = size[0] * _SS, size[1] * _SS
    offset = int(rng.integers(0, cam["background"].shape[1] - size[1]))
    bg = cam["background"][:, offset:offset + size[1]]
    canvas = cv2.resize(bg, (w, h), interpolation=cv2.INTER_NEAREST).astype(np.float32)

    view = cam["view"] if rng.random() < 0.75 else ["front", "back", "side"][int(rng.integers(3))]
    flip = bool(rng.random() < 0.5)
    fh = h * cam["scale"] * ident["height"] * rng.uniform(0.94, 1.06)   # figure height
    foot = h * rng.uniform(0.95, 0.99)
    top = foot - fh
    cx = w * (0.5 + cam["shift"] + rng.uniform(-0.03, 0.03))
    wf = ident["width"] * (0.62 if view == "side" else 1.0)
    head_r = 0.065 * fh
    sh_y, hip_y = top + 0.19 * fh, top + 0.53 * fh
    sw, hw = 0.15 * fh * wf, 0.115 * fh * wf
    leg_w, arm_w = max(int(0.085 * fh * ident["width"]), 2), max(int(0.06 * fh), 2)
    stride = 0.10 * fh * rng.uniform(-1, 1)
    swing = 0.12 * fh * rng.uniform(-1, 1)
    side = -1 if flip else 1  # which side carries the bag / is the back in side view

    def pt(x, y):
        return (int(round(x)), int(round(y)))

    def poly(points):
        return lambda m, col: cv2.fillPoly(m, [np.array([pt(*p) for p in points], np.int32)], col)

    def line(p, q, t):
        return lambda m, col: cv2.line(m, pt(*p), pt(*q), col, int(t))

    def ellipse(center, axes, start=0, end=360):
        size = (max(int(axes[0]), 1), max(int(axes[1]), 1))
        return lambda m, col: cv2.ellipse(m, pt(*center), size, 0, start, end, col, -1)

    def box(x0, y0, x1, y1):
        return poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])

    hips = [(cx - hw, hip_y), (cx + hw, hip_y)]
    feet = [(cx - hw * 0.55 + stride, foot), (cx + hw * 0.55 - stride, foot)]
    knees = [((a[0] + b[0]) / 2, (hip_y + foot) / 2) for a, b in zip(hips, feet)]
    hands = [(cx - sw - 0.02 * fh + swing * 0.5, hip_y + 0.02 * fh),
             (cx + sw + 0.02 * fh - swing * 0.5, hip_y + 0.02 * fh)]
    shoulders = [(cx - sw + arm_w / 2, sh_y + arm_w / 2), (cx + sw - arm_w / 2, sh_y + arm_w / 2)]
    upper_tex = _pattern(ident, sh_y, w / 2, fh)
    bag_behind = ident["bag"] == "backpack" and view != "back"

    if bag_behind and view == "side":  # backpack sticks out behind the back
        bx = cx - side * (sw + 0.08 * fh)
        _paint(canvas, poly([(bx, sh_y + 0.02 * fh), (cx, sh_y + 0.02 * fh), (cx, sh_y + 0.28 * fh),
                             (bx, sh_y + 0.28 * fh)]), ident["bag_color"])
    # Legs: trousers to the ankle, shorts/skirt leave the lower legs bare.
    for hip, knee, ft in zip(hips, knees, feet):
        _paint(canvas, line(hip, ft, leg_w), ident["lower"] if ident["lower_kind"] == "trousers"
               else ident["skin"])
        if ident["lower_kind"] == "shorts":
            _paint(canvas, line(hip, knee, leg_w + 1), ident["lower"])
        _paint(canvas, ellipse((ft[0], ft[1] - leg_w * 0.3), (leg_w * 0.8, leg_w * 0.45)),
               ident["shoes"])
    if ident["lower_kind"] == "skirt":
        _paint(canvas, poly([hips[0], hips[1], (cx + hw * 1.5, (hip_y + foot) / 2 + 0.03 * fh),
                             (cx - hw * 1.5, (hip_y + foot) / 2 + 0.03 * fh)]), ident["lower"])
    else:
        _paint(canvas, poly([(cx - hw, hip_y - 0.03 * fh), (cx + hw, hip_y - 0.03 * fh),
                             (cx + hw, hip_y + 0.06 * fh), (cx - hw, hip_y + 0.06 * fh)]),
               ident["lower"])
    # Torso and sleeves share one textured mask; then bare forearms and hands.
    arms = []
    for i in ([1] if view == "side" else [0, 1]):
        sh, hd = shoulders[i], hands[i]
        if view == "side":
            sh, hd = (cx, sh_y + arm_w / 2), (cx + swing, hip_y + 0.02 * fh)
        arms.append((sh, ((sh[0] + hd[0]) / 2, (sh[1] + hd[1]) / 2), hd))
    torso = poly([(cx - sw, sh_y), (cx + sw, sh_y), hips[1], hips[0]])
    sleeves = [line(sh, hd if ident["long_sleeves"] else elbow, arm_w) for sh, elbow, hd in arms]

    def upper_body(m, col):
        for part in [torso] + sleeves:
            part(m, col)

    _paint(canvas, upper_body, upper_tex)
    for sh, elbow, hd in arms:
        if not ident["long_sleeves"]:
            _paint(canvas, line(elbow, hd, arm_w), ident["skin"])
        _paint(canvas, ellipse(hd, (arm_w * 0.55, arm_w * 0.55)), ident["skin"])
    # Head and hair; seen from the back the hair covers the head.
    head = (cx, top + head_r)
    _paint(canvas, line((cx, top + head_r), (cx, sh_y), max(int(head_r * 0.8), 1)), ident["skin"])
    if ident["long_hair"]:
        _paint(canvas, poly([(cx - head_r * 1.05, top + head_r), (cx + head_r * 1.05, top + head_r),
                             (cx + head_r * 1.1, sh_y + 0.05 * fh),
                             (cx - head_r * 1.1, sh_y + 0.05 * fh)]), ident["hair"])
    _paint(canvas, ellipse(head, (head_r, head_r)),
           ident["hair"] if view == "back" else ident["skin"])
    _paint(canvas, ellipse((head[0], head[1] - head_r * 0.25), (head_r * 1.02, head_r * 0.8),
                           180, 360), ident["hair"])
    # Bags in front of the body.
    if ident["bag"] == "backpack" and view == "back":
        _paint(canvas, poly([(cx - sw * 0.8, sh_y + 0.02 * fh), (cx + sw * 0.8, sh_y + 0.02 * fh),
                             (cx + sw * 0.75, sh_y + 0.3 * fh), (cx - sw * 0.75, sh_y + 0.3 * fh)]),
               ident["bag_color"])
    elif ident["bag"] == "backpack" and view == "front":
        for sx in (-0.55, 0.55):
            _paint(canvas, line((cx + sx * sw, sh_y), (cx + sx * sw * 0.9, sh_y + 0.22 * fh),
                                max(arm_w // 3, 1)), ident["bag_color"])
    elif ident["bag"] == "shoulder":
        bx = cx + side * (sw + 0.02 * fh)
        _paint(canvas, line((cx - side * sw * 0.8, sh_y), (bx, hip_y - 0.02 * fh),
                            max(arm_w // 3, 1)), ident["bag_color"])
        _paint(canvas, box(bx - 0.06 * fh, hip_y - 0.06 * fh, bx + 0.06 * fh, hip_y + 0.06 * fh),
               ident["bag_color"])
    elif ident["bag"] == "hand":
        hd = hands[1 if side > 0 else 0] if view != "side" else (cx + swing, hip_y + 0.02 * fh)
        _paint(canvas, poly([(hd[0] - 0.05 * fh, hd[1]), (hd[0] + 0.05 * fh, hd[1]),
                             (hd[0] + 0.06 * fh, hd[1] + 0.13 * fh),
                             (hd[0] - 0.06 * fh, hd[1] + 0.13 * fh)]),
               ident["bag_color"])
    # Sometimes an occluder (pole, passer-by's shoulder, bin) covers part of the figure.
    if rng.random() < 0.2:
        x0 = rng.uniform(0, w)
        y0 = rng.uniform(0.3 * h, 0.8 * h)
        _paint(canvas, poly([(x0, y0), (x0 + rng.uniform(0.1, 0.35) * w, y0),
                             (x0 + rng.uniform(0.1, 0.35) * w, h), (x0, h)]),
               rng.uniform(20, 235, 3).astype(np.float32))
    if flip:
        canvas = canvas[:, ::-1]
    img = cv2.resize(np.ascontiguousarray(canvas), (size[1], size[0]), interpolation=cv2.INTER_AREA)
    # Camera photometry: gain, colour cast, gamma, blur, sensor noise.
    gain = cam["gain"] * rng.uniform(0.88, 1.12)
    img = np.clip(img * np.float32(gain / 255.0) * cam["cast"], 0, 1)
    img = np.float32(255.0) * img ** np.float32(cam["gamma"])
    if cam["blur"] > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), cam["blur"])
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(cam["noise"])
    return np.clip(np.round(img), 0, 255).astype(np.uint8)
