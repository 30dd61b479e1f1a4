"""Guided ReLU (Springenberg et al. 2015) that shares the model's weights.

Backward pass: `g_in = g_out * 1[x > 0] * 1[g_out > 0]` (and `1[x < max]` for capped
ReLUs such as ReLU6). The gradient function uses plain TF ops, so an outer
`tf.GradientTape` differentiates through it: guided backprop stays trainable
(second order), as the ATCON loss needs.
"""

import contextlib

import keras
import tensorflow as tf

from atcon_tf import layer_patching


def guided_relu(x, max_value=None, threshold=0.0):
  """ReLU forward, guided-backprop backward."""

  @tf.custom_gradient
  def _guided(inputs):
    if max_value is None:
      outputs = tf.where(inputs > threshold, inputs, tf.zeros_like(inputs))
    else:
      outputs = tf.where(
        inputs > threshold, tf.minimum(inputs, tf.cast(max_value, inputs.dtype)), tf.zeros_like(inputs)
      )

    def grad(upstream):
      gate = tf.logical_and(inputs > threshold, upstream > 0)
      if max_value is not None:
        gate = tf.logical_and(gate, inputs < max_value)
      return upstream * tf.cast(gate, upstream.dtype)

    return outputs, grad

  return _guided(tf.convert_to_tensor(x))


def _relu_like(fn):
  """Returns the cap of a ReLU activation function (None, or 6.0), or False if not a ReLU."""
  if fn is keras.activations.relu or fn is tf.nn.relu:
    return None
  if fn is keras.activations.relu6 or fn is tf.nn.relu6:
    return 6.0
  return False


def _guided_relu_layer_call(layer):
  if layer.negative_slope:
    return None  # A leaky ReLU is not a ReLU gate: leave it as it is.
  max_value = layer.max_value
  threshold = float(layer.threshold)

  def call(inputs):
    return guided_relu(inputs, max_value=max_value, threshold=threshold)

  return call


def guided_patches(model):
  """Lists the `(layer, attribute, replacement)` patches that make `model` guided."""
  patches = []
  for layer in layer_patching.iter_layers(model):
    if isinstance(layer, keras.layers.ReLU):
      call = _guided_relu_layer_call(layer)
      if call is not None:
        patches.append((layer, "call", call))
      continue
    activation = getattr(layer, "activation", None)
    if activation is None or not callable(activation):
      continue
    cap = _relu_like(activation)
    if cap is False:
      continue
    patches.append((layer, "activation", lambda x, cap=cap: guided_relu(x, max_value=cap)))
  return patches


@contextlib.contextmanager
def guided_relus(model):
  """Inside this context every ReLU of `model` (nested models included) is guided."""
  with layer_patching.patched_many(guided_patches(model)):
    yield
