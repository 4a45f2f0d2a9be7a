"""What every stripe-feature branch (the siamese LSTM, the Eq. 8-9 MLP baselines) shares: its
input, the stripe features [B, R, d] of one image (R stripes top to bottom, d features each), and
the paper's weight initialisation (Varior et al., ECCV 2016, Sec. 4.1).
"""

from __future__ import annotations

import math

import keras


def stripe_input(num_rows: int, feature_dim: int) -> keras.KerasTensor:
    """The branch input "stripes" [B, R, d] float32; refuses R <= 0 or d <= 0."""
    if num_rows <= 0 or feature_dim <= 0:
        raise ValueError(f"num_rows and feature_dim must be positive, got {num_rows}, {feature_dim}")
    return keras.Input((num_rows, feature_dim), name="stripes")


def paper_initializer(fan_in: int, units: int, seed: int | None = None) -> keras.initializers.RandomUniform:
    """U[-a, a] with a = sqrt(1 / (fan_in + units)), the paper's initialisation (Sec. 4.1)."""
    a = math.sqrt(1.0 / (fan_in + units))
    return keras.initializers.RandomUniform(-a, a, seed=seed)


def child_seed(seed: int | None, k: int) -> int | None:
    """The seed of a branch's k-th initialiser (None stays None: random)."""
    return None if seed is None else seed * 1000 + k
