"""What a map explains: small callables from logits to one score per example (as pytorch-grad-cam's targets).

A target maps logits (B, K) to `(scores (B,), class_ids (B,))`: the maps differentiate `sum(scores)`, and
`class_ids` says which class each map is reported as. `ClassTarget` is the default (the top-1 class, or one
given per example, -1 meaning top-1); `SumOfLogits` gives the class-agnostic map used as a baseline.
"""

import tensorflow as tf


def top1_classes(logits):
  """Top-1 class per example; no gradient flows through the choice."""
  return tf.argmax(tf.stop_gradient(logits), axis=-1, output_type=tf.int32)


def as_class_ids(class_ids, batch_size):
  """A scalar or (B,) class index as an int32 (B,) tensor."""
  class_ids = tf.cast(tf.convert_to_tensor(class_ids), tf.int32)
  return tf.broadcast_to(class_ids, [batch_size])


def resolve_classes(logits, class_ids=None):
  """`class_ids` as an int32 (B,) tensor; None, or an entry of -1, means the top-1 class."""
  top1 = top1_classes(logits)
  if class_ids is None:
    return top1
  class_ids = as_class_ids(class_ids, tf.shape(logits)[0])
  return tf.where(class_ids >= 0, class_ids, top1)


def target_logits(logits, class_ids):
  """z[i, c_i] for each example i."""
  return tf.gather(logits, class_ids, axis=-1, batch_dims=1)


class ClassTarget:
  """The logit of one class per example: `class_ids` None / -1 = top-1, else a scalar or (B,) ids."""

  def __init__(self, class_ids=None):
    self.class_ids = class_ids

  def __call__(self, logits):
    classes = resolve_classes(logits, self.class_ids)
    return target_logits(logits, classes), classes


class SumOfLogits:
  """Class-agnostic: the sum of all logits (reported under the top-1 class)."""

  def __call__(self, logits):
    return tf.reduce_sum(logits, axis=-1), top1_classes(logits)


def as_target(class_ids=None, target=None):
  """`target` if given, else a `ClassTarget` of `class_ids`."""
  return ClassTarget(class_ids) if target is None else target


def classes_for(tapped, x, class_ids=None):
  """Classes to explain for `x`: `class_ids`, or the top-1 predictions (one forward) when None."""
  if class_ids is None:
    return top1_classes(tapped.logits(x))
  return as_class_ids(class_ids, tf.shape(x)[0])
