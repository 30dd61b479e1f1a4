"""Plain input gradients d z_c / d x: the building block of IG and SmoothGrad."""

import tensorflow as tf

from atcon_tf.maps import targets


def input_gradients(tapped, x, class_ids):
  """d z_c / d x (shape of `x`) through the ordinary ReLUs, for given classes."""
  with tf.GradientTape() as tape:
    tape.watch(x)
    logits = tapped.logits(x)
    target = tf.reduce_sum(targets.target_logits(logits, class_ids))
  return tape.gradient(target, x)
