"""The siamese LSTM experiment end to end: images -> stripe features -> one network per channel
-> score fusion -> test report (Varior et al., ECCV 2016, Sec. 3 and 4).

Writes into the run folder (`tfreid.rundir.RunDir`): the features of every part per channel (a
cache: a resumed run does not featurise again; the Color Names codebook beside them), one
sub-run per channel, model.keras (raw uint8/float images [B, H, W, 3] -> {channel: embedding})
and metrics.json (test report per channel, fused, and for the input features).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import weakref
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfreid import zoo
from tfreid.data.records import ReIDSplit, arrays, train_val_test_parts
from tfreid.evaluation import distance_matrix
from tfreid.evaluation.protocols import fuse_scores
from tfreid.features import ColorNamesLayer, LomoLayer, load_w2c
from tfreid.features.colornames import ColorNamesConfig
from tfreid.features.extract import extract, fit_cn_codebook
from tfreid.evaluation.report import format_report, test_report
from tfreid.model_eval import embed_test_images
from tfreid.models.stripe_deploy import build_deploy_model, embedding_name, stripe_branches
from tfreid.rundir import RunDir
from tfreid.training.stripes import StripeTrainConfig, ViewSplit, train_stripe_model

CHANNELS = ("lomo", "cn")
PARTS = ("train", "val_query", "val_gallery", "query", "gallery")


@dataclasses.dataclass
class ChannelSpec:
    """How one feature channel is computed.

    Attributes:
      lomo_normalize: "row" (each row L2-normalised, the LSTM's input) or "global".
      cn_words: Color Names codebook size.
      cn_stripes: Color Names stripes.
      cn_codebook_images: training images whose patches fit the codebook.
      colornames: path of the w2c table (None: $TFREID_DATA/colornames/).
      batch_size: images per featurisation batch.
    """

    lomo_normalize: str = "row"
    cn_words: int = 350
    cn_stripes: int = 16
    cn_codebook_images: int = 1000
    colornames: str | None = None
    batch_size: int = 64


_FEATURE_FNS: "weakref.WeakKeyDictionary[keras.layers.Layer, tf.types.experimental.GenericFunction]" = \
    weakref.WeakKeyDictionary()


def featurize(layer: keras.layers.Layer, paths: Sequence[str], batch_size: int = 64,
              log: Callable[[str], None] = print) -> np.ndarray:
    """Runs a feature layer (LomoLayer / ColorNamesLayer) over image files: float32 [N, rows, dim].

    Images are resized one by one as the layers resize a raw image inside an exported model
    (bilinear, antialiased), so training features and served embeddings agree.
    """
    if not paths:
        raise ValueError("featurize got no image paths")
    height, width = layer.config.height, layer.config.width
    run = _FEATURE_FNS.get(layer)
    if run is None:  # one traced function per layer: a new one per call would retrace every part
        # The feature ops have no data-dependent Python control flow: autograph only adds tracing time.
        run = tf.function(layer.call, autograph=False,
                          input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32)])
        _FEATURE_FNS[layer] = run
    return extract(paths, {"features": ((height, width), run)}, batch_size,
                   progress=log is print)["features"]


def build_channel_layer(channel: str, spec: ChannelSpec, train_paths: Sequence[str], seed: int = 0,
                        log: Callable[[str], None] = print) -> keras.layers.Layer:
    """The feature layer of a channel; Color Names fits its codebook on training patches."""
    if channel == "lomo":
        return LomoLayer(output="rows", normalize=spec.lomo_normalize, name="lomo")
    if channel != "cn":
        raise ValueError(f"unknown feature channel {channel!r}; expected one of {CHANNELS}")
    table = load_w2c(spec.colornames)
    log(f"fitting a {spec.cn_words}-word Color Names codebook on {spec.cn_codebook_images} images")
    codebook = fit_cn_codebook(train_paths, table, spec.cn_words, spec.cn_codebook_images, seed,
                               ColorNamesConfig(num_stripes=spec.cn_stripes), spec.batch_size)
    return ColorNamesLayer(table, codebook, num_stripes=spec.cn_stripes, name="cn")


def _features_key(channel: str, spec: ChannelSpec, parts: dict, seed: int,
                  source: str | None = None) -> str:
    """What a channel's cached features depend on: the images of every part (the held-out
    identities change with --val_ids and --seed), the channel settings, the seed, and the
    model whose feature layer is reused (transfer)."""
    content = {"channel": channel, "spec": dataclasses.asdict(spec), "seed": seed,
               "parts": {part: [str(p) for p in arrays(parts[part])[0]] for part in PARTS},
               **({"source": source} if source else {})}
    content["spec"].pop("batch_size")
    content["spec"]["colornames"] = None  # where the table lives is not what features depend on
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _channel_features(channel: str, spec: ChannelSpec, parts: dict, out_dir: Path, seed: int,
                      log, source_layer: keras.layers.Layer | None = None,
                      source: str | None = None) -> tuple[keras.layers.Layer, dict[str, np.ndarray]]:
    """Features of every part for one channel, cached in out_dir/features/<channel>.npz.

    The cache (and the Color Names codebook) is reused only when its key matches the parts'
    images and the channel settings; otherwise it is recomputed and replaced. `source_layer`
    (transfer) is used as the channel's feature layer instead of a new one, codebook included.
    """
    cache = RunDir(out_dir).channel_features(channel)
    codebook_path = RunDir(out_dir).codebook
    key = _features_key(channel, spec, parts, seed, source)
    cached = None
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            if "key" in z.files and str(z["key"]) == key:
                cached = {part: z[part] for part in PARTS}
            else:
                log(f"{cache} was computed for other images or settings: featurising again")
    if source_layer is not None:
        layer = source_layer
    elif channel == "cn" and codebook_path.exists() and cached is not None:
        layer = ColorNamesLayer(load_w2c(spec.colornames), np.load(codebook_path, allow_pickle=False),
                                num_stripes=spec.cn_stripes, name="cn")
    else:
        layer = build_channel_layer(channel, spec, arrays(parts["train"])[0], seed, log)
        if channel == "cn":
            codebook_path.parent.mkdir(parents=True, exist_ok=True)
            np.save(codebook_path, layer.codebook.numpy())
    if cached is not None:
        return layer, cached
    feats = {}
    for part in PARTS:
        log(f"{channel}: featurising {part} ({len(parts[part])} images)")
        feats[part] = featurize(layer, arrays(parts[part])[0], spec.batch_size, log)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, key=np.array(key), **feats)
    tmp.replace(cache)  # a killed run never leaves a half-written cache
    return layer, feats


def _source_channel(model: keras.Model, channel: str) -> tuple[keras.layers.Layer, list]:
    """(feature layer, embedding network weights) of `channel` in a trained stripe model."""
    try:
        feature, network = stripe_branches(model, [channel])[channel]
    except ValueError as err:
        raise ValueError(f"the model to transfer from: {err}; train with --features it has") from err
    return feature, network.get_weights()


def run_stripe_experiment(split: ReIDSplit, config: StripeTrainConfig, out_dir: str | Path, *,
                          channels: Sequence[str] = CHANNELS, spec: ChannelSpec | None = None,
                          num_val_ids: int = 100, resume: bool = False,
                          init_from: keras.Model | None = None, init_name: str | None = None,
                          log: Callable[[str], None] = print) -> dict:
    """Trains one stripe network per channel, fuses their scores and writes metrics.json.

    Args:
      split: the dataset (train records; test query / gallery).
      config: stripe model / training hyper-parameters (shared by the channels).
      out_dir: run folder (see the module docstring).
      channels: subset of ("lomo", "cn").
      spec: feature channel settings.
      num_val_ids: training identities held out for early stopping.
      resume: continue a killed run (features, finished channels and checkpoints are reused).
      init_from: transfer: a trained stripe model (`build_deploy_model`'s, e.g. a zoo model's
        `keras_model`) whose feature layers (Color Names codebook included) are reused and whose
        channel networks initialise training; `init_name` names it in the feature cache key.

    Returns:
      The metrics dict also written to out_dir/metrics.json.
    """
    spec = spec or ChannelSpec()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = RunDir(out_dir)
    parts = train_val_test_parts(split, num_val_ids, config.seed)
    ids = {part: arrays(records)[1:] for part, records in parts.items()}
    metrics = {"dataset": split.name, "channels": {}, "input_features": {}}
    layers, models, test_dists, times = {}, {}, {}, {}
    (q_pids, q_cams), (g_pids, g_cams) = ids["query"], ids["gallery"]
    for channel in channels:
        source_layer, initial_weights = None, None
        if init_from is not None:
            source_layer, initial_weights = _source_channel(init_from, channel)
        layer, feats = _channel_features(channel, spec, parts, out_dir, config.seed, log,
                                         source_layer, init_name if init_from is not None else None)
        layers[channel] = layer
        (vq_pids, vq_cams), (vg_pids, vg_cams) = ids["val_query"], ids["val_gallery"]
        val = ViewSplit(feats["val_query"], feats["val_gallery"], vq_pids, vg_pids, vq_cams, vg_cams)
        scales = LomoLayer().config.rows_per_scale if channel == "lomo" else None
        start = time.perf_counter()
        train_pids, train_cams = ids["train"]
        channel_resume = resume and run.channel(channel).has_checkpoint()
        model, history = train_stripe_model(config, feats["train"], train_pids, train_cams, val,
                                            run.channel(channel).path, scales=scales, resume=channel_resume,
                                            name=embedding_name(channel),
                                            initial_weights=initial_weights, log=log)
        times[channel] = time.perf_counter() - start
        models[channel] = model
        metrics["channels"][channel] = {"epochs": len(history),
                                        "train_seconds_this_run": round(times[channel], 1)}
        flat_q = feats["query"].reshape(len(feats["query"]), -1)
        flat_g = feats["gallery"].reshape(len(feats["gallery"]), -1)
        metrics["input_features"][channel] = test_report(
            distance_matrix(flat_q, flat_g), q_pids, g_pids, q_cams, g_cams)
        log(f"{channel} (input features, Euclidean):\n{format_report(metrics['input_features'][channel])}")
    deploy = build_deploy_model(layers, models)
    deploy.save(run.model)
    # The test report: the saved model on the test image files, as tools/evaluate.py sees it.
    (_, q_raw), (_, g_raw) = embed_test_images(zoo.from_run(out_dir), arrays(parts["query"])[0],
                                               arrays(parts["gallery"])[0])
    for channel in channels:
        test_dists[channel] = distance_matrix(q_raw[channel], g_raw[channel])
        metrics["channels"][channel] = {
            **test_report(test_dists[channel], q_pids, g_pids, q_cams, g_cams),
            **metrics["channels"][channel]}
        log(f"{channel} (trained):\n{format_report(metrics['channels'][channel])}")
    if len(channels) > 1:
        metrics["fused"] = test_report(fuse_scores([test_dists[c] for c in channels]),
                                       q_pids, g_pids, q_cams, g_cams)
        log(f"fused ({' + '.join(channels)}):\n{format_report(metrics['fused'])}")
    metrics["config"] = dataclasses.asdict(config)
    metrics["features"] = dataclasses.asdict(spec)
    run.write_json(run.metrics, metrics)
    return metrics
