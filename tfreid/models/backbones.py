"""CNN backbones by name, with their input preprocessing as a serialisable layer.

Every backbone built here takes float32 RGB images in 0..255 ([batch, H, W, 3]); the scaling a
backbone's weights expect is the first layer of the model (`ImagePreprocess`), so a caller
never has to know it.

`build_mobilenetv2` builds MobileNetV2 (Sandler et al. 2018) in Keras with the layer names of
`keras.applications.MobileNetV2`, but pads its stride-2 convolutions symmetrically (one pixel on
each side) as PyTorch does, so that PyTorch-trained weights (see `convert_mobilenetv2`) give the
same features as in PyTorch. Keras pads (0, 1) instead, which shifts stride-2 outputs by a pixel.
"""

from __future__ import annotations

import dataclasses
import os

import keras
import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)   # RGB, images in [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

# (expansion t, output channels c, repeats n, first stride s): Sandler et al. 2018, Table 2.
MOBILENETV2_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                      (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


@keras.saving.register_keras_serializable(package="tfreid")
class ImagePreprocess(keras.layers.Layer):
    """Maps 0..255 RGB images to what a backbone's weights expect.

    Modes (those of `keras.applications.imagenet_utils.preprocess_input`, plus "none"):
      "torch": x / 255, then (x - ImageNet mean) / ImageNet std per RGB channel;
      "tf": x / 127.5 - 1;
      "caffe": RGB -> BGR, then minus the ImageNet BGR mean in 0..255;
      "none": identity (backbones that rescale inside, e.g. EfficientNet).

    Input [batch, H, W, 3] float in 0..255; output same shape, float32.
    """

    MODES = ("torch", "tf", "caffe", "none")

    def __init__(self, mode: str = "torch", **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"ImagePreprocess mode must be one of {self.MODES}, got {mode!r}")
        self.mode = mode

    def call(self, images):
        x = keras.ops.cast(images, "float32")
        if self.mode == "torch":
            mean = np.asarray(IMAGENET_MEAN, np.float32) * 255.0
            std = np.asarray(IMAGENET_STD, np.float32) * 255.0
            return (x - mean) / std
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "caffe":
            return x[..., ::-1] - np.asarray(_CAFFE_MEAN_BGR, np.float32)
        return x

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


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


def _conv_bn(x, filters, kernel, stride, name, bn_name, epsilon, depthwise=False):
    if stride == 2:  # PyTorch's symmetric padding of 1, then a 'valid' convolution.
        x = keras.layers.ZeroPadding2D(padding=kernel // 2, name=f"{name}_pad")(x)
    padding = "valid" if stride == 2 else "same"
    if depthwise:
        x = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding=padding, use_bias=False,
                                         name=name)(x)
    else:
        x = keras.layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=False,
                                name=name)(x)
    return keras.layers.BatchNormalization(epsilon=epsilon, momentum=0.999, name=bn_name)(x)


def build_mobilenetv2(input_shape=(224, 224, 3), *, bn_epsilon: float = 1e-5,
                      name: str = "mobilenetv2") -> keras.Model:
    """MobileNetV2 1.0 feature extractor with PyTorch's symmetric stride-2 padding.

    Layer names are those of `keras.applications.MobileNetV2(alpha=1.0, include_top=False)`
    (Conv1, bn_Conv1, expanded_conv_depthwise, block_1_expand, ..., Conv_1, Conv_1_bn), and so
    are the weight shapes; only the padding layers differ ("Conv1_pad", "block_N_depthwise_pad").

    Args:
      input_shape: (H, W, 3); any H, W >= 32.
      bn_epsilon: BatchNorm epsilon; 1e-5 is PyTorch's (so converted weights need no folding).
      name: model name.

    Returns:
      keras.Model: normalised images [batch, H, W, 3] (no preprocessing inside) ->
      features [batch, ceil(H/32), ceil(W/32), 1280].
    """
    inputs = keras.Input(shape=input_shape, name="images")
    x = _conv_bn(inputs, 32, 3, 2, "Conv1", "bn_Conv1", bn_epsilon)
    x = keras.layers.ReLU(6.0, name="Conv1_relu")(x)
    in_channels, block = 32, 0
    for t, c, n, s in MOBILENETV2_BLOCKS:
        for i in range(n):
            stride = s if i == 0 else 1
            prefix = f"block_{block}_" if block else "expanded_conv_"
            y = x
            if t != 1:
                y = _conv_bn(y, in_channels * t, 1, 1, f"{prefix}expand", f"{prefix}expand_BN",
                             bn_epsilon)
                y = keras.layers.ReLU(6.0, name=f"{prefix}expand_relu")(y)
            y = _conv_bn(y, None, 3, stride, f"{prefix}depthwise", f"{prefix}depthwise_BN",
                         bn_epsilon, depthwise=True)
            y = keras.layers.ReLU(6.0, name=f"{prefix}depthwise_relu")(y)
            y = _conv_bn(y, c, 1, 1, f"{prefix}project", f"{prefix}project_BN", bn_epsilon)
            if stride == 1 and in_channels == c:
                y = keras.layers.Add(name=f"{prefix}add")([x, y])
            x, in_channels, block = y, c, block + 1
    x = _conv_bn(x, 1280, 1, 1, "Conv_1", "Conv_1_bn", bn_epsilon)
    x = keras.layers.ReLU(6.0, name="out_relu")(x)
    return keras.Model(inputs, x, name=name)


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
        from tfreid.models import convert_mobilenetv2  # local: keeps import cycles out
        if weights is None:
            return build_mobilenetv2(input_shape), "torch"
        if weights == "offline":
            return convert_mobilenetv2.load_imagenet_mobilenetv2(input_shape=input_shape), "torch"
        path = str(weights)
        if path.endswith(".pt") or path.endswith(".pth"):
            return convert_mobilenetv2.load_imagenet_mobilenetv2(
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
