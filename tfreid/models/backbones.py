"""CNN backbones by name, and which input preprocessing each one's weights expect.

`build_backbone` returns a feature extractor on normalised images and the `ImagePreprocess`
mode (`tfreid.models.preprocess`) that maps 0..255 RGB images to them. MobileNetV2 is built by
`tfreid.models.mobilenetv2` (PyTorch's padding) so that the offline PyTorch ImageNet weights
(`convert_mobilenetv2`) load into it.
"""

from __future__ import annotations

import dataclasses
import os

import keras

from tfreid.models.convert_mobilenetv2 import load_imagenet_mobilenetv2
from tfreid.models.mobilenetv2 import build_mobilenetv2


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """How to build one keras.applications backbone: constructor name and preprocess mode."""

    constructor: str
    preprocess: str


# Lower-case name -> spec. Preprocessing modes follow each keras.applications module's
# `preprocess_input`; "none" where the Keras model rescales inside.
BACKBONES = {
    "mobilenetv2": BackboneSpec("MobileNetV2", "tf"),
    "mobilenet": BackboneSpec("MobileNet", "tf"),
    "mobilenetv3small": BackboneSpec("MobileNetV3Small", "none"),
    "mobilenetv3large": BackboneSpec("MobileNetV3Large", "none"),
    "resnet50": BackboneSpec("ResNet50", "caffe"),
    "resnet101": BackboneSpec("ResNet101", "caffe"),
    "resnet152": BackboneSpec("ResNet152", "caffe"),
    "resnet50v2": BackboneSpec("ResNet50V2", "tf"),
    "resnet101v2": BackboneSpec("ResNet101V2", "tf"),
    "vgg16": BackboneSpec("VGG16", "caffe"),
    "vgg19": BackboneSpec("VGG19", "caffe"),
    "densenet121": BackboneSpec("DenseNet121", "torch"),
    "densenet169": BackboneSpec("DenseNet169", "torch"),
    "inceptionv3": BackboneSpec("InceptionV3", "tf"),
    "xception": BackboneSpec("Xception", "tf"),
    "efficientnetb0": BackboneSpec("EfficientNetB0", "none"),
    "efficientnetb1": BackboneSpec("EfficientNetB1", "none"),
    "efficientnetv2b0": BackboneSpec("EfficientNetV2B0", "none"),
    "convnexttiny": BackboneSpec("ConvNeXtTiny", "none"),
}


def backbone_spec(name: str) -> BackboneSpec:
    """Looks a backbone up by name, ignoring case, '_' and '-' ("ResNet50", "mobilenet_v2")."""
    key = name.lower().replace("_", "").replace("-", "")
    if key not in BACKBONES:
        raise ValueError(f"Unknown backbone {name!r}; known backbones: {', '.join(BACKBONES)}")
    return BACKBONES[key]


def build_backbone(name: str = "mobilenetv2", input_shape=(256, 128, 3), weights=None,
                   ) -> tuple[keras.Model, str]:
    """Builds a backbone feature extractor and tells which preprocessing its weights expect.

    Args:
      name: a key of `BACKBONES` (case, '_' and '-' ignored).
      input_shape: (H, W, 3).
      weights: None (random), "imagenet" (keras.applications download; needs internet),
        "offline" (MobileNetV2 only: the PyTorch ImageNet file, see `convert_mobilenetv2`), or a
        path: a PyTorch `.pt` state dict (MobileNetV2 only) or a `.weights.h5` file written
        by `save_weights` of the same backbone.

    Returns:
      (model: normalised images [batch, H, W, 3] -> feature map [batch, h, w, C],
       preprocess mode for `ImagePreprocess`).

    Raises:
      ValueError: unknown backbone, or weights that do not exist for this backbone.
    """
    spec = backbone_spec(name)
    is_mnv2 = spec.constructor == "MobileNetV2"
    if weights == "imagenet" or (not is_mnv2 and weights is None):
        ctor = getattr(keras.applications, spec.constructor)
        kwargs = {"include_preprocessing": True} if spec.constructor.startswith("MobileNetV3") \
            else {}
        model = ctor(include_top=False, weights=weights, input_shape=tuple(input_shape), **kwargs)
        return model, spec.preprocess
    if is_mnv2:
        # Own build (symmetric padding, ImageNet mean/std inputs) for random and offline weights.
        if weights is None:
            return build_mobilenetv2(input_shape), "torch"
        if weights == "offline":
            return load_imagenet_mobilenetv2(input_shape=input_shape), "torch"
        path = str(weights)
        if path.endswith(".pt") or path.endswith(".pth"):
            return load_imagenet_mobilenetv2(
                path, input_shape=input_shape, expected_sha256=None), "torch"
        model = build_mobilenetv2(input_shape)
        _load_weights_file(model, path)
        return model, "torch"
    if weights == "offline":
        raise ValueError(f"weights='offline' exists only for mobilenetv2, not {name!r}; use "
                         "weights='imagenet' (needs internet), None, or a .weights.h5 path")
    model = getattr(keras.applications, spec.constructor)(
        include_top=False, weights=None, input_shape=tuple(input_shape))
    _load_weights_file(model, str(weights))
    return model, spec.preprocess


def _load_weights_file(model: keras.Model, path: str) -> None:
    if not path.endswith(".weights.h5"):
        raise ValueError(f"backbone weights must be None, 'imagenet', 'offline', a .pt file or a "
                         f".weights.h5 file, got {path!r}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No backbone weights file at {path!r}")
    model.load_weights(path)
