"""Which class a map explains: the top-1 prediction by default, or one given per example."""
import tensorflow as tf


def top1_classes(logits):
  """Top-1 class per example; no gradient flows through the choice."""
  return tf.argmax(tf.stop_gradient(logits), axis=-1, output_type=tf.int32)


def resolve_classes(logits, class_ids=None):
  """`class_ids` as an int32 (B,) tensor; None, or an entry of -1, means the top-1 class."""
  top1 = top1_classes(logits)
  if class_ids is None:
    return top1
  class_ids = as_class_ids(class_ids, tf.shape(logits)[0])
  return tf.where(class_ids >= 0, class_ids, top1)


def as_class_ids(class_ids, batch_size):
  """A scalar or (B,) class index as an int32 (B,) tensor."""
  class_ids = tf.cast(tf.convert_to_tensor(class_ids), tf.int32)
  return tf.broadcast_to(class_ids, [batch_size])


def target_logits(logits, class_ids):
  """z[i, c_i] for each example i."""
  return tf.gather(logits, class_ids, axis=-1, batch_dims=1)


def classes_for(tapped, x, class_ids=None):
  """Classes to explain for `x`: `class_ids`, or the top-1 predictions (one forward) when None."""
  if class_ids is None:
    return top1_classes(tapped.logits(x))
  return as_class_ids(class_ids, tf.shape(x)[0])
