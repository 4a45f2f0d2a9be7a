"""The no-LSTM baselines of Varior et al. (ECCV 2016, Eq. 8-9): concatenated stripe features
through fully connected layers with a non-linearity, trained in the same siamese set-up
(`tfreid.models.siamese.build_siamese`, contrastive loss,
`tfreid.models.optimizer.siamese_optimizer`).

    s = f(W_L ... f(W_2 f(W_1 [x_1; ...; x_R])))      (1, 2 or 3 layers)

Choices the paper leaves open:
- Every layer has `units` outputs, by default R·n with n = 50, the size of the LSTM model's s,
  so both embeddings have the same dimension and the baseline differs only by the recurrence.
- f defaults to tanh: the LSTM's h_r = o * tanh(c_r) is also tanh-bounded, and a ReLU on the
  last layer zeroes whole embedding coordinates for every input. Any Keras activation name works
  (`activation="relu"`), to compare on real data.
- Weights are drawn from U[-a, a] with a = sqrt(1 / (fan_in + fan_out)), the paper's rule for
  the LSTM applied to each layer; biases start at zero.
"""

from __future__ import annotations

from typing import Sequence

import keras

from tfreid.models.stripe_branch import child_seed, paper_initializer, stripe_input


def build_stripe_mlp(num_rows: int, feature_dim: int, num_layers: int = 1,
                     units: int | Sequence[int] | None = None, activation: str = "tanh", *,
                     hidden_units: int = 50, l2_normalize: bool = False,
                     seed: int | None = None, name: str | None = None) -> keras.Model:
    """Builds the Eq. 8-9 baseline branch.

    Args:
      num_rows: R, stripes per image.
      feature_dim: d, features per stripe.
      num_layers: fully connected layers, >= 1 (the paper reports 1, 2 and 3).
      units: output size of every layer (int) or one size per layer (sequence of num_layers);
        None means R * hidden_units for every layer, the LSTM embedding's size.
      activation: f, a Keras activation name.
      hidden_units: n of the LSTM model to match when `units` is None.
      l2_normalize: divide s by its L2 norm (off, as for the LSTM model).
      seed: seed of the initialisers (None: random).
      name: model name (default "stripe_mlp{num_layers}").

    Returns:
      keras.Model [B, R, d] float32 -> s [B, units of the last layer] float32.
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    inputs = stripe_input(num_rows, feature_dim)
    if units is None:
        sizes = [num_rows * hidden_units] * num_layers
    elif isinstance(units, int):
        sizes = [units] * num_layers
    else:
        sizes = [int(u) for u in units]
        if len(sizes) != num_layers:
            raise ValueError(f"units={list(units)} must give one size per layer (num_layers={num_layers})")
    if min(sizes) <= 0:
        raise ValueError(f"layer sizes must be positive, got {sizes}")
    keras.activations.get(activation)  # fails early on an unknown name

    x = keras.layers.Flatten(name="concat_rows")(inputs)  # [x_1; ...; x_R]
    fan_in = num_rows * feature_dim
    for k, size in enumerate(sizes):
        init = paper_initializer(fan_in, size, child_seed(seed, k))
        x = keras.layers.Dense(size, activation=activation, kernel_initializer=init,
                               bias_initializer="zeros", name=f"fc{k + 1}")(x)
        fan_in = size
    if l2_normalize:
        x = keras.layers.UnitNormalization(name="l2_normalize")(x)
    return keras.Model(inputs, x, name=name or f"stripe_mlp{num_layers}")
