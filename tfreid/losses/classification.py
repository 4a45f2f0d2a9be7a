"""Identity classification: a linear softmax head on the embedding, trained with cross-entropy.

The head maps the embedding to one logit per training identity. It exists only for training:
export the embedding model (the head's input), not the head.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfreid.losses.wrapper import LossFunctionWrapper


@keras.saving.register_keras_serializable(package="tfreid")
class ClassificationHead(keras.layers.Layer):
    """Linear layer [B, d] -> logits [B, num_classes] over the training identities.

    A bias is used by default (a plain softmax classifier, as in the paper's classification
    baseline); use_bias=False gives a bias-free head whose logits depend on the embedding only.

    Args:
      num_classes: number of training identities (labels must be 0..num_classes-1).
      use_bias: add a per-identity bias.
      kernel_initializer: initializer of the [d, num_classes] weight.
    """

    def __init__(self, num_classes: int, use_bias: bool = True, kernel_initializer="glorot_uniform",
                 **kwargs):
        super().__init__(**kwargs)
        if int(num_classes) < 1:
            raise ValueError(f"ClassificationHead: num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.dense = keras.layers.Dense(self.num_classes, use_bias=self.use_bias,
                                        kernel_initializer=self.kernel_initializer, name="logits")

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, embeddings):
        return self.dense(embeddings)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.num_classes)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


def classification_loss(labels, logits, label_smoothing: float = 0.0) -> tf.Tensor:
    """Mean softmax cross-entropy of identity logits.

    Args:
      labels: [B] or [B, 1] identity indices in 0..C-1 (any numeric dtype).
      logits: [B, C] float logits, e.g. from `ClassificationHead`.
      label_smoothing: epsilon of label smoothing (0 = plain cross-entropy).

    Returns:
      Scalar mean loss over the batch.

    Raises:
      ValueError: if logits are not [B, C] or label_smoothing is outside [0, 1).
      tf.errors.InvalidArgumentError: (at run time) if a label is outside 0..C-1.
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"classification_loss: label_smoothing must be in [0, 1), got {label_smoothing}")
    logits = tf.convert_to_tensor(logits)
    if logits.shape.rank != 2:
        raise ValueError(f"classification_loss: logits (y_pred) must be [batch, classes], got {logits.shape}")
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    num_classes = tf.shape(logits)[1]
    tf.debugging.assert_less(labels, num_classes,
                             message="classification_loss: label >= number of logits (classes)")
    tf.debugging.assert_non_negative(labels, message="classification_loss: negative label")
    if label_smoothing:
        onehot = tf.one_hot(labels, num_classes, dtype=logits.dtype)
        onehot = onehot * (1.0 - label_smoothing) + label_smoothing / tf.cast(num_classes, logits.dtype)
        per = tf.nn.softmax_cross_entropy_with_logits(onehot, logits)
    else:
        per = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return tf.reduce_mean(per)


@keras.saving.register_keras_serializable(package="tfreid")
class ClassificationLoss(LossFunctionWrapper):
    """Keras wrapper of `classification_loss` (y_true = labels [B], y_pred = logits [B, C])."""

    fn = staticmethod(classification_loss)
