"""What a classifier's logits mean: probabilities and the supervised loss, one rule for every caller.

Single-label heads use softmax, multi-label heads use independent sigmoids. Training, evaluation, the
TensorBoard pictures and the served `probabilities` all go through `probabilities`, so they cannot disagree.
"""

import tensorflow as tf


def probabilities(logits, multi_label: bool):
  """Softmax over classes (single-label) or a sigmoid per class (multi-label)."""
  return tf.sigmoid(logits) if multi_label else tf.nn.softmax(logits, axis=-1)


def supervised_loss(labels, logits, multi_label: bool):
  """Per-example cross-entropy on logits; sparse or one-hot labels for single-label heads."""
  labels = tf.convert_to_tensor(labels)
  if multi_label:
    labels = tf.cast(labels, logits.dtype)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels, logits), axis=-1)
  if labels.shape.rank == logits.shape.rank:
    return tf.nn.softmax_cross_entropy_with_logits(tf.cast(labels, logits.dtype), logits)
  labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
  return tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
