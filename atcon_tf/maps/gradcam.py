"""Grad-CAM (Selvaraju et al. 2017), batched and differentiable.

alpha_k = mean_{u,v} dz_c/dA_k[u,v];  cam = sum_k alpha_k A_k  (optionally ReLU'd).
The ATCON loss uses the map without the ReLU, as the authors' code does. The inner
tape's gradient is recorded by any outer tape, so the map is trainable.
"""

import collections

import tensorflow as tf

from atcon_tf.maps import cam_shortcut
from atcon_tf.maps import targets

GradCamResult = collections.namedtuple("GradCamResult", ["cam", "logits", "class_ids"])


def gradcam(tapped, x, class_ids=None, relu=True, target=None, shortcut=True):
  """Grad-CAM at the tapped layer's resolution: cam (B, h, w) in float32, logits, class_ids.

  `class_ids`: None / -1 = top-1; `target`: any `targets` callable instead (e.g. `SumOfLogits()`).
  Examples are independent in inference mode, so one gradient of the summed target
  logits gives every example's own dz_c/dA. For a GAP -> Dense head (`shortcut`, the default) the
  channel weights come from the Dense kernel (`cam_shortcut`): same values and gradients, no backward pass.
  """
  x = tf.convert_to_tensor(x)
  head = tapped.linear_head if shortcut else None
  with tf.GradientTape() as tape:
    features, logits = tapped.features_and_logits(x, tape=None if head else tape)
    if head is not None:
      tape.watch(logits)
    scores, class_ids = targets.as_target(class_ids, target)(logits)
    total = tf.reduce_sum(scores)
  if head is not None:
    weights = cam_shortcut.channel_weights(head, tape.gradient(total, logits), features)
  else:
    grads = tape.gradient(total, features)
    if grads is None:
      raise ValueError(
        f"The logits do not depend on layer {tapped.target_layer_path!r}: choose another target layer."
      )
    weights = tf.reduce_mean(cam_shortcut.full_precision(grads), axis=[1, 2])
  features = cam_shortcut.full_precision(features)
  cam = tf.einsum("bhwk,bk->bhw", features, tf.cast(weights, features.dtype))
  if relu:
    cam = tf.nn.relu(cam)
  return GradCamResult(cam, logits, class_ids)
