"""Gate read-out of a trained stripe LSTM, for the gate heat maps of Varior et al. (ECCV 2016,
Fig. 3; drawn by `tfreid.viz.plot_gate_heatmaps`)."""

from __future__ import annotations

import keras
import tensorflow as tf

from tfreid.models.siamese import embedding_of


def _lstm_layers(model: keras.Model) -> list[keras.layers.LSTM]:
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
