"""Batch feature extraction over image files, and the `.npz` feature file format.

File format (written by `save_features`: a compressed `.npz`, no pickled objects): for each
split S in (train, query, gallery) and feature F in the extracted features:
``S_F`` float [n, ...] (``lomo``: [n, 40, 674] rows; ``cn``: [n, 16, 350]), ``S_pids`` int64 [n],
``S_camids`` int64 [n], ``S_paths`` unicode [n]; plus ``dataset`` (unicode scalar),
``features`` (unicode [k]), ``lomo_config`` (JSON unicode scalar) and ``cn_codebook``
([num_words, 11]) / ``cn_config`` (JSON) when present.
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from tfreid import images
from tfreid.features import colornames as cn
from tfreid.features.codebook import fit_codebook
from tfreid.features.lomo_ops import LomoConfig, lomo
from tfreid.progress import bar as progress_bar

FEATURES = ("lomo", "cn")
SPLITS = ("train", "query", "gallery")


def image_dataset(paths: Sequence[str], sizes: Mapping[str, tuple[int, int]],
                  batch_size: int = 64) -> tf.data.Dataset:
    """Decodes image files once and resizes them to each requested size.

    Args:
      paths: image files (any format `tfreid.images` reads), decoded as RGB.
      sizes: name -> (H, W); bilinear resize with antialiasing.
      batch_size: images per batch.

    Returns:
      tf.data.Dataset of dicts name -> float32 [batch, H, W, 3] in [0, 255].
    """
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"{len(missing)} image files do not exist, e.g. {missing[0]!r}.")

    def load(path):
        image = images.tf_read_image(path)  # decoded once, resized to every size
        return {name: images.resize(image, size) for name, size in sizes.items()}

    return (tf.data.Dataset.from_tensor_slices(list(paths))
            .map(load, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size).prefetch(2))


def lomo_extractor(config: LomoConfig | None = None) -> tuple[tuple[int, int], Callable]:
    """((H, W), compiled fn images -> LOMO rows [batch, rows, row_dim])."""
    config = config or LomoConfig()
    fn = tf.function(lambda images: lomo(images, config).rows, reduce_retracing=True)
    return (config.height, config.width), fn


def cn_extractor(table, codebook, config: cn.ColorNamesConfig | None = None):
    """((H, W), compiled fn images -> Colour Names BoW [batch, stripes, words])."""
    config = config or cn.ColorNamesConfig()
    table = tf.constant(cn.validate_w2c(table))
    codebook = tf.constant(cn.validate_codebook(codebook))
    fn = tf.function(lambda images: cn.color_names_bow(images, table, codebook, config),
                     reduce_retracing=True)
    return (config.height, config.width), fn


def extract(paths: Sequence[str], extractors: Mapping[str, tuple[tuple[int, int], Callable]],
            batch_size: int = 64, dtype=np.float32, progress: bool = True) -> dict[str, np.ndarray]:
    """Runs feature extractors over image files (each image decoded once).

    Args:
      paths: image files.
      extractors: name -> ((H, W), fn float32 [batch, H, W, 3] -> features [batch, ...]).
      batch_size: images per batch.
      dtype: dtype of the returned arrays.
      progress: show progress (`tfreid.progress.bar`: a bar on a terminal, else plain lines).

    Returns:
      name -> array [len(paths), ...].
    """
    dataset = image_dataset(paths, {name: size for name, (size, _) in extractors.items()},
                            batch_size)
    bar = progress_bar(len(paths), "image") if progress else None
    outputs = {name: [] for name in extractors}
    for batch in dataset:
        for name, (_, fn) in extractors.items():
            outputs[name].append(fn(batch[name]).numpy().astype(dtype, copy=False))
        if bar is not None:
            bar.add(int(batch[next(iter(extractors))].shape[0]))
    return {name: np.concatenate(parts) if parts else np.zeros((0,), dtype)
            for name, parts in outputs.items()}


def fit_cn_codebook(paths: Sequence[str], table, num_words: int = 350, num_images: int = 1000,
                    seed: int = 0, config: cn.ColorNamesConfig | None = None,
                    batch_size: int = 64, max_samples: int = 100_000) -> np.ndarray:
    """Colour Names codebook from patches of (a seeded sample of) training images.

    Returns:
      float32 [num_words, 11].
    """
    config = config or cn.ColorNamesConfig()
    rng = np.random.default_rng(seed)
    if len(paths) > num_images:
        paths = [paths[i] for i in sorted(rng.choice(len(paths), num_images, replace=False))]
    table = tf.constant(cn.validate_w2c(table))
    fn = tf.function(lambda images: cn.patch_descriptors(images, table, config))
    patches = [fn(batch["cn"]).numpy().reshape(-1, cn.NUM_COLOR_NAMES)
               for batch in image_dataset(paths, {"cn": (config.height, config.width)}, batch_size)]
    return fit_codebook(np.concatenate(patches), num_words, seed=seed, max_samples=max_samples)


def save_features(out: str | os.PathLike, dataset: str, splits: Mapping[str, Mapping],
                  metadata: Mapping[str, object] | None = None) -> None:
    """Writes a compressed `.npz` in the format of the module docstring.

    Args:
      out: output file.
      dataset: dataset name.
      splits: split -> {"paths": [n] str, "pids": [n], "camids": [n], <feature>: [n, ...]}.
      metadata: extra arrays; dict/str values are stored as JSON / unicode scalars.
    """
    arrays = {"dataset": np.asarray(dataset, dtype=np.str_)}
    feature_names = set()
    for split, contents in splits.items():
        for key, value in contents.items():
            if key == "paths":
                value = np.asarray(list(value), dtype=np.str_)
            elif key in ("pids", "camids"):
                value = np.asarray(value, dtype=np.int64)
            else:
                feature_names.add(key)
            arrays[f"{split}_{key}"] = np.asarray(value)
    arrays["features"] = np.asarray(sorted(feature_names), dtype=np.str_)
    for key, value in (metadata or {}).items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value)
        arrays[key] = np.asarray(value, dtype=np.str_) if isinstance(value, str) else np.asarray(value)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    # Same layout as np.savez_compressed (np.load reads it), but deflate level 1: several times
    # faster on ~1 GB of LOMO histograms and nearly as small (they are mostly zeros).
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1,
                         allowZip64=True) as archive:
        for key, value in arrays.items():
            with archive.open(f"{key}.npy", "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.asanyarray(value), allow_pickle=False)


def load_features(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a file written by `save_features` (allow_pickle=False) into a dict of arrays."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def lomo_flat(rows: np.ndarray, config: LomoConfig | None = None) -> np.ndarray:
    """numpy [n, rows, row_dim] LOMO rows -> [n, flat_dim] in the reference order (see lomo)."""
    config = config or LomoConfig()
    rows = np.asarray(rows)
    parts = np.split(rows, np.cumsum(config.group_sizes)[:-1], axis=-1)
    return np.concatenate([p.reshape(len(rows), -1) for p in parts], axis=1)


def extract_dataset(split, features: Sequence[str] = FEATURES, batch_size: int = 64,
                    table=None, codebook=None, num_words: int = 350, codebook_images: int = 1000,
                    seed: int = 0, lomo_config: LomoConfig | None = None,
                    cn_config: cn.ColorNamesConfig | None = None, dtype=np.float32,
                    progress: bool = True) -> tuple[dict, dict]:
    """Features of every image of a `ReIDSplit` (train, query, gallery).

    Args:
      split: tfreid.data.records.ReIDSplit.
      features: subset of ("lomo", "cn").
      table: w2c table [32768, 11] (needed for "cn").
      codebook: [num_words, 11] Colour Names codebook; None fits one on the train images
        (`codebook_images` of them drawn with `seed`).
      dtype: dtype of the stored features.

    Returns:
      (splits dict for `save_features`, metadata dict).
    """
    from tfreid.data.records import arrays   # local: keeps this module free of data imports

    unknown = sorted(set(features) - set(FEATURES))
    if unknown or not features:
        raise ValueError(f"Unknown features {unknown or list(features)}: choose from {FEATURES}.")
    extractors, metadata = {}, {}
    if "lomo" in features:
        lomo_config = lomo_config or LomoConfig()
        extractors["lomo"] = lomo_extractor(lomo_config)
        metadata["lomo_config"] = lomo_config.to_dict()
    if "cn" in features:
        if table is None:
            raise ValueError("Colour Names features need the w2c table (see colornames.load_w2c).")
        cn_config = cn_config or cn.ColorNamesConfig()
        if codebook is None:
            train_paths = [r.path for r in split.train]
            if not train_paths:
                raise ValueError("No train images to fit the Colour Names codebook on; pass one.")
            codebook = fit_cn_codebook(train_paths, table, num_words, codebook_images, seed,
                                       cn_config, batch_size)
        extractors["cn"] = cn_extractor(table, codebook, cn_config)
        metadata["cn_codebook"] = cn.validate_codebook(codebook)
        metadata["cn_config"] = cn_config.to_dict()
    out = {}
    for part in SPLITS:
        records = getattr(split, part)
        paths, pids, camids = arrays(records)
        if progress:
            print(f"{part}: {len(paths)} images")
        feats = extract(paths, extractors, batch_size, dtype, progress) if paths else {
            name: np.zeros((0,), dtype) for name in extractors}
        out[part] = {"paths": paths, "pids": pids, "camids": camids, **feats}
    return out, metadata
