"""The TensorFlow graphs behind the serving signatures: decoding, maps, predictions.

Plain TF ops only (tf.GradientTape and the guided ReLU's tf.custom_gradient trace to standard
ops), so they run inside a SavedModel signature and TF Serving can serve them. Every output is
per example along axis 0 (each map is normalised on its own), so server-side batching never
mixes examples. The maps themselves come from `atcon_tf.maps.explain`, the composition that
training pictures and evaluation use too.

Outputs of the explaining signatures:
- `probabilities` (B, K): softmax, or per-class sigmoids for a multi-label model.
- `class_ids` (B,) int32: the explained class, top-1 unless one was requested.
- `gradcam` (B, H, W): ReLU Grad-CAM at the target layer, resized to the input size
  (bilinear, align_corners) and min-max normalised per image.
- `guided_backprop` (B, H, W): sum over channels of |guided backprop|, min-max per image.
- `consistency` (B,): -ATCON cost of the explained class with the model's recorded loss
  settings (Pearson r in [-1, 1] by default, higher = more consistent).
"""

import tensorflow as tf

from atcon_tf import maps

MAPS_OUTPUTS = ("probabilities", "class_ids", "gradcam", "guided_backprop")  # `maps`: no masked forward
EXPLAIN_OUTPUTS = MAPS_OUTPUTS + ("consistency",)
PREDICT_OUTPUTS = ("probabilities", "class_ids")


def decode_images(encoded, image_size, channels, max_pixels=None):
  """Encoded JPEG/PNG/GIF/BMP strings (B,) -> float32 raw pixels (B, H, W, C) in [0, 255].

  Each image is decoded to `channels` channels and resized to `image_size` (bilinear with
  antialiasing; an image that already has the size passes through unchanged). An
  undecodable string, or one whose header declares more than `max_pixels` pixels (checked
  before decoding, see `serving.export.decode_limits`), raises InvalidArgumentError.
  """
  height, width = image_size

  def one(args):
    data, index = args
    image = decode_one(data, index, channels, max_pixels)
    # At the same size this resize is the identity (sampling at the pixel centres).
    resized = tf.image.resize(tf.cast(image, tf.float32), [height, width], method="bilinear", antialias=True)
    return tf.ensure_shape(resized, [height, width, channels])

  indices = tf.range(tf.shape(encoded)[0])
  return tf.map_fn(
    one, (encoded, indices), fn_output_signature=tf.TensorSpec([height, width, channels], tf.float32)
  )


def decode_one(data, index, channels, max_pixels=None):
  """One encoded image -> uint8 (h, w, channels), its header size checked against `max_pixels` first."""
  checks = []
  if max_pixels:
    from serving.export import decode_limits

    checks = [decode_limits.check_size(data, index, max_pixels)]
  with tf.control_dependencies(checks):
    return tf.io.decode_image(data, channels=channels, dtype=tf.uint8, expand_animations=False)


def check_class_ids(class_ids, batch_size, num_classes):
  """In-graph guards (Assert ops): one class id per image, each in [-1, num_classes)."""
  checks = [
    tf.debugging.assert_equal(
      tf.shape(class_ids)[0], batch_size, message="class_ids must have one entry per image"
    ),
    tf.debugging.assert_greater_equal(class_ids, -1, message="class_ids must be >= -1 (-1 = top-1)"),
    tf.debugging.assert_less(class_ids, num_classes, message=f"class_ids must be < {num_classes}"),
  ]
  with tf.control_dependencies(checks):
    return tf.identity(class_ids)


def explain_outputs(tapped, x, class_ids=None, config=None, with_consistency=True):
  """The explaining signatures' outputs for a preprocessed batch `x` (B, H, W, C); without `consistency`
  when `with_consistency` is False (one network pass fewer)."""
  e = maps.explain(tapped, x, class_ids, config, with_consistency=with_consistency)
  gradcam, guided = maps.displayed(e, tf.shape(x)[1:3])
  # The resize loses the static size: declare (B, H, W) like guided_backprop, for clients and TF Serving.
  gradcam = tf.ensure_shape(gradcam, [None, x.shape[1], x.shape[2]])
  outputs = {
    "probabilities": e.probabilities,
    "class_ids": e.class_ids,
    "gradcam": gradcam,
    "guided_backprop": guided,
  }
  if with_consistency:
    outputs["consistency"] = e.consistency
  return outputs


def predict_outputs(tapped, x):
  """Probabilities and top-1 classes only: one forward pass, no gradients."""
  logits = tapped.logits(x)
  return {"probabilities": tapped.probabilities(logits), "class_ids": maps.top1_classes(logits)}
