"""Deployable stripe models (siamese LSTM / Eq. 8-9 MLP): raw images -> {channel: embedding},
and the branches they declare.

A deploy model holds, for every feature channel c ("lomo", "cn"):

- a feature layer named c (`tfreid.features.LomoLayer` / `ColorNamesLayer`): images
  [B, h, w, 3] (uint8 or float 0..255, any size) -> stripe features [B, R_c, d_c], every image
  resized to the layer's `config.height` x `config.width`;
- an embedding network named `embedding_name(c)`: [B, R_c, d_c] -> [B, k_c];

and its output is the dict {c: embedding network(feature layer(images))}. These names are the
declaration: `build_deploy_model` checks them, Keras saves them in the model's config (output
keys and layer names), and `stripe_branches` reads them back with Keras' public API. Every
saved deploy model, the committed zoo models included, declares its branches this way.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import keras


def embedding_name(channel: str) -> str:
    """The name of a channel's embedding network in a deploy model: "<channel>_embedding"."""
    return f"{channel}_embedding"


class StripeBranch(NamedTuple):
    """One channel of a deploy model: features = feature_layer(images) [B, R, d],
    embedding_network(features) [B, k]."""

    feature_layer: keras.layers.Layer
    embedding_network: keras.Model


def build_deploy_model(layers: dict[str, keras.layers.Layer],
                       embeddings: dict[str, keras.Model]) -> keras.Model:
    """Raw images [B, H, W, 3] (uint8 or float 0-255, any size) -> {channel: embedding [B, k]}.

    Args:
      layers: {channel: feature layer named channel}.
      embeddings: {channel: embedding network named `embedding_name(channel)`}, same channels.

    Raises:
      ValueError: the channels differ, or a layer / network is not named as declared.
    """
    if set(layers) != set(embeddings) or not layers:
        raise ValueError(f"need the same channels of feature layers and embedding networks, got "
                         f"{sorted(layers)} and {sorted(embeddings)}")
    for channel in layers:
        got = (layers[channel].name, embeddings[channel].name)
        if got != (channel, embedding_name(channel)):
            raise ValueError(f"channel {channel!r}: the feature layer must be named {channel!r} and "
                             f"the embedding network {embedding_name(channel)!r}, got {got}")
    images = keras.Input((None, None, 3), name="images")
    outputs = {channel: embeddings[channel](layers[channel](images)) for channel in layers}
    return keras.Model(images, outputs, name="stripe_reid")


def stripe_branches(model: keras.Model, channels: Sequence[str] | None = None) -> dict[str, StripeBranch]:
    """The branches a deploy model declares (see the module docstring).

    Args:
      model: a deploy model (`build_deploy_model`, saved and loaded or not).
      channels: the channels wanted (default: all of the model's output keys).

    Returns:
      {channel: StripeBranch}, in `channels` order (default: sorted).

    Raises:
      ValueError: the model is not a deploy model, or lacks a wanted channel (naming its layers).
    """
    outputs = model.output if isinstance(model, keras.Model) else None
    if not isinstance(outputs, dict):
        raise ValueError(f"model {model.name!r} is not a stripe deploy model: its output is not "
                         "{channel: embedding} (see tfreid.models.stripe_deploy)")
    names = [layer.name for layer in model.layers]
    wanted = sorted(outputs) if channels is None else list(channels)
    missing = [c for c in wanted if c not in outputs or c not in names or embedding_name(c) not in names]
    if missing:
        raise ValueError(f"model {model.name!r} has no channel {missing}: a channel c needs an output c "
                         f"and layers c and {embedding_name('c')!r} (outputs: {sorted(outputs)}, "
                         f"layers: {names})")
    return {c: StripeBranch(model.get_layer(c), model.get_layer(embedding_name(c))) for c in wanted}
