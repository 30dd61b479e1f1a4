"""Shared test helpers: quiet TensorFlow, tiny pixel batches, and an eager reference of the served outputs.

The reference is built only from atcon_tf's primitive maps and the loss (no `maps.explain`, no serving
code), so it is an independent check of the fused paths that exports, evaluation and pictures use.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def pixels(batch, size=16, seed=0, channels=3):
  """Random raw pixels in [0, 255], float32 (B, size, size, channels)."""
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, size=(batch, size, size, channels)).astype(np.float32)


def reference_outputs(tapped, raw_images, preprocessing="scale_0_1", class_ids=None, mask_intensity=8.0):
  """NumPy outputs of `serving_default` (or `explain_class` when class_ids is given).

  `consistency` comes from `consistency_per_image` when every class is the top-1 one (the ATCON
  definition); for other classes it repeats the loss's steps for that class.
  """
  import tensorflow as tf

  from atcon_tf import maps
  from atcon_tf import preprocessing as preprocessing_lib
  from atcon_tf.losses import consistency_per_image
  from atcon_tf.losses.similarity import pearson_cost
  from atcon_tf.maps import processing

  x = tf.constant(preprocessing_lib.apply_numpy(raw_images, preprocessing))
  logits = tapped.logits(x)
  top1 = maps.top1_classes(logits).numpy()
  classes = top1 if class_ids is None else np.where(np.asarray(class_ids) >= 0, class_ids, top1)
  classes = tf.constant(classes.astype(np.int32))
  cam = maps.gradcam(tapped, x, classes, relu=True)
  saliency = processing.channel_magnitude(maps.guided_backprop(tapped, x, classes))
  if np.array_equal(classes.numpy(), top1):
    costs = consistency_per_image(tapped, x, mask_intensity=mask_intensity).costs
  else:
    raw_cam = maps.gradcam(tapped, x, classes, relu=False).cam
    mask, _ = processing.soft_mask(saliency, mask_intensity)
    masked = maps.gradcam(tapped, x * mask[..., None], classes, relu=False).cam
    costs = pearson_cost(raw_cam, masked)
  size = tf.shape(x)[1:3]
  return {
    "probabilities": tapped.probabilities(cam.logits).numpy(),
    "class_ids": classes.numpy(),
    "gradcam": processing.normalize_01(processing.resize_align_corners(cam.cam, size)).numpy(),
    "guided_backprop": processing.normalize_01(saliency).numpy(),
    "consistency": (-costs).numpy(),
  }


def reference_predict(tapped, raw_images, preprocessing="scale_0_1"):
  """NumPy outputs of the `predict` signature."""
  import tensorflow as tf

  from atcon_tf import maps
  from atcon_tf import preprocessing as preprocessing_lib

  x = tf.constant(preprocessing_lib.apply_numpy(raw_images, preprocessing))
  logits = tapped.logits(x)
  return {
    "probabilities": tapped.probabilities(logits).numpy(),
    "class_ids": maps.top1_classes(logits).numpy(),
  }
