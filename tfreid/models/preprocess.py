"""Backbone input preprocessing as a serialisable layer, and the ImageNet statistics it uses.

Every backbone takes float32 RGB images in 0..255; the scaling its weights expect is the first
layer of the model (`ImagePreprocess`), so a caller never has to know it.
"""

from __future__ import annotations

import keras
import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)   # RGB, images in [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


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
