"""Guided backpropagation of the target logit with respect to the input, differentiable."""
import tensorflow as tf

from atcon_tf.maps import targets


def guided_backprop(tapped, x, class_ids=None):
  """d z_c / d x through guided ReLUs: (B, H, W, C), same shape as `x`.

  Runs a separate guided forward pass, so ordinary gradients elsewhere are unchanged.
  """
  x = tf.convert_to_tensor(x)
  with tf.GradientTape() as tape:
    tape.watch(x)
    logits = tapped.logits(x, guided=True)
    class_ids = targets.resolve_classes(logits, class_ids)
    target = tf.reduce_sum(targets.target_logits(logits, class_ids))
  return tape.gradient(target, x)
