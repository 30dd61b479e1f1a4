"""One forward pass of x for the logits, the class, guided backprop and Grad-CAM (the fused pass).

Guided activations change only the backward pass, so a forward through them gives the plain network's
activations A and logits. One tape over that forward then gives:
- guided backprop G = dz_c/dx, taken inside `guided_backward()` (guided rules);
- Grad-CAM of x: from the Dense kernel when the head is GAP -> Dense (`cam_shortcut`, no backward pass),
  else dz_c/dA taken *outside* `guided_backward()`, where the patched activations have their true
  derivative, so it equals the plain Grad-CAM whatever runs after the target layer.
Used by `explain` (serving, evaluation, pictures) and by the ATCON loss, so training and serving share it.
"""

import collections
import contextlib

import tensorflow as tf

from atcon_tf import layer_patching
from atcon_tf.maps import cam_shortcut
from atcon_tf.maps.guided_relu import guided_backward

GuidedPass = collections.namedtuple("GuidedPass", ["cam", "guided_backprop", "logits", "class_ids"])


def guided_pass(tapped, x, target, with_cam=True):
  """`GuidedPass` of a batch: cam (B, h, w) float32 without ReLU (None unless `with_cam`), guided backprop
  (B, H, W, C) of the target score, logits and the target's classes."""
  x = tf.convert_to_tensor(x)
  head = tapped.linear_head if with_cam else None
  cam_by_gradient = with_cam and head is None
  with tf.GradientTape(persistent=cam_by_gradient) as tape:
    tape.watch(x)
    with contextlib.ExitStack() as stack:
      stack.enter_context(layer_patching.patched_many(tapped.guided_patches))
      # Tapped after the guided patches: the target layer may itself be a patched activation.
      captured = stack.enter_context(tapped._capture(tapped.target_layer, tape if cam_by_gradient else None))
      logits = tapped.forward(x)
    scores, classes = target(logits)
    total = tf.reduce_sum(scores)
  cam = None
  if with_cam and not captured:
    raise ValueError(f"Target layer {tapped.target_layer_path!r} was not called in the forward pass.")
  if cam_by_gradient:
    grads = tape.gradient(total, captured[-1])  # plain rules: outside guided_backward()
    if grads is None:
      raise ValueError(
        f"The logits do not depend on layer {tapped.target_layer_path!r}: choose another target layer."
      )
    weights = tf.reduce_mean(cam_shortcut.full_precision(grads), axis=[1, 2])
  with guided_backward():
    if head is not None:
      logit_grads, gb = tape.gradient(total, [logits, x])
      weights = cam_shortcut.channel_weights(head, logit_grads, captured[-1])
    else:
      gb = tape.gradient(total, x)
  if with_cam:
    features = cam_shortcut.full_precision(captured[-1])
    cam = tf.einsum("bhwk,bk->bhw", features, tf.cast(weights, features.dtype))
  return GuidedPass(cam, gb, logits, classes)
