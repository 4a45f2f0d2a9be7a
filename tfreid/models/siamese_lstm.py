"""Siamese LSTM over horizontal stripes (Varior et al., ECCV 2016, "A Siamese Long Short-Term
Memory Architecture for Human Re-Identification", Sec. 3).

An image is a sequence of R stripe features x_1..x_R (top stripe first). A single-layer LSTM
without peepholes (n units) reads the rows; every hidden state is kept and
s = W_M^T [h_1; ...; h_R] (W_M of size R·n × R·n, linear) is the embedding. Two branches with the
same weights give D = ||s_p - s_q||_2, trained with the contrastive loss
(`tfreid.losses.contrastive_pair_loss`).

Choices the paper leaves open (documented here, tested in tests/test_siamese_lstm.py):
- W_M has no bias: a bias is added to both s_p and s_q and cancels in s_p - s_q, so it could
  never receive a gradient.
- Every weight matrix (LSTM kernel, recurrent kernel, W_M) is drawn from U[-a, a] with the
  paper's a = sqrt(1 / (d + n)). LSTM biases start at zero except the forget gate (+1,
  `unit_forget_bias`, Jozefowicz et al. 2015) so that context is carried down the rows from the
  first step; pass `unit_forget_bias=False` for all-zero biases.
- Multi-scale LOMO (24, 11 and 5 rows) is fed `mode="per_scale"` by default: one LSTM per scale,
  each reading its own rows top to bottom, the hidden states of all scales concatenated before
  W_M. The paper treats the rows of a scale as the sequence; chaining the scales into one
  40-step sequence (`mode="one_sequence"`) would make the LSTM step from the bottom of the image
  at one scale to the top at the next, a spatial jump its recurrence has no reason to model, and
  would mix three scales with different statistics in one set of gates. Both modes take the
  same [B, 40, 674] input and give the same [B, 40·n] output, so they are interchangeable.
"""

from __future__ import annotations

import math
from typing import Sequence

import keras
import tensorflow as tf

MODES = ("one_sequence", "per_scale")


def paper_initializer(fan_in: int, units: int, seed: int | None = None) -> keras.initializers.RandomUniform:
    """U[-a, a] with a = sqrt(1 / (fan_in + units)), the paper's initialisation (Sec. 4.1)."""
    a = math.sqrt(1.0 / (fan_in + units))
    return keras.initializers.RandomUniform(-a, a, seed=seed)


def _child_seed(seed: int | None, k: int) -> int | None:
    return None if seed is None else seed * 1000 + k


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
    if feature_dim <= 0 or hidden_units <= 0:
        raise ValueError(f"feature_dim and hidden_units must be positive, got {feature_dim}, {hidden_units}")
    inputs = keras.Input((num_rows, feature_dim), name="stripes")
    if mode == "one_sequence" or len(scales) == 1:
        groups = [("lstm", inputs)]
    else:
        bounds = [sum(scales[:k]) for k in range(len(scales) + 1)]
        groups = [(f"lstm_scale{k}", RowSlice(bounds[k], bounds[k + 1], name=f"rows_scale{k}")(inputs))
                  for k in range(len(scales))]
    hidden = []
    for k, (layer_name, seq) in enumerate(groups):
        init = paper_initializer(feature_dim, hidden_units, _child_seed(seed, 2 * k))
        rec_init = paper_initializer(feature_dim, hidden_units, _child_seed(seed, 2 * k + 1))
        hidden.append(keras.layers.LSTM(
            hidden_units, return_sequences=True, kernel_initializer=init,
            recurrent_initializer=rec_init, bias_initializer="zeros",
            unit_forget_bias=unit_forget_bias, unroll=unroll, name=layer_name)(seq))
    h = hidden[0] if len(hidden) == 1 else keras.layers.Concatenate(axis=1, name="concat_scales")(hidden)
    h = keras.layers.Flatten(name="concat_rows")(h)  # [h_1; ...; h_R], row-major
    s = keras.layers.Dense(num_rows * hidden_units, use_bias=False, name="w_m",
                           kernel_initializer=paper_initializer(
                               feature_dim, hidden_units, _child_seed(seed, 999)))(h)
    if l2_normalize:
        s = keras.layers.UnitNormalization(name="l2_normalize")(s)
    return keras.Model(inputs, s, name=name)


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


def siamese_optimizer(learning_rate: float = 1e-3, decay_rate: float = 0.95,
                      steps_per_epoch: int = 1) -> keras.optimizers.RMSprop:
    """RMSProp as in the paper: rho 0.95, gradients clipped element-wise at 5.

    The learning rate is multiplied by `decay_rate` once per epoch (staircase exponential
    decay; decay_rate=1 keeps it constant).

    Args:
      learning_rate: initial learning rate.
      decay_rate: per-epoch factor in (0, 1].
      steps_per_epoch: optimizer steps (batches) in one epoch.
    """
    if not 0.0 < decay_rate <= 1.0:
        raise ValueError(f"decay_rate must be in (0, 1], got {decay_rate}")
    if steps_per_epoch < 1 or learning_rate <= 0:
        raise ValueError(f"need learning_rate > 0 and steps_per_epoch >= 1, "
                         f"got {learning_rate}, {steps_per_epoch}")
    schedule = keras.optimizers.schedules.ExponentialDecay(
        learning_rate, decay_steps=int(steps_per_epoch), decay_rate=decay_rate, staircase=True)
    return keras.optimizers.RMSprop(learning_rate=schedule, rho=0.95, clipvalue=5.0)


# ----------------------------------------------------------------------------- inspection (Fig. 3)

def _lstm_layers(model: keras.Model) -> list[keras.layers.LSTM]:
    model = embedding_of(model)
    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.LSTM)]
    if not layers:
        raise ValueError(f"model {model.name!r} has no LSTM layer; gate activations need one "
                         "built by build_stripe_lstm")
    return layers


def _run_gates(layer: keras.layers.LSTM, seq: tf.Tensor) -> dict[str, tf.Tensor]:
    """Re-runs the LSTM cell on seq [B, T, d]; Keras' gate order in the kernel is i, f, c, o."""
    cell = layer.cell
    kernel, rec, bias = cell.kernel, cell.recurrent_kernel, cell.bias
    n = cell.units
    batch = tf.shape(seq)[0]
    h = tf.zeros([batch, n], seq.dtype)
    c = tf.zeros([batch, n], seq.dtype)
    out = {key: [] for key in ("input", "forget", "output", "candidate", "cell", "hidden")}
    for t in range(seq.shape[1]):
        z = tf.matmul(seq[:, t], kernel) + tf.matmul(h, rec)
        if bias is not None:
            z = z + bias
        z_i, z_f, z_c, z_o = tf.split(z, 4, axis=1)
        i, f, o = cell.recurrent_activation(z_i), cell.recurrent_activation(z_f), cell.recurrent_activation(z_o)
        g = cell.activation(z_c)
        c = f * c + i * g
        h = o * cell.activation(c)
        for key, value in zip(out, (i, f, o, g, c, h)):
            out[key].append(value)
    return {key: tf.stack(values, axis=1) for key, values in out.items()}


def gate_activations(model: keras.Model, inputs) -> dict[str, tf.Tensor]:
    """Gate activations of every row, for the gate heat maps of the paper's Fig. 3.

    Args:
      model: a model from build_stripe_lstm (or a siamese model wrapping one).
      inputs: stripe features [B, R, d].

    Returns:
      dict of float32 tensors [B, R, n]: "input", "forget", "output" gates, "candidate" (the
      tanh cell input), "cell" (c_r) and "hidden" (h_r, equal to the LSTM layer's output). In
      per_scale models the rows of each scale come from that scale's LSTM, in input order.
    """
    emb = embedding_of(model)
    inputs = tf.convert_to_tensor(inputs, tf.float32)
    want = tuple(emb.input_shape[1:])
    if tuple(inputs.shape[1:]) != want:
        raise ValueError(f"inputs have shape {tuple(inputs.shape)}, model {emb.name!r} expects [B, {want}]")
    parts = []
    for layer in _lstm_layers(emb):
        if layer.input is emb.inputs[0]:
            seq = inputs
        else:
            seq = keras.Model(emb.inputs[0], layer.input)(inputs)
        parts.append(_run_gates(layer, tf.convert_to_tensor(seq)))
    return {key: tf.concat([p[key] for p in parts], axis=1) for key in parts[0]}


def gate_norms(model: keras.Model, inputs) -> tf.Tensor:
    """L2 norm of the input, forget and output gate vectors per row: [B, R, 3] float32."""
    gates = gate_activations(model, inputs)
    return tf.stack([tf.norm(gates[key], axis=-1) for key in ("input", "forget", "output")], axis=-1)
