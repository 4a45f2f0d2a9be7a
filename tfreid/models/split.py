"""Cutting a CNN embedding model in two: a frozen prefix and a trainable top sharing its layers.

Partial fine-tuning on a CPU (see `tfreid.training.cnn`, `CNNTrainConfig.train_from`) runs the
lower part of the backbone once per image and trains only the rest on the cached feature maps.
Both parts are new `keras.Model`s over the SAME layer objects as the full model, so training the
top trains the full model, and `top(prefix(images)) == model(images)`.

A cut is named by a layer of the backbone: the tensor that layer reads is the cut, the top is
every layer computed from it (that layer and the ones after it), the prefix every layer before
it. A layer qualifies when it reads a single tensor and no skip
connection jumps over that tensor (the backbone's output must be computable from it alone): in
MobileNetV2, "block_N_expand" (N = 1..16: block N and the blocks above it are trained; the
residual adds of the trained blocks are inside the top), "expanded_conv_depthwise" (block 0),
"Conv_1" (only the last 1x1 convolution), and the layers inside a block without a residual add;
"block_15_depthwise" does not qualify (block_15_add needs the block's input). Layers that read
the same tensor name the same cut: in keras.applications' ResNet50, "conv5_block1_0_conv"
(shortcut) and "conv5_block1_1_conv" both cut before stage 5, whose two branches are then trained.
"""

from __future__ import annotations

import keras

BACKBONE_LAYER = "backbone"


def _top_of(backbone: keras.Model, layer: keras.layers.Layer) -> keras.Model | None:
    """backbone's layers from `layer` on as a model (cut tensor -> output), or None if no cut."""
    if isinstance(layer, keras.layers.InputLayer):
        return None
    try:
        cut = layer.input
    except (AttributeError, ValueError):  # several inbound nodes: not a single place in the graph
        return None
    if not isinstance(cut, keras.KerasTensor) or cut is backbone.inputs[0]:
        return None  # several inputs (Add, Concatenate), or the whole backbone
    try:
        return keras.Model(cut, backbone.outputs[0], name=f"{backbone.name}_top")
    except ValueError:  # "not connected to inputs": a skip connection jumps over the cut
        return None


def cut_layers(backbone: keras.Model) -> list[str]:
    """Names of the backbone's layers at which it can be cut (see the module docstring), in order.

    The first layer is not one: a cut there is whole-network training. Slow-ish (one model build
    per layer, about 2 s for MobileNetV2); meant for error messages and documentation.
    """
    return [layer.name for layer in backbone.layers if _top_of(backbone, layer) is not None]


def _chain(model: keras.Model) -> tuple[list, list]:
    """(layers before, layers after) the nested backbone of a chain-shaped embedding model."""
    layers = model.layers
    names = [layer.name for layer in layers]
    if BACKBONE_LAYER not in names or not isinstance(layers[0], keras.layers.InputLayer):
        raise ValueError(f"model {model.name!r} has no nested {BACKBONE_LAYER!r} model after an "
                         f"input; expected one of build_embedding_model, got layers {names}")
    # The functional config names what each call reads (`.input`/`.output` of a nested model
    # are its own Input/output, not the tensors it was called on).
    reads = {layer["name"]: _read_tensors(layer["inbound_nodes"])
             for layer in model.get_config()["layers"]}
    for prev, layer in zip(names[:-1], names[1:]):
        if reads.get(layer) != [[prev, 0, 0]]:
            raise ValueError(f"model {model.name!r} is not a chain of layers: {layer!r} does "
                             f"not read the output of {prev!r}; cannot split it")
    at = names.index(BACKBONE_LAYER)
    return layers[1:at], layers[at + 1:]


def _read_tensors(config) -> list[list]:
    """[layer name, node, tensor] of every tensor a serialized call reads, in order."""
    if isinstance(config, dict):
        if config.get("class_name") == "__keras_tensor__":
            return [list(config["config"]["keras_history"])]
        return [t for value in config.values() for t in _read_tensors(value)]
    if isinstance(config, (list, tuple)):
        return [t for value in config for t in _read_tensors(value)]
    return []


def split_embedding_model(model: keras.Model, train_from: str
                          ) -> tuple[keras.Model, keras.Model]:
    """Splits an embedding model at a backbone layer into prefix and top that share its layers.

    Args:
      model: a model of `tfreid.models.embedding.build_embedding_model` (images -> preprocess ->
        nested "backbone" -> pool -> embedding [-> l2_normalize]).
      train_from: name of the backbone layer that begins the top (see `cut_layers`).

    Returns:
      (prefix: images float32 [B, H, W, 3] 0..255 -> maps [B, h, w, c], the tensor `train_from`
       reads; top: maps [B, h, w, c] -> embeddings [B, dim]). top(prefix(x)) equals model(x), and
      both hold the very layer objects of `model` (no copies of weights).

    Raises:
      ValueError: `train_from` is not a layer where the backbone can be cut (the message lists
        those that are), or `model` is not shaped like an embedding model.
    """
    before, after = _chain(model)
    backbone = model.get_layer(BACKBONE_LAYER)
    names = [layer.name for layer in backbone.layers]
    bb_top = _top_of(backbone, backbone.get_layer(train_from)) if train_from in names else None
    if bb_top is None:
        why = ("it reads several tensors, is the first layer, or a skip connection jumps over "
               "its input" if train_from in names else "the backbone has no layer of that name")
        raise ValueError(f"cannot cut the backbone of {model.name!r} at {train_from!r}: {why}; "
                         f"layers that can begin the trainable top: {', '.join(cut_layers(backbone))}")
    cut = backbone.get_layer(train_from).input
    bb_prefix = keras.Model(backbone.inputs[0], cut, name=f"{backbone.name}_prefix")

    images = keras.Input(shape=model.inputs[0].shape[1:], name="images", dtype="float32")
    x = images
    for layer in before:
        x = layer(x)
    prefix = keras.Model(images, bb_prefix(x), name=f"{model.name}_prefix")

    maps = keras.Input(shape=cut.shape[1:], name="maps", dtype="float32")
    y = bb_top(maps)
    for layer in after:
        y = layer(y)
    return prefix, keras.Model(maps, y, name=f"{model.name}_top")
