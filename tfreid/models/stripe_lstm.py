"""The LSTM branch of the siamese LSTM over horizontal stripes (Varior et al., ECCV 2016, "A
Siamese Long Short-Term Memory Architecture for Human Re-Identification", Sec. 3).

An image is a sequence of R stripe features x_1..x_R (top stripe first). A single-layer LSTM
without peepholes (n units) reads the rows; every hidden state is kept and
s = W_M^T [h_1; ...; h_R] (W_M of size R·n × R·n, linear) is the embedding. Two such branches
with the same weights make the siamese model (`tfreid.models.siamese.build_siamese`); its gates
are read out by `tfreid.models.lstm_gates`.

Choices the paper leaves open (documented here, tested in tests/models/test_siamese_lstm.py):
- W_M has no bias: a bias is added to both s_p and s_q and cancels in s_p - s_q, so it could
  never receive a gradient.
- Every weight matrix (LSTM kernel, recurrent kernel, W_M) is drawn from U[-a, a] with the
  paper's a = sqrt(1 / (d + n)) (`tfreid.models.stripe_branch.paper_initializer`). LSTM biases
  start at zero except the forget gate (+1, `unit_forget_bias`, Jozefowicz et al. 2015) so that
  context is carried down the rows from the first step; pass `unit_forget_bias=False` for
  all-zero biases.
- Multi-scale LOMO (24, 11 and 5 rows) is fed `mode="per_scale"` by default: one LSTM per scale,
  each reading its own rows top to bottom, the hidden states of all scales concatenated before
  W_M. The paper treats the rows of a scale as the sequence; chaining the scales into one
  40-step sequence (`mode="one_sequence"`) would make the LSTM step from the bottom of the image
  at one scale to the top at the next, a spatial jump its recurrence has no reason to model, and
  would mix three scales with different statistics in one set of gates. Both modes take the
  same [B, 40, 674] input and give the same [B, 40·n] output, so they are interchangeable.
"""

from __future__ import annotations

from typing import Sequence

import keras

from tfreid.models.stripe_branch import child_seed, paper_initializer, stripe_input

MODES = ("one_sequence", "per_scale")


@keras.saving.register_keras_serializable(package="tfreid")
class RowSlice(keras.layers.Layer):
    """Selects rows [start, stop) of a stripe sequence: [B, R, d] -> [B, stop - start, d]."""

    def __init__(self, start: int, stop: int, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= start < stop:
            raise ValueError(f"RowSlice needs 0 <= start < stop, got start={start}, stop={stop}")
        self.start, self.stop = int(start), int(stop)

    def call(self, inputs):
        return inputs[:, self.start:self.stop]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.stop - self.start) + tuple(input_shape[2:])

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop}


def _check_scales(num_rows: int, scales: Sequence[int] | None, mode: str) -> tuple[int, ...]:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if scales is None:
        return (int(num_rows),)
    scales = tuple(int(s) for s in scales)
    if not scales or min(scales) <= 0 or sum(scales) != num_rows:
        raise ValueError(f"scales={scales} must be positive row counts summing to num_rows={num_rows}")
    return scales


def build_stripe_lstm(num_rows: int, feature_dim: int, hidden_units: int = 50, *,
                      scales: Sequence[int] | None = None, mode: str = "per_scale",
                      l2_normalize: bool = False, unit_forget_bias: bool = True,
                      unroll: bool = True, seed: int | None = None,
                      name: str = "stripe_lstm") -> keras.Model:
    """Builds the stripe-sequence embedding of one siamese branch.

    Args:
      num_rows: R, stripes per image (LOMO: 24 + 11 + 5 = 40; Color Names: its stripe count).
      feature_dim: d, features per stripe (LOMO: 674).
      hidden_units: n, LSTM units (paper: 25 for Market-1501, 50 for CUHK03 / VIPeR).
      scales: rows per scale, top to bottom, summing to R, e.g. (24, 11, 5) for LOMO; None means
        one scale of R rows (then `mode` makes no difference).
      mode: "per_scale" (one LSTM per scale, the default, see module docstring) or
        "one_sequence" (one LSTM over all R rows, scales chained).
      l2_normalize: divide s by its L2 norm (off: the paper uses the raw s).
      unit_forget_bias: start the forget-gate bias at 1 (else 0).
      unroll: unroll the recurrence (sequences are at most R rows long; about 2x faster
        training steps on CPU than the symbolic loop, same numbers).
      seed: seed of the initialisers (None: random).
      name: model name.

    Returns:
      keras.Model [B, R, d] float32 -> s [B, R·n] float32. Its LSTM layers are named "lstm"
      (one_sequence or one scale) or "lstm_scale{k}" (per_scale).
    """
    scales = _check_scales(num_rows, scales, mode)
    if hidden_units <= 0:
        raise ValueError(f"hidden_units must be positive, got {hidden_units}")
    inputs = stripe_input(num_rows, feature_dim)
    if mode == "one_sequence" or len(scales) == 1:
        groups = [("lstm", inputs)]
    else:
        bounds = [sum(scales[:k]) for k in range(len(scales) + 1)]
        groups = [(f"lstm_scale{k}", RowSlice(bounds[k], bounds[k + 1], name=f"rows_scale{k}")(inputs))
                  for k in range(len(scales))]
    hidden = []
    for k, (layer_name, seq) in enumerate(groups):
        init = paper_initializer(feature_dim, hidden_units, child_seed(seed, 2 * k))
        rec_init = paper_initializer(feature_dim, hidden_units, child_seed(seed, 2 * k + 1))
        hidden.append(keras.layers.LSTM(
            hidden_units, return_sequences=True, kernel_initializer=init,
            recurrent_initializer=rec_init, bias_initializer="zeros",
            unit_forget_bias=unit_forget_bias, unroll=unroll, name=layer_name)(seq))
    h = hidden[0] if len(hidden) == 1 else keras.layers.Concatenate(axis=1, name="concat_scales")(hidden)
    h = keras.layers.Flatten(name="concat_rows")(h)  # [h_1; ...; h_R], row-major
    s = keras.layers.Dense(num_rows * hidden_units, use_bias=False, name="w_m",
                           kernel_initializer=paper_initializer(
                               feature_dim, hidden_units, child_seed(seed, 999)))(h)
    if l2_normalize:
        s = keras.layers.UnitNormalization(name="l2_normalize")(s)
    return keras.Model(inputs, s, name=name)
