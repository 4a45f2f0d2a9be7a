"""Hand-crafted person re-id features as batched TensorFlow ops and Keras layers.

- LOMO (Liao et al., CVPR 2015): `lomo`, `LomoConfig`, `LomoFeatures`, `LomoLayer`.
- Colour Names stripe bag of words (van de Weijer et al. 2009): `load_w2c`, `fit_codebook`,
  `patch_descriptors`, `color_names_bow`, `ColorNamesConfig`, `ColorNamesLayer`.
"""

from tfreid.features.codebook import fit_codebook, kmeans
from tfreid.features.colornames import (COLOR_NAMES, ColorNamesConfig, color_names_bow, load_w2c,
                                        patch_descriptors, w2c_index)
from tfreid.features.layers import ColorNamesLayer, LomoLayer
from tfreid.features.lomo_ops import LomoConfig, LomoFeatures, lomo, rows_to_flat

__all__ = [
    "COLOR_NAMES", "ColorNamesConfig", "ColorNamesLayer", "LomoConfig", "LomoFeatures",
    "LomoLayer", "color_names_bow", "fit_codebook", "kmeans", "load_w2c", "lomo",
    "patch_descriptors", "rows_to_flat", "w2c_index",
]
