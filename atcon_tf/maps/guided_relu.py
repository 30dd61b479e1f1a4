"""Guided backpropagation rules (Springenberg et al. 2015) that share the model's weights.

ReLU (and capped ReLUs such as ReLU6): `g_in = g_out * 1[x > 0] * 1[g_out > 0]` (and `1[x < max]`),
the original rule.

Any other elementwise activation f (swish/silu, gelu, hard_swish, hard_sigmoid, elu, selu, leaky
ReLU, PReLU, sigmoid and tanh gates, softplus, mish, ...): `g_in = relu(g_out) * relu(f'(x))`: the same
positive-gradient gating, applied to the activation's own local slope. For a ReLU this *is* the rule
above (f' = 1[x > 0]); for a smooth activation it passes only positive upstream signal through the
part of the activation that increases with its input, so guided backprop stays a map of positive
evidence, as on ReLU networks, instead of silently becoming the plain input gradient.

The guided rules apply only to gradients taken inside `guided_backward()` (what `maps.guided_backprop`
does); any other gradient through a patched activation is its true derivative. This matters for the
second order: the ATCON loss differentiates guided backprop G with respect to the weights, and on a smooth
network G depends on the forward pre-activations h (through f'(h)), whose own derivative must be the
network's real one. Both gradient functions use plain TF ops (f' is taken with a tape inside the gradient
function), so an outer `tf.GradientTape` differentiates through them: guided backprop stays trainable.
"""

import contextlib
import threading

import tensorflow as tf

_STATE = threading.local()


@contextlib.contextmanager
def guided_backward():
  """Gradients computed (or, under `tf.function`, traced) inside use the guided rules."""
  previous = getattr(_STATE, "active", False)
  _STATE.active = True
  try:
    yield
  finally:
    _STATE.active = previous


def _guiding():
  return getattr(_STATE, "active", False)


def guided_relu(x, max_value=None, threshold=0.0):
  """ReLU forward, guided-backprop backward."""

  @tf.custom_gradient
  def _guided(inputs):
    if threshold == 0 and max_value in (None, 6.0):  # the native kernels (fused by oneDNN / cuDNN)
      outputs = tf.nn.relu(inputs) if max_value is None else tf.nn.relu6(inputs)
    elif max_value is None:
      outputs = tf.where(inputs > threshold, inputs, tf.zeros_like(inputs))
    else:
      outputs = tf.where(
        inputs > threshold, tf.minimum(inputs, tf.cast(max_value, inputs.dtype)), tf.zeros_like(inputs)
      )

    def grad(upstream):
      gate = inputs > threshold
      if _guiding():
        gate = tf.logical_and(gate, upstream > 0)
      if max_value is not None:
        gate = tf.logical_and(gate, inputs < max_value)
      return upstream * tf.cast(gate, upstream.dtype)

    return outputs, grad

  return _guided(tf.convert_to_tensor(x))


def _slope(fn, inputs):
  """f'(x) of an elementwise `fn`, as a differentiable tensor."""
  with tf.GradientTape() as tape:
    tape.watch(inputs)
    outputs = fn(inputs)
  return outputs, tape.gradient(outputs, inputs)


def _input_gradient(upstream, slope):
  return tf.nn.relu(upstream) * tf.nn.relu(slope) if _guiding() else upstream * slope


def guided_elementwise(fn, has_weights=False):
  """`fn` (an elementwise activation or an activation layer's call) with the guided backward pass.

  `has_weights`: `fn` reads trainable variables (PReLU's slopes); they get their plain gradient.
  """

  def apply(x, *args, **kwargs):
    x = tf.convert_to_tensor(x)

    if has_weights:

      @tf.custom_gradient
      def _guided(inputs):
        def grad(upstream, variables=None):
          with tf.GradientTape() as tape:
            outputs, slope = _slope(fn, inputs)
          variable_grads = tape.gradient(outputs, variables or [], output_gradients=upstream)
          return _input_gradient(upstream, slope), variable_grads

        return fn(inputs), grad

    else:

      @tf.custom_gradient
      def _guided(inputs):
        def grad(upstream):
          _, slope = _slope(fn, inputs)
          return _input_gradient(upstream, slope)

        return fn(inputs), grad

    return _guided(x)

  return apply
