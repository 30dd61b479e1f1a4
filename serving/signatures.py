"""The TensorFlow graphs behind the serving signatures: preprocessing, decoding, maps.

Everything here is plain TF ops (tf.GradientTape + the guided ReLU's tf.custom_gradient trace
to standard ops), so the functions run inside a SavedModel signature and TF Serving can serve
them. Every output is per example along axis 0 (each map is normalised on its own), so
server-side batching never mixes examples.

Outputs of the explaining signatures (`explain`):
- `probabilities` (B, K): the classifier's own output activation (softmax if it had none).
- `class_ids` (B,) int32: the explained class, top-1 unless one was requested.
- `gradcam` (B, H, W): ReLU Grad-CAM at the target layer, resized to the input size
  (bilinear, align_corners) and min-max normalised per image.
- `guided_backprop` (B, H, W): sum over channels of |guided backprop|, min-max per image.
- `consistency` (B,): -ATCON cost (Pearson r in [-1, 1], higher = more consistent) of the
  explained class, with the authors' main variant (gb_mask, pearson) as in
  `atcon_tf.losses.consistency_per_image`, which uses the top-1 class.
"""
import numpy as np
import tensorflow as tf

from atcon_tf import layer_patching
from atcon_tf import model_import
from atcon_tf.losses import similarity
from atcon_tf.maps import processing
from atcon_tf.maps import targets
from atcon_tf.maps.gradcam import gradcam
from atcon_tf.maps.guided_relu import guided_patches

# Raw pixels in [0, 255] (uint8 or float) -> the tensor the classifier was trained on.
IMAGENET_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_TORCH_MEAN = (0.485, 0.456, 0.406)
IMAGENET_TORCH_STD = (0.229, 0.224, 0.225)

PREPROCESSING = {
    "none": "identity: the input already is what the model takes (float input)",
    "scale_0_1": "x / 255",
    "scale_-1_1": "x / 127.5 - 1",
    "imagenet_caffe": "RGB -> BGR, then minus the ImageNet BGR mean (Keras 'caffe' mode)",
    "imagenet_torch": "(x / 255 - ImageNet mean) / ImageNet std (torchvision)",
}

EXPLAIN_OUTPUTS = ("probabilities", "class_ids", "gradcam", "guided_backprop", "consistency")
PREDICT_OUTPUTS = ("probabilities", "class_ids")


def check_preprocessing(name, channels):
  if name not in PREPROCESSING:
    raise ValueError(f"Unknown preprocessing {name!r}; choose one of {sorted(PREPROCESSING)}.")
  if name.startswith("imagenet") and channels != 3:
    raise ValueError(f"Preprocessing {name!r} needs 3-channel (RGB) images, the model takes "
                     f"{channels} channel(s).")


def preprocess(images, name):
  """Raw pixels (any real or integer dtype) -> float32 model input, per the named spec."""
  x = tf.cast(images, tf.float32)
  if name == "none":
    return x
  if name == "scale_0_1":
    return x / 255.0
  if name == "scale_-1_1":
    return x / 127.5 - 1.0
  if name == "imagenet_caffe":
    return x[..., ::-1] - tf.constant(IMAGENET_CAFFE_MEAN_BGR, tf.float32)
  if name == "imagenet_torch":
    return ((x / 255.0 - tf.constant(IMAGENET_TORCH_MEAN, tf.float32)) /
            tf.constant(IMAGENET_TORCH_STD, tf.float32))
  raise ValueError(f"Unknown preprocessing {name!r}; choose one of {sorted(PREPROCESSING)}.")


def preprocess_numpy(images, name):
  """NumPy twin of `preprocess`, for clients and tests."""
  x = np.asarray(images, np.float32)
  if name == "none":
    return x
  if name == "scale_0_1":
    return x / np.float32(255.0)
  if name == "scale_-1_1":
    return x / np.float32(127.5) - np.float32(1.0)
  if name == "imagenet_caffe":
    return x[..., ::-1] - np.asarray(IMAGENET_CAFFE_MEAN_BGR, np.float32)
  if name == "imagenet_torch":
    return ((x / np.float32(255.0) - np.asarray(IMAGENET_TORCH_MEAN, np.float32)) /
            np.asarray(IMAGENET_TORCH_STD, np.float32))
  raise ValueError(f"Unknown preprocessing {name!r}; choose one of {sorted(PREPROCESSING)}.")


def decode_images(encoded, image_size, channels):
  """Encoded JPEG/PNG/GIF/BMP strings (B,) -> float32 raw pixels (B, H, W, C) in [0, 255].

  Each image is decoded to `channels` channels and resized to `image_size` (bilinear with
  antialiasing; an image that already has the size passes through unchanged). An
  undecodable string raises InvalidArgumentError.
  """
  height, width = image_size

  def one(data):
    image = tf.io.decode_image(data, channels=channels, dtype=tf.uint8, expand_animations=False)
    # At the same size this resize is the identity (sampling at the pixel centres).
    resized = tf.image.resize(tf.cast(image, tf.float32), [height, width], method="bilinear",
                              antialias=True)
    return tf.ensure_shape(resized, [height, width, channels])

  return tf.map_fn(one, encoded, fn_output_signature=tf.TensorSpec([height, width, channels],
                                                                     tf.float32))


def _gradcam_raw(tapped, x, class_ids=None):
  """Grad-CAM without ReLU; -1 entries of `class_ids` mean top-1. Returns (cam, logits, classes)."""
  return tuple(gradcam(tapped, x, class_ids, relu=False))


def check_class_ids(class_ids, batch_size, num_classes):
  """In-graph guards (Assert ops): one class id per image, each in [-1, num_classes)."""
  checks = [
      tf.debugging.assert_equal(tf.shape(class_ids)[0], batch_size,
                                message="class_ids must have one entry per image"),
      tf.debugging.assert_greater_equal(class_ids, -1,
                                        message="class_ids must be >= -1 (-1 = top-1)"),
      tf.debugging.assert_less(class_ids, num_classes,
                               message=f"class_ids must be < {num_classes}"),
  ]
  with tf.control_dependencies(checks):
    return tf.identity(class_ids)


def _recording(fn, events):
  def call(*args, **kwargs):
    events.append("relu")
    return fn(*args, **kwargs)
  return call


def _guided_pass(tapped, x, class_ids=None):
  """One guided forward pass giving guided backprop AND (when exact) Grad-CAM.

  The guided ReLU's forward equals ReLU, so the activations A and logits are those of the
  plain network. The gradient w.r.t. A only crosses the layers after the target layer:
  when no guided ReLU runs after the target layer's (last) call, d z_c / d A equals the
  plain Grad-CAM gradient, and one backward pass gives both maps. This is decided at
  trace time from the order in which the patched layers run (conservative: a guided ReLU
  that merely runs later on a parallel branch also disables the shortcut).
  Returns (cam or None, gb, logits, classes).
  """
  events = []
  layer = tapped.target_layer
  patches = [(obj, name, _recording(fn, events)) for obj, name, fn in guided_patches(tapped.model)]
  patches += model_import.output_activation_patches(tapped.model)[0]
  captured = []
  with tf.GradientTape() as tape:
    tape.watch(x)
    with layer_patching.patched_many(patches):
      original_call = layer.call  # Captured after the guided patches (the layer may be a ReLU).

      def call(*args, **kwargs):
        outputs = original_call(*args, **kwargs)
        tape.watch(outputs)
        captured.append(outputs)
        events.append("target")
        return outputs

      with layer_patching.patched(layer, "call", call):
        logits = tapped.model(x, training=False)
    classes = targets.resolve_classes(logits, class_ids)
    target = tf.reduce_sum(targets.target_logits(logits, classes))
  exact = bool(captured) and "relu" not in events[len(events) - events[::-1].index("target"):]
  if not exact:
    return None, tape.gradient(target, x), logits, classes
  grads, gb = tape.gradient(target, [captured[-1], x])
  if grads is None:
    raise ValueError(f"The logits do not depend on layer {tapped.target_layer_path!r}: "
                     "choose another target layer.")
  cam = tf.einsum("bhwk,bk->bhw", captured[-1], tf.reduce_mean(grads, axis=[1, 2]))
  return cam, gb, logits, classes


def explain(tapped, x, class_ids=None, mask_intensity=8.0):
  """All outputs of the explaining signatures for a preprocessed batch `x` (B, H, W, C).

  Passes: guided backprop of x (which also gives the logits, the class and, for the usual
  conv -> GAP -> dense heads, the Grad-CAM of x: see `_guided_pass`), else a separate
  Grad-CAM pass; then Grad-CAM of the GB-masked x for the ATCON cost. Same math as
  `atcon_tf.maps.gradcam`, `guided_backprop` and `losses.consistency_per_image`.
  """
  size = tf.shape(x)[1:3]
  cam, gb, logits, classes = _guided_pass(tapped, x, class_ids)
  if cam is None:
    cam, logits, classes = _gradcam_raw(tapped, x, classes)
  saliency = processing.channel_magnitude(gb)
  mask, _ = processing.soft_mask(saliency, mask_intensity)
  masked_cam, _, _ = _gradcam_raw(tapped, x * mask[..., None], classes)
  cost = similarity.pearson_cost(cam, masked_cam)
  gradcam_map = processing.normalize_01(processing.resize_align_corners(tf.nn.relu(cam), size))
  return {
      "probabilities": tapped.probabilities(logits),
      "class_ids": classes,
      "gradcam": gradcam_map,
      "guided_backprop": processing.normalize_01(saliency),
      "consistency": -cost,
  }


def predict(tapped, x):
  """Probabilities and top-1 classes only: one forward pass, no gradients."""
  logits = tapped.logits(x)
  return {"probabilities": tapped.probabilities(logits),
          "class_ids": targets.top1_classes(logits)}
