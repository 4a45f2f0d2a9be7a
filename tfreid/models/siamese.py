"""The siamese set-up of Varior et al. (ECCV 2016, Sec. 3): two branches with the same weights
embed x_p and x_q, and D = ||s_p - s_q||_2 is trained with the contrastive loss
(`tfreid.losses.contrastive_pair_loss`). The branch is any stripe embedding: the LSTM
(`tfreid.models.stripe_lstm`) or the Eq. 8-9 MLP baselines (`tfreid.models.mlp_baseline`).
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tfreid")
class PairDistance(keras.layers.Layer):
    """Euclidean distance of two embeddings: ([B, k], [B, k]) -> [B].

    D = sqrt(sum((s_p - s_q)^2) + epsilon). The epsilon keeps dD/ds finite (zero) for identical
    embeddings, where the plain square root has an infinite derivative.
    """

    def __init__(self, epsilon: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, inputs):
        s_p, s_q = inputs
        return tf.sqrt(tf.reduce_sum(tf.square(s_p - s_q), axis=-1) + self.epsilon)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0],)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="tfreid")
class StackPair(keras.layers.Layer):
    """Stacks the two branches' inputs along the batch: ([B, ...], [B, ...]) -> [2B, ...]."""

    def call(self, inputs):
        return tf.concat(inputs, axis=0)

    def compute_output_shape(self, input_shape):
        return (None,) + tuple(input_shape[0][1:])


@keras.saving.register_keras_serializable(package="tfreid")
class SplitPair(keras.layers.Layer):
    """Inverse of StackPair: [2B, k] -> ([B, k], [B, k])."""

    def call(self, inputs):
        s_p, s_q = tf.split(inputs, 2, axis=0)
        return [s_p, s_q]

    def compute_output_shape(self, input_shape):
        return [(None,) + tuple(input_shape[1:])] * 2


def build_siamese(embedding_model: keras.Model, epsilon: float = 1e-12,
                  name: str = "siamese") -> keras.Model:
    """Two branches sharing `embedding_model`'s weights: (x_p, x_q) -> D [B].

    Both branches run as one call of the embedding on the stacked batch [2B, ...]: the same
    weights by construction, one LSTM loop to trace instead of two (half the graph-building
    time) and larger, more efficient matrix products.

    Args:
      embedding_model: any model [B, ...] -> [B, k] (build_stripe_lstm, build_stripe_mlp).
      epsilon: added under the square root of the distance (see PairDistance).

    Returns:
      keras.Model with inputs (x_p, x_q) of the embedding's input shape and output D [B] float32.
    """
    shape = tuple(embedding_model.input_shape[1:])
    x_p = keras.Input(shape, name="x_p")
    x_q = keras.Input(shape, name="x_q")
    s = embedding_model(StackPair(name="stack_pair")([x_p, x_q]))
    d = PairDistance(epsilon, name="distance")(SplitPair(name="split_pair")(s))
    return keras.Model([x_p, x_q], d, name=name)


def embedding_of(model: keras.Model) -> keras.Model:
    """The shared branch of a siamese model built by `build_siamese` (or the model itself)."""
    subs = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return subs[0] if len(subs) == 1 else model
