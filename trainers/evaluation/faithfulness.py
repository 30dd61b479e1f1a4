"""Deletion / insertion AUC of each model's Grad-CAM and guided-backprop maps (`atcon_tf.metrics.faithfulness`).

Why here: the metric needs the model (class scores of perturbed inputs), so it runs inside the forward pass
over the test images (`outputs.model_outputs`), on the first `images` of them; the statistics then treat the
four values per image like any other per-image metric (bootstrap CIs, paired sign-flip tests).
Score: the probability (softmax; sigmoid for multi-label) of the image's top-1 class on the clean image.
Maps: Grad-CAM of that class resized to the input (bilinear, align corners), guided backprop as it is.
"""

from __future__ import annotations

import numpy as np

KEYS = ("deletion_gradcam", "insertion_gradcam", "deletion_guided_backprop", "insertion_guided_backprop")


def enabled(options) -> bool:
  return options is not None and options.faithfulness_steps > 0 and options.faithfulness_images > 0


def score_function(tapped, size):
  """A graph function (inputs, class ids) -> the probability of each image's class."""
  import tensorflow as tf

  spec = tf.TensorSpec([None, size[0], size[1], 3], tf.float32)

  @tf.function(input_signature=[spec, tf.TensorSpec([None], tf.int32)])
  def scores(x, class_ids):
    probs = tapped.probabilities(tapped.logits(x))
    return tf.gather(probs, class_ids, axis=1, batch_dims=1)

  return scores


def batch_values(scores, x, cam, guided_backprop, classes, options) -> dict:
  """{key: (B,) AUC} for one batch of preprocessed inputs `x` with maps of the classes `classes`."""
  import tensorflow as tf

  from atcon_tf.maps import processing
  from atcon_tf.metrics import faithfulness

  x = np.asarray(x, np.float32)
  ids = tf.constant(np.asarray(classes, np.int32))
  score_fn = lambda images: scores(tf.constant(images), ids).numpy()  # noqa: E731
  cam = processing.resize_align_corners(tf.constant(cam, tf.float32), x.shape[1:3]).numpy()
  values = {}
  for name, saliency in (("gradcam", cam), ("guided_backprop", np.asarray(guided_backprop))):
    auc = faithfulness.deletion_insertion_auc(
      score_fn, x, saliency, steps=options.faithfulness_steps, baseline=options.faithfulness_baseline
    )
    values[f"deletion_{name}"], values[f"insertion_{name}"] = auc["deletion"], auc["insertion"]
  return values


def settings(options, out: dict) -> dict | None:
  """What the results record about the metric, so a table can say it (None when it did not run)."""
  from atcon_tf.metrics import faithfulness

  if KEYS[0] not in out:
    return None
  return {
    "images": int(np.isfinite(out[KEYS[0]]).sum()),
    "steps": options.faithfulness_steps,
    "baseline": options.faithfulness_baseline,
    "blur_sigma": f"{faithfulness.DEFAULT_BLUR_SIGMA:g} x image size",
    "max_images": options.faithfulness_images,
    "score": "probability of the top-1 class",
  }
