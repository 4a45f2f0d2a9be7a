"""A seeded synthetic re-ID dataset written in Market-1501 layout (the embedded demo data).

Each identity is a pedestrian-like figure (head, hair, torso, arms, legs, shoes, optional bag)
with its own clothing colours (drawn from small palettes, so colours alone collide between
people), upper-body pattern (plain, horizontal/vertical stripes, checks), sleeve and trouser
length, bag and body shape. Each camera has its own illumination, colour cast, gamma, blur,
noise, background, preferred viewpoint (front / back / side) and framing (scale, shift); each
image adds pose, jitter, lighting changes and sometimes an occluder. The result is learnable but
not trivial: raw-pixel Euclidean matching is far from perfect (see tests/data/test_synthetic.py).

Everything is a function of (seed, kind, ids): identity k looks the same whatever
`num_train_ids` is, and the same seed gives byte-identical files.

Layout written (names `PPPP_cCs1_FFFFFF_00.jpg`, cameras 1-based in names, pid 0 distractors)::

    out_dir/bounding_box_train/   every image of train ids 1..num_train_ids
    out_dir/query/                image 0 of each (test id, camera)
    out_dir/bounding_box_test/    the other images of test ids, then distractors (pid 0)
    out_dir/synthetic.json        the configuration (a folder with the same one is not rewritten)
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np

from tfreid.data.records import ReIDSplit
from tfreid.data.synthetic_render import camera, identity, render, rng_for

GENERATOR_VERSION = 1
CONFIG_NAME = "synthetic.json"
_SUBDIRS = ("bounding_box_train", "query", "bounding_box_test")
_NAME = re.compile(r"\d{4}_c\d+s1_\d{6}_00\.jpg")


def _config(num_train_ids, num_test_ids, num_cameras, images_per_camera, size, num_distractors,
            seed) -> dict:
    values = dict(num_train_ids=num_train_ids, num_test_ids=num_test_ids, num_cameras=num_cameras,
                  images_per_camera=images_per_camera, num_distractors=num_distractors, seed=seed)
    for key, value in values.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise TypeError(f"synthetic: {key} must be an int, got {value!r}.")
    minimum = dict(num_train_ids=1, num_test_ids=1, num_cameras=2, images_per_camera=2,
                   num_distractors=0, seed=0)
    for key, low in minimum.items():
        if values[key] < low:
            raise ValueError(f"synthetic: {key}={values[key]} must be >= {low}.")
    if num_cameras > 9:
        raise ValueError(f"synthetic: num_cameras={num_cameras} must be <= 9 (one digit in names).")
    if num_train_ids + num_test_ids > 9999:
        raise ValueError("synthetic: num_train_ids + num_test_ids must be <= 9999 (4-digit pids).")
    if (len(size) != 2 or not all(isinstance(s, (int, np.integer)) for s in size)
            or not (16 <= size[0] <= 1024 and 8 <= size[1] <= 1024)):
        raise ValueError(f"synthetic: size must be (height, width) ints in [16, 1024] x [8, 1024], "
                         f"got {size!r}.")
    return {"version": GENERATOR_VERSION, **{k: int(v) for k, v in values.items()},
            "size": [int(size[0]), int(size[1])], "complete": True}


def _read_config(out: Path) -> dict | None:
    try:
        return json.loads((out / CONFIG_NAME).read_text())
    except (OSError, ValueError):
        return None


def _clear(out: Path) -> None:
    """Removes a previous synthetic dataset, refusing to touch files it did not write."""
    if not (out / CONFIG_NAME).is_file():
        for sub in _SUBDIRS:
            if (out / sub).is_dir() and any((out / sub).iterdir()):
                raise FileExistsError(
                    f"synthetic: {str(out / sub)!r} is not empty and {str(out)!r} has no "
                    f"{CONFIG_NAME}: not a generated folder, not overwriting it.")
    for sub in _SUBDIRS:
        folder = out / sub
        if not folder.is_dir():
            continue
        foreign = [p.name for p in folder.iterdir() if not _NAME.fullmatch(p.name)]
        if foreign:
            raise FileExistsError(f"synthetic: {str(folder)!r} holds files the generator did not "
                                  f"write (e.g. {foreign[0]!r}); not overwriting it.")
        shutil.rmtree(folder)
    (out / CONFIG_NAME).unlink(missing_ok=True)


def generate(out_dir: str | os.PathLike, num_train_ids: int = 60, num_test_ids: int = 40,
             num_cameras: int = 3, images_per_camera: int = 4, size: tuple[int, int] = (128, 48),
             num_distractors: int = 0, seed: int = 0, num_ids: int | None = None,
             camera_shift: float = 1.0) -> Path:
    """Writes the synthetic dataset in Market-1501 layout under `out_dir` (see module docstring).

    Args:
      out_dir: target folder (created). If it holds `synthetic.json` with the same
        configuration nothing is written; with another configuration the previous images are
        replaced; a folder with foreign files in the split folders is never overwritten.
      num_train_ids, num_test_ids: identities in train (pids 1..) and test (pids after them).
      num_cameras: cameras (2..9), each seeing every identity.
      images_per_camera: images per identity and camera (>= 2: one goes to query).
      size: (height, width) of the images, e.g. (128, 48) or (128, 64).
      num_distractors: extra one-off people in the gallery with pid 0.
      seed: everything is a function of it.
      num_ids: shorthand: if given, num_train_ids = num_ids - num_ids * 2 // 5, num_test_ids =
        num_ids * 2 // 5 (60/40).
      camera_shift: how far each camera's colour cast, gain and gamma are from neutral, in
        (0, 5]: 1 the default; larger makes the same person look more different across cameras
        (a task where a learned model beats its input features, as in `make demo`).

    Returns:
      Path of `out_dir`.

    Raises:
      TypeError / ValueError: a bad argument (named). FileExistsError: foreign files in the way.
    """
    import cv2

    if num_ids is not None:
        num_train_ids, num_test_ids = num_ids - num_ids * 2 // 5, num_ids * 2 // 5
    config = _config(num_train_ids, num_test_ids, num_cameras, images_per_camera, tuple(size),
                     num_distractors, seed)
    if not 0 < camera_shift <= 5:
        raise ValueError(f"synthetic: camera_shift={camera_shift} must be in (0, 5].")
    if camera_shift != 1.0:  # recorded only when set: folders of the default data stay valid
        config["camera_shift"] = float(camera_shift)
    out = Path(out_dir)
    config_path = out / CONFIG_NAME
    if _read_config(out) == config and all((out / s).is_dir() for s in _SUBDIRS):
        return out
    _clear(out)
    for sub in _SUBDIRS:
        (out / sub).mkdir(parents=True, exist_ok=True)
    # Written first as incomplete (so an interrupted run is recognised and redone), then complete.
    config_path.write_text(json.dumps({**config, "complete": False}, indent=1) + "\n")

    hw = tuple(config["size"])
    cams = [camera(seed, c, hw, camera_shift) for c in range(num_cameras)]
    params = [int(cv2.IMWRITE_JPEG_QUALITY), 95]

    def write(sub, pid, cam, frame, image):
        path = out / sub / f"{pid:04d}_c{cam + 1}s1_{frame:06d}_00.jpg"
        if not cv2.imwrite(str(path), image[..., ::-1], params):
            raise OSError(f"synthetic: could not write {str(path)!r}.")

    for pid in range(1, num_train_ids + num_test_ids + 1):
        ident = identity(seed, pid)
        for c, cam in enumerate(cams):
            for k in range(images_per_camera):
                image = render(ident, cam, rng_for(seed, 3, pid, c, k), hw)
                if pid <= num_train_ids:
                    sub = "bounding_box_train"
                else:
                    sub = "query" if k == 0 else "bounding_box_test"
                write(sub, pid, c, k, image)
    for d in range(num_distractors):
        rng = rng_for(seed, 4, d)
        c = int(rng.integers(num_cameras))
        image = render(identity(seed, d, distractor=True), cams[c], rng, hw)
        write("bounding_box_test", 0, c, d, image)
    config_path.write_text(json.dumps(config, indent=1) + "\n")
    return out


def load(root: str | os.PathLike | None = None, **generate_kwargs) -> ReIDSplit:
    """The synthetic dataset as a ReIDSplit, generating it first when needed.

    Args:
      root: the dataset folder; None uses `<tfreid home>/synthetic` (`$TFREID_HOME`).
      **generate_kwargs: `generate` arguments. Without any, an existing generated folder is
        loaded as it is (whatever its configuration) and a missing one is generated with the
        defaults; with some, the folder is (re)generated to match them.

    Returns:
      ReIDSplit named "synthetic" (Market-1501 conventions: camid 0-based, pid 0 distractors).
    """
    from tfreid import paths
    from tfreid.data.market import load_market_layout

    out = Path(root) if root is not None else paths.home() / "synthetic"
    if not generate_kwargs:
        old = _read_config(out)
        if old is not None:  # keep the folder's own configuration (redo it if interrupted)
            generate_kwargs = {k: v for k, v in old.items() if k not in ("version", "complete")}
    generate(out, **generate_kwargs)
    return load_market_layout(out, "synthetic")
