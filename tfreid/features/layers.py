"""Keras layers around the hand-crafted features, so that raw images go in and features come out
of one model (tf.data, SavedModel export and GPU all run the same code)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfreid.features import colornames as cn
from tfreid.features.lomo_ops import LEGACY_SETTINGS, LomoConfig, lomo

LOMO_OUTPUTS = ("rows", "flat")


@keras.saving.register_keras_serializable(package="tfreid")
class LomoLayer(keras.layers.Layer):
    """LOMO features of RGB images (no weights).

    Input: uint8 or float [batch, h, w, 3] in [0, 255], any size (resized to height x width).
    Output: ``output="rows"``: float32 [batch, 40, 674]; ``output="flat"``: [batch, 26960]
    (sizes for the 128x48 defaults; see `LomoConfig`).

    Args:
      output: "rows" or "flat".
      **config: fields of `LomoConfig` (height, width, block_size, ..., normalize, retinex,
        retinex_clip, grey).

    A saved config without ``retinex`` / ``grey`` (models saved before these options) loads with
    `lomo_ops.LEGACY_SETTINGS`, so such a model computes the features it was trained on.
    """

    def __init__(self, output: str = "rows", height: int = 128, width: int = 48,
                 block_size: int = 10, block_step: int = 5, num_scales: int = 3,
                 hsv_bins=(8, 8, 8), retinex_sigmas=(5.0, 20.0), retinex_clip_std: float = 2.0,
                 siltp_tau: float = 0.3, siltp_radii=(3, 5), normalize: str = "global",
                 siltp_groups: str = "per_radius", retinex: str = "msrcp",
                 retinex_clip: float = 0.01, grey: str = "uint8", **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        if output not in LOMO_OUTPUTS:
            raise ValueError(f"LomoLayer output must be one of {LOMO_OUTPUTS}, got {output!r}.")
        self.output_mode = output
        self.config = LomoConfig(
            height=height, width=width, block_size=block_size, block_step=block_step,
            num_scales=num_scales, hsv_bins=tuple(hsv_bins), retinex_sigmas=tuple(retinex_sigmas),
            retinex_clip_std=retinex_clip_std, siltp_tau=siltp_tau, siltp_radii=tuple(siltp_radii),
            normalize=normalize, siltp_groups=siltp_groups, retinex=retinex,
            retinex_clip=retinex_clip, grey=grey)

    def call(self, images):
        features = lomo(images, self.config)
        return features.rows if self.output_mode == "rows" else features.flat

    def compute_output_shape(self, input_shape):
        if self.output_mode == "rows":
            return (input_shape[0], self.config.num_rows, self.config.row_dim)
        return (input_shape[0], self.config.flat_dim)

    def compute_output_spec(self, images):
        return keras.KerasTensor(self.compute_output_shape(images.shape), dtype="float32")

    def get_config(self):
        return {**super().get_config(), "output": self.output_mode, **self.config.to_dict()}

    @classmethod
    def from_config(cls, config):
        return cls(**{**LEGACY_SETTINGS, **config})


@keras.saving.register_keras_serializable(package="tfreid")
class ColorNamesLayer(keras.layers.Layer):
    """Colour Names bag-of-words per horizontal stripe.

    The w2c table [32768, 11] and the codebook [num_words, 11] are non-trainable weights, so
    they are saved with the model (``.keras`` / ``.weights.h5`` / SavedModel).

    Input: uint8 or float [batch, h, w, 3] RGB in [0, 255], any size (resized to height x width).
    Output: float32 [batch, num_stripes, num_words] ([batch, 16, 350] by default).

    Args:
      table: float [32768, 11] w2c table (e.g. from `colornames.load_w2c`); None = zeros, to be
        filled by loading saved weights.
      codebook: float [num_words, 11] (e.g. from `colornames.fit_codebook`); None = zeros.
      num_words: codebook size (ignored when `codebook` is given).
      Remaining arguments: see `colornames.ColorNamesConfig`.
    """

    def __init__(self, table=None, codebook=None, num_words: int = 350, height: int = 128,
                 width: int = 64, patch_size: int = 4, patch_step: int = 4, num_stripes: int = 16,
                 assignment: str = "soft", knn: int = 5, sigma: float = 0.05,
                 burstiness: str = "sqrt", normalize: str = "l2", **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        if codebook is not None:
            codebook = cn.validate_codebook(codebook)
            num_words = codebook.shape[0]
        self.config = cn.ColorNamesConfig(
            height=height, width=width, patch_size=patch_size, patch_step=patch_step,
            num_stripes=num_stripes, assignment=assignment, knn=knn, sigma=sigma,
            burstiness=burstiness, normalize=normalize)
        self.num_words = int(num_words)
        table = None if table is None else cn.validate_w2c(table, "the given table")
        self.table = self._constant_weight("w2c", (cn.W2C_ROWS, cn.NUM_COLOR_NAMES), table)
        self.codebook = self._constant_weight("codebook", (self.num_words, cn.NUM_COLOR_NAMES),
                                              codebook)
        self.built = True

    def _constant_weight(self, name, shape, value):
        value = np.zeros(shape, np.float32) if value is None else np.asarray(value, np.float32)
        return self.add_weight(name=name, shape=shape, dtype="float32", trainable=False,
                               initializer=lambda shape, dtype=None: tf.constant(value))

    def call(self, images):
        return cn.color_names_bow(images, tf.convert_to_tensor(self.table),
                                  tf.convert_to_tensor(self.codebook), self.config)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.config.num_stripes, self.num_words)

    def compute_output_spec(self, images):
        return keras.KerasTensor(self.compute_output_shape(images.shape), dtype="float32")

    def get_config(self):
        return {**super().get_config(), "num_words": self.num_words, **self.config.to_dict()}
