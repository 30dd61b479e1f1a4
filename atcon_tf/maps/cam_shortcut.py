"""Grad-CAM without a backward pass through the network, for heads that are GAP -> Dense.

With logits z = W^T GAP(A) + b, the gradient of a target s(z) with respect to A is the same at every
position: ds/dA[u, v, k] = (ds/dz @ W^T)[k] / (h w). Grad-CAM's channel weights are its spatial mean, so
alpha = (ds/dz @ W^T) / (h w): the same value, and the same function of every weight, as the autodiff
Grad-CAM, with no backward pass from the logits to A (ds/dz is the target's own gradient, e.g. one-hot).
Used wherever the head allows it (`linear_head`), by Grad-CAM, the fused guided pass and the ATCON loss.
"""

import keras
import tensorflow as tf

from atcon_tf import layer_graph

# Layers that are the identity at inference (maps are computed in inference mode).
_IDENTITY_AT_INFERENCE = (
  keras.layers.Dropout,
  keras.layers.GaussianNoise,
  keras.layers.GaussianDropout,
  keras.layers.AlphaDropout,
  keras.layers.ActivityRegularization,
  keras.layers.Identity,
)


def _next(chain, skip):
  for layer in chain:
    if not skip(layer):
      return layer
  return None


def linear_head(tapped):
  """The Dense layer when the logits are Dense(GAP(target layer output)), else None.

  Read from the model's graph: from the output back, bypassed output activations and inference-time
  identities (Dropout) are skipped; then a Dense whose activation is linear (or bypassed), a channels-last
  GlobalAveragePooling2D, and the target layer itself must follow, each the single input of the next.
  """
  if tapped.logits_layer is not None:
    return None
  bypassed = {id(layer) for layer, name, _ in tapped.logit_patches if name == "call"}
  linearized = {id(layer) for layer, name, _ in tapped.logit_patches if name == "activation"}
  chain = iter(
    [
      layer
      for layer in layer_graph.trailing_layers(tapped.model, limit=16)
      if not isinstance(layer, keras.Model)
    ]
  )
  dense = _next(chain, lambda layer: id(layer) in bypassed or isinstance(layer, _IDENTITY_AT_INFERENCE))
  if not isinstance(dense, keras.layers.Dense):
    return None
  if dense.activation is not keras.activations.linear and id(dense) not in linearized:
    return None
  pooling = _next(chain, lambda layer: isinstance(layer, _IDENTITY_AT_INFERENCE))
  if not isinstance(pooling, keras.layers.GlobalAveragePooling2D):
    return None
  if pooling.keepdims or pooling.data_format != "channels_last":
    return None
  return dense if _next(chain, lambda layer: False) is tapped.target_layer else None


def full_precision(t):
  """`t` in float32 when it is float16 / bfloat16 (mixed precision); float32 / float64 unchanged."""
  return tf.cast(t, tf.float32) if t.dtype in (tf.float16, tf.bfloat16) else t


def channel_weights(head, logit_grads, features):
  """Grad-CAM's alpha (B, k), at least float32, from d target / d logits (B, classes) and the Dense kernel."""
  logit_grads = full_precision(logit_grads)
  kernel = tf.cast(head.kernel, logit_grads.dtype)
  cells = tf.cast(tf.shape(features)[1] * tf.shape(features)[2], logit_grads.dtype)
  return tf.matmul(logit_grads, kernel, transpose_b=True) / cells
