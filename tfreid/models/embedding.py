"""CNN embedding models: backbone -> global pooling -> fully-connected embedding.

The model of Chen, Duffner et al. 2021 (Rank-Triplet): a keras.applications backbone (ResNet-50
in the paper, MobileNetV2 here offline), global pooling, and a 256-d fully-connected layer,
trained with a metric-learning loss on P×K batches.
"""

from __future__ import annotations

import keras

from tfreid.models.backbones import build_backbone
from tfreid.models.preprocess import ImagePreprocess

POOLINGS = ("avg", "max")


def build_embedding_model(backbone: str = "mobilenetv2", input_shape=(256, 128, 3),
                          embedding_dim: int = 256, weights=None, pooling: str = "avg",
                          l2_normalize: bool = False, name: str | None = None) -> keras.Model:
    """Builds an image -> embedding model with its preprocessing inside.

    Args:
      backbone: a name of `tfreid.models.backbones.BACKBONES` ("mobilenetv2", "resnet50",
        "efficientnetb0", ...; case, '_' and '-' ignored).
      input_shape: (H, W, 3) of the images.
      embedding_dim: size of the embedding (the fully-connected layer "embedding").
      weights: None (random), "imagenet" (keras.applications download, needs internet),
        "offline" (MobileNetV2 only: the converted PyTorch ImageNet weights), or a path to a
        backbone `.weights.h5` (or to the MobileNetV2 `.pt` file).
      pooling: "avg" or "max" global pooling of the backbone's feature map.
      l2_normalize: if True, embeddings are scaled to unit L2 norm.
      name: model name (default "<backbone>_embedding").

    Returns:
      keras.Model: float32 images [batch, H, W, 3] in 0..255 (RGB) -> [batch, embedding_dim].
      Layers: "preprocess" (ImagePreprocess), "backbone" (nested model), "pool",
      "embedding" (Dense), and "l2_normalize" when asked.

    Raises:
      ValueError: unknown backbone or pooling (listing the known ones), bad embedding_dim or
        input_shape.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if not (isinstance(embedding_dim, int) and embedding_dim > 0):
        raise ValueError(f"embedding_dim must be a positive int, got {embedding_dim!r}")
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"input_shape must be (H, W, 3), got {input_shape}")
    net, mode = build_backbone(backbone, input_shape, weights)
    net.name = "backbone"  # fixed name so that callers can find and freeze it
    images = keras.Input(shape=input_shape, name="images", dtype="float32")
    x = ImagePreprocess(mode, name="preprocess")(images)
    x = net(x)
    pool_cls = keras.layers.GlobalAveragePooling2D if pooling == "avg" \
        else keras.layers.GlobalMaxPooling2D
    x = pool_cls(name="pool")(x)
    x = keras.layers.Dense(embedding_dim, name="embedding")(x)
    if l2_normalize:
        x = keras.layers.UnitNormalization(axis=-1, name="l2_normalize")(x)
    return keras.Model(images, x, name=name or f"{backbone.lower()}_embedding")
