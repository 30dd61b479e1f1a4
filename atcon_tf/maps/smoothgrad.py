"""SmoothGrad (Smilkov et al. 2017): gradients averaged over noisy copies of the input.

Noise std = noise_level * (max - min) of each image. With `magnitude=True` the squared
gradients are averaged (PAIR saliency's definition). Noise comes from a stateless RNG
so the map, and its gradient, are reproducible.
"""

import tensorflow as tf

from atcon_tf.maps.vanilla_gradients import input_gradients
from atcon_tf.maps import targets


def smoothgrad(tapped, x, class_ids=None, samples=25, noise_level=0.15, magnitude=True, seed=0):
  """SmoothGrad attributions, shape of `x`."""
  x = tf.convert_to_tensor(x)
  if samples < 1:
    raise ValueError(f"samples must be >= 1, got {samples}.")
  class_ids = targets.classes_for(tapped, x, class_ids)
  value_range = tf.reduce_max(x, axis=[1, 2, 3]) - tf.reduce_min(x, axis=[1, 2, 3])
  stddev = tf.reshape(noise_level * value_range, [1, -1, 1, 1, 1])
  shape = tf.concat([[samples], tf.shape(x)], axis=0)
  noise = tf.random.stateless_normal(shape, seed=[seed, 0], dtype=x.dtype) * tf.stop_gradient(stddev)
  noisy = tf.reshape(x[None] + noise, tf.concat([[-1], tf.shape(x)[1:]], axis=0))
  grads = input_gradients(tapped, noisy, tf.tile(class_ids, [samples]))
  grads = tf.reshape(grads, shape)
  if magnitude:
    grads = tf.square(grads)
  return tf.reduce_mean(grads, axis=0)
