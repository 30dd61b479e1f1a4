"""Per-image statistics and resizing shared by the maps and the loss.

All functions act on maps of shape (B, h, w) and reduce over the spatial axes only,
so every example is processed on its own (server-side batching stays correct).
"""

import tensorflow as tf


def safe_sqrt(x):
  """sqrt with a finite gradient at 0 (a constant map must not produce NaN gradients)."""
  positive = x > 0
  return tf.where(positive, tf.sqrt(tf.where(positive, x, tf.ones_like(x))), tf.zeros_like(x))


def spatial_mean(maps):
  return tf.reduce_mean(maps, axis=[1, 2], keepdims=True)


def spatial_std(maps, ddof=1):
  """Per-image std over (h, w); ddof=1 is torch's default (unbiased), as the authors use."""
  n = tf.cast(tf.shape(maps)[1] * tf.shape(maps)[2], maps.dtype)
  centered = maps - spatial_mean(maps)
  var = tf.reduce_sum(tf.square(centered), axis=[1, 2], keepdims=True) / (n - ddof)
  return safe_sqrt(var)


def zscore(maps):
  """(m - mean) / std_ddof1 per image; a constant map becomes all zeros."""
  std = spatial_std(maps)
  centered = maps - spatial_mean(maps)
  return tf.where(std > 0, centered / tf.where(std > 0, std, tf.ones_like(std)), tf.zeros_like(centered))


def channel_magnitude(attributions):
  """G = sum over channels of |attribution|: (B, H, W, C) -> (B, H, W)."""
  return tf.reduce_sum(tf.abs(attributions), axis=-1)


def soft_mask(saliency, intensity):
  """ATCON's soft mask sigmoid(w (G - (mean G + std_ddof1 G / 2))), not detached.

  Returns the mask and its logits w (G - sigma) (log their spread: a tiny spread means
  the mask is ~0.5 everywhere and does nothing).
  """
  sigma = spatial_mean(saliency) + 0.5 * spatial_std(saliency)
  mask_logits = intensity * (saliency - sigma)
  return tf.sigmoid(mask_logits), mask_logits


def resize_align_corners(maps, size):
  """Bilinear resize with align_corners=True (torch's upsample_bilinear, the authors' mode 0)."""
  resized = tf.raw_ops.ResizeBilinear(
    images=maps[..., None], size=size, align_corners=True, half_pixel_centers=False
  )
  return tf.cast(resized[..., 0], maps.dtype)


def average_pool_to(maps, size):
  """Average-pools (B, H, W) maps down to `size` by the actual ratio H/h, W/w.

  The authors hard-coded a 32x pool (ResNet-50 at 256 px); here the ratio comes from the
  shapes, and must be an integer.
  """
  height, width = maps.shape[1], maps.shape[2]
  h, w = size
  if None in (height, width, h, w) or height % h or width % w:
    raise ValueError(
      f"Cannot average-pool maps of size {height}x{width} to {h}x{w}: the "
      "input size must be a known integer multiple of the Grad-CAM size."
    )
  ratio = (height // h, width // w)
  return tf.nn.avg_pool2d(maps[..., None], ratio, ratio, "VALID")[..., 0]


def nearest_upsample(maps, size):
  """Nearest-neighbour upsampling (block replication for integer factors)."""
  return tf.image.resize(maps[..., None], size, method="nearest")[..., 0]


def normalize_01(maps):
  """Min-max to [0, 1] per image; a constant map becomes zeros."""
  lo = tf.reduce_min(maps, axis=[1, 2], keepdims=True)
  hi = tf.reduce_max(maps, axis=[1, 2], keepdims=True)
  span = hi - lo
  return tf.where(span > 0, (maps - lo) / tf.where(span > 0, span, tf.ones_like(span)), tf.zeros_like(maps))
