"""Integrated Gradients (Sundararajan et al. 2017), as the ATCON ablation intends it.

IG = (x - b) * mean_{k=0..m} dz_c/dx (b + k/m (x - b)); zero baseline and m = 5 by
default (docs/method.md §8.7: the authors' code normalised over steps by mistake). All m+1
points run as one batch.
"""

import tensorflow as tf

from atcon_tf.maps import targets
from atcon_tf.maps.vanilla_gradients import input_gradients


def integrated_gradients(tapped, x, class_ids=None, steps=5, baseline=None):
  """IG attributions, shape of `x`. Class = top-1 prediction on `x` unless given."""
  x = tf.convert_to_tensor(x)
  if steps < 1:
    raise ValueError(f"steps must be >= 1, got {steps}.")
  class_ids = targets.classes_for(tapped, x, class_ids)
  baseline = tf.zeros_like(x) if baseline is None else tf.broadcast_to(baseline, tf.shape(x))
  alphas = tf.linspace(0.0, 1.0, steps + 1)
  alphas = tf.cast(tf.reshape(alphas, [-1, 1, 1, 1, 1]), x.dtype)
  path = baseline[None] + alphas * (x - baseline)[None]  # (m+1, B, H, W, C)
  flat = tf.reshape(path, tf.concat([[-1], tf.shape(x)[1:]], axis=0))
  flat_classes = tf.tile(class_ids, [steps + 1])
  grads = input_gradients(tapped, flat, flat_classes)
  grads = tf.reshape(grads, tf.shape(path))
  return (x - baseline) * tf.reduce_mean(grads, axis=0)
