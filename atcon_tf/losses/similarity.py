"""Map similarities of the ATCON loss, as costs per example (lower = more consistent).

Each takes two batches of maps (B, h, w) of the same size and returns (B,) costs:
- `pearson` (the default): -Pearson r of sigmoid(zscore(m1)) and sigmoid(zscore(m2));
  0 when a map is degenerate (zero or non-finite denominator), never NaN.
- `cross_correlation`: -|sum sigmoid(zscore(m1)) * sigmoid(zscore(m2))| (authors' metric 1).
- `ssim`: 1 - SSIM of the z-scored maps, Gaussian window 11, sigma 1.5,
  C1 = 0.01^2, C2 = 0.03^2, zero padding (authors' `pytorch_ssim`, metric 2).
"""

import math

import tensorflow as tf

from atcon_tf import choices
from atcon_tf.maps import processing


def pearson_cost(maps1, maps2):
  s1 = tf.sigmoid(processing.zscore(maps1))
  s2 = tf.sigmoid(processing.zscore(maps2))
  v1 = s1 - processing.spatial_mean(s1)
  v2 = s2 - processing.spatial_mean(s2)
  numerator = tf.reduce_sum(v1 * v2, axis=[1, 2])
  denominator = processing.safe_sqrt(tf.reduce_sum(tf.square(v1), axis=[1, 2])) * processing.safe_sqrt(
    tf.reduce_sum(tf.square(v2), axis=[1, 2])
  )
  valid = tf.logical_and(denominator > 0, tf.math.is_finite(denominator))
  valid = tf.logical_and(valid, tf.math.is_finite(numerator))
  safe_den = tf.where(valid, denominator, tf.ones_like(denominator))
  safe_num = tf.where(valid, numerator, tf.zeros_like(numerator))
  return tf.where(valid, -safe_num / safe_den, tf.zeros_like(numerator))


def cross_correlation_cost(maps1, maps2):
  s1 = tf.sigmoid(processing.zscore(maps1))
  s2 = tf.sigmoid(processing.zscore(maps2))
  return -tf.abs(tf.reduce_sum(s1 * s2, axis=[1, 2]))


def _gaussian_window(size=11, sigma=1.5, dtype=tf.float32):
  values = [math.exp(-((i - size // 2) ** 2) / (2.0 * sigma**2)) for i in range(size)]
  g = tf.constant(values, dtype=dtype)
  g = g / tf.reduce_sum(g)
  return tf.reshape(tf.tensordot(g, g, axes=0), [size, size, 1, 1])


def ssim_cost(maps1, maps2, window_size=11, sigma=1.5):
  z1 = processing.zscore(maps1)[..., None]
  z2 = processing.zscore(maps2)[..., None]
  window = _gaussian_window(window_size, sigma, z1.dtype)

  def blur(t):
    return tf.nn.conv2d(t, window, strides=1, padding="SAME")

  mu1, mu2 = blur(z1), blur(z2)
  var1 = blur(z1 * z1) - mu1 * mu1
  var2 = blur(z2 * z2) - mu2 * mu2
  cov = blur(z1 * z2) - mu1 * mu2
  c1, c2 = 0.01**2, 0.03**2
  ssim_map = ((2 * mu1 * mu2 + c1) * (2 * cov + c2)) / ((mu1**2 + mu2**2 + c1) * (var1 + var2 + c2))
  return 1.0 - tf.reduce_mean(ssim_map, axis=[1, 2, 3])


SIMILARITIES = {
  "pearson": pearson_cost,
  "cross_correlation": cross_correlation_cost,
  "ssim": ssim_cost,
}
assert tuple(SIMILARITIES) == choices.SIMILARITIES


def get_similarity(name):
  choices.check("similarity", name, choices.SIMILARITIES)
  return SIMILARITIES[name]
