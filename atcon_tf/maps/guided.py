"""Which layers of a model become guided for guided backprop, and a report of it.

Every elementwise nonlinearity the model exposes as a layer is patched (weights shared): ReLU-family
layers and `activation=` attributes with the exact ReLU rule, every other elementwise activation with
the positive-gradient gating of `guided_relu.guided_elementwise`. What cannot be patched is reported,
never skipped silently: non-elementwise activations (a softmax inside the network), `Lambda` layers
(their function cannot be inspected) and nonlinear Keras ops used directly in a functional graph.
"""

import collections
import contextlib
import dataclasses
import logging

import keras
import tensorflow as tf

from atcon_tf import layer_graph
from atcon_tf import layer_patching
from atcon_tf.maps.guided_relu import guided_elementwise
from atcon_tf.maps.guided_relu import guided_relu

log = logging.getLogger(__name__)

_NOT_ELEMENTWISE = ("softmax", "log_softmax", "logsoftmax")
# Keras ops (not layers) that are nonlinear: used directly in a functional graph, they stay plain.
_NONLINEAR_OPS = {
  "Relu", "Relu6", "Sigmoid", "Tanh", "Silu", "Swish", "Gelu", "Elu", "Selu", "Softplus", "Softsign",
  "HardSigmoid", "HardSilu", "HardSwish", "LeakyRelu", "Mish", "Exp", "Log", "Sqrt", "Square", "Abs",
  "Maximum", "Minimum", "Softmax", "LogSoftmax",
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class GuidedReport:
  """`guided`: (layer path, activation) patched; `unguided`: (layer path, why it stays plain)."""

  guided: tuple = ()
  unguided: tuple = ()

  def counts(self):
    """Activation name -> number of guided layers."""
    return dict(collections.Counter(name for _, name in self.guided))

  def summary(self):
    guided = ", ".join(f"{name} x{n}" for name, n in sorted(self.counts().items())) or "none"
    text = f"guided backprop: {len(self.guided)} layers guided ({guided})"
    if self.unguided:
      text += f"; {len(self.unguided)} left plain: " + "; ".join(f"{p} ({why})" for p, why in self.unguided)
    return text

  def warn_if_incomplete(self, model_name):
    if self.unguided or not self.guided:
      log.warning("Model %r: %s.", model_name, self.summary())


def _name(fn):
  return getattr(fn, "__name__", type(fn).__name__)


def _relu_cap(fn):
  """The cap of a ReLU activation function (None, or 6.0), or False if it is not a plain ReLU."""
  if fn is keras.activations.relu or fn is tf.nn.relu:
    return None
  if fn is keras.activations.relu6 or fn is tf.nn.relu6:
    return 6.0
  return False


def _relu_layer_call(layer):
  max_value, threshold = layer.max_value, float(layer.threshold)
  return lambda inputs, *args, **kwargs: guided_relu(inputs, max_value=max_value, threshold=threshold)


_ACTIVATION_LAYERS = {
  keras.layers.LeakyReLU: "leaky_relu",
  keras.layers.ELU: "elu",
  keras.layers.PReLU: "prelu",
}


def plan(model, exclude=()):
  """(patches, GuidedReport) for `model`; `exclude`: `(layer, attribute)` pairs left alone (the
  bypassed output activation)."""
  skip = {(id(layer), name) for layer, name in exclude}
  patches, guided, unguided = [], [], []
  for path, layer in layer_patching.iter_layer_paths(model):
    if isinstance(layer, keras.layers.ReLU) and (id(layer), "call") not in skip:
      if layer.negative_slope:
        patches.append((layer, "call", guided_elementwise(layer.call)))
        guided.append((path, "leaky_relu"))
      else:
        patches.append((layer, "call", _relu_layer_call(layer)))
        guided.append((path, "relu6" if layer.max_value == 6 else "relu"))
      continue
    if isinstance(layer, tuple(_ACTIVATION_LAYERS)) and (id(layer), "call") not in skip:
      patches.append((layer, "call", guided_elementwise(layer.call, has_weights=bool(layer.weights))))
      guided.append((path, _ACTIVATION_LAYERS[type(layer)]))
      continue
    if isinstance(layer, keras.layers.Softmax) and (id(layer), "call") not in skip:
      unguided.append((path, "softmax inside the network: not elementwise"))
      continue
    if isinstance(layer, keras.layers.Lambda) and (id(layer), "call") not in skip:
      unguided.append((path, "Lambda layer: its function cannot be inspected"))
      continue
    activation = getattr(layer, "activation", None)
    if (
      not callable(activation) or activation is keras.activations.linear or (id(layer), "activation") in skip
    ):
      continue
    name = _name(activation)
    if name in _NOT_ELEMENTWISE:
      unguided.append((path, f"{name} activation: not elementwise"))
      continue
    cap = _relu_cap(activation)
    if cap is False:
      patches.append((layer, "activation", guided_elementwise(activation)))
    else:
      patches.append((layer, "activation", lambda x, cap=cap: guided_relu(x, max_value=cap)))
    guided.append((path, name))
  for operation in layer_graph.operations(model):
    if not isinstance(operation, keras.layers.Layer) and type(operation).__name__ in _NONLINEAR_OPS:
      unguided.append((operation.name, f"Keras op {type(operation).__name__} used outside a layer"))
  return patches, GuidedReport(tuple(guided), tuple(unguided))


def guided_patches(model, exclude=()):
  """The `(layer, attribute, replacement)` patches that make `model` guided."""
  return plan(model, exclude)[0]


@contextlib.contextmanager
def guided_relus(model, exclude=()):
  """Inside this context every elementwise activation of `model` (nested models included) is guided."""
  with layer_patching.patched_many(guided_patches(model, exclude)):
    yield
