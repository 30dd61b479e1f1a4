"""Guided backpropagation of the target logit with respect to the input, differentiable."""

import tensorflow as tf

from atcon_tf.maps import targets
from atcon_tf.maps.guided_relu import guided_backward


def guided_backprop(tapped, x, class_ids=None, target=None):
  """d z_c / d x through guided ReLUs: (B, H, W, C), same shape as `x`.

  `class_ids`: None / -1 = top-1; `target`: any `targets` callable instead.
  Runs a separate guided forward pass, so ordinary gradients elsewhere are unchanged.
  """
  x = tf.convert_to_tensor(x)
  with tf.GradientTape() as tape:
    tape.watch(x)
    logits = tapped.logits(x, guided=True)
    scores, _ = targets.as_target(class_ids, target)(logits)
    total = tf.reduce_sum(scores)
  with guided_backward():
    return tape.gradient(total, x)
