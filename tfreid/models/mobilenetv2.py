"""MobileNetV2 (Sandler et al. 2018) built in Keras with PyTorch's stride-2 padding.

`build_mobilenetv2` uses the layer names of `keras.applications.MobileNetV2`, but pads its
stride-2 convolutions symmetrically (one pixel on each side) as PyTorch does, so that
PyTorch-trained weights (see `convert_mobilenetv2`) give the same features as in PyTorch. Keras
pads (0, 1) instead, which shifts stride-2 outputs by a pixel.
"""

from __future__ import annotations

import keras

# (expansion t, output channels c, repeats n, first stride s): Sandler et al. 2018, Table 2.
MOBILENETV2_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                      (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


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
