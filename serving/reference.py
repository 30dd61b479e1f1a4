"""Eager reference for the served outputs, built only from `atcon_tf`'s public maps and loss.

Independent of `serving.signatures` (which fuses passes for speed), so tests can check that
an export (SavedModel, C++ loader, gRPC) gives what the in-memory model gives. Also handy to
explain images in a notebook without a server.
"""
import numpy as np
import tensorflow as tf

from atcon_tf import maps
from atcon_tf.losses import consistency_per_image
from atcon_tf.losses.similarity import pearson_cost
from atcon_tf.maps import processing
from serving.signatures import preprocess_numpy


def reference_outputs(tapped, raw_images, preprocessing="scale_0_1", class_ids=None,
                      mask_intensity=8.0):
  """NumPy outputs of `serving_default` (or `explain_class` when class_ids is given).

  `tapped`: an `atcon_tf.TappedModel`. `raw_images`: (B, H, W, C) raw pixels.
  `consistency` comes from `consistency_per_image` when every class is the top-1 one (the
  ATCON definition); for other classes it repeats the loss's steps for that class.
  """
  x = tf.constant(preprocess_numpy(raw_images, preprocessing))
  logits = tapped.logits(x)
  top1 = maps.top1_classes(logits).numpy()
  classes = top1 if class_ids is None else np.where(np.asarray(class_ids) >= 0, class_ids, top1)
  classes = tf.constant(classes.astype(np.int32))
  cam = maps.gradcam(tapped, x, classes, relu=True)
  gb = maps.guided_backprop(tapped, x, classes)
  saliency = processing.channel_magnitude(gb)
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
  x = tf.constant(preprocess_numpy(raw_images, preprocessing))
  logits = tapped.logits(x)
  return {"probabilities": tapped.probabilities(logits).numpy(),
          "class_ids": maps.top1_classes(logits).numpy()}
