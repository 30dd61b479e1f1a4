"""Training augmentation of canonical images (`--augment`), applied before preprocessing."""

from __future__ import annotations

import tensorflow as tf

from atcon_tf import choices


def augment(image, policy: str, seed=None):
  """Label-preserving training augmentation on uint8 (S, S, 3) -> uint8.

  none; digits: colour inversion and channel permutation (digit colour / polarity are random in house numbers
  and SVHN) and a random translation of up to 1/8 of the size (edge pixels repeated); flip: the authors' SVHN /
  older PASCAL flips (horizontal and vertical, p=0.5 each); voc: random resized crop (scale 0.5-1) + horizontal
  flip (the authors' pascal_voc HEAD, without colour jitter).
  """
  if policy == "none":
    return image
  x = tf.cast(image, tf.float32)
  size = tf.shape(x)[:2]
  if policy == "digits":
    x = tf.where(tf.random.uniform([]) < 0.5, 255.0 - x, x)
    x = tf.gather(x, tf.random.shuffle(tf.range(3)), axis=-1)
    pad = tf.maximum(size // 8, 1)
    padded = tf.pad(x, [[pad[0], pad[0]], [pad[1], pad[1]], [0, 0]], mode="SYMMETRIC")
    x = tf.image.random_crop(padded, tf.concat([size, [3]], 0))
  elif policy == "flip":
    x = tf.image.random_flip_left_right(x)
    x = tf.image.random_flip_up_down(x)
  elif policy == "voc":
    begin, crop, _ = tf.image.sample_distorted_bounding_box(
      image_size=tf.concat([size, [3]], 0),
      bounding_boxes=tf.zeros([1, 0, 4]),
      min_object_covered=0.0,
      aspect_ratio_range=(3 / 4, 4 / 3),
      area_range=(0.5, 1.0),
      use_image_if_no_bounding_boxes=True,
    )
    x = tf.image.resize(tf.slice(x, begin, crop), size)
    x = tf.image.random_flip_left_right(x)
  else:
    choices.check("augmentation", policy, choices.AUGMENTATIONS)
  return tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.uint8)
