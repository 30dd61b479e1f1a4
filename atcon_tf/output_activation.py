"""Find a classifier's logits, however its final softmax / sigmoid / log-softmax is written.

Maps and the ATCON loss are defined on logits, and serving applies the probability head once. A
final activation can be spelled many ways (`Dense(activation="softmax")`, `activation=tf.nn.softmax`
or `keras.ops.softmax`, a `Softmax`/`Activation`/`Lambda` layer, any of them followed by `Dropout`),
so it is found by what it does: the model runs once on a probe batch; if its outputs look like
probabilities, each trailing layer is bypassed in turn (its activation made linear, or its call made
the identity) until softmax/sigmoid/log-softmax of the bypassed output reproduces the model's output.
When nothing does, `LogitsError` says so and asks for `logits_layer=`.
"""

from __future__ import annotations

import dataclasses
import logging

import keras
import numpy as np
import tensorflow as tf

from atcon_tf import layer_graph
from atcon_tf import layer_patching

log = logging.getLogger(__name__)

_PROBE_BATCH, _PROBE_SIZE = 4, 32
_HEADS = {
  "softmax": lambda z: tf.nn.softmax(z, axis=-1),
  "log_softmax": lambda z: tf.nn.log_softmax(z, axis=-1),
  "sigmoid": tf.sigmoid,
}


class LogitsError(ValueError):
  """The model's outputs look like probabilities but its logits could not be recovered."""


@dataclasses.dataclass(frozen=True)
class LogitsSource:
  """How the logits are read: `patches` that bypass the final activation (possibly none), the
  activation they bypass (`softmax`, `sigmoid`, `log_softmax` or None) and where it was found."""

  patches: tuple = ()
  activation: str | None = None
  where: str | None = None


def _identity_call(inputs, *args, **kwargs):
  return inputs


def _candidates(model):
  """`(description, patches)` that each bypass one trailing layer, last layer first."""
  for layer in layer_graph.trailing_layers(model):
    if isinstance(layer, keras.Model):
      continue  # Its own last layers follow in the chain.
    activation = getattr(layer, "activation", None)
    if callable(activation) and activation is not keras.activations.linear:
      yield f"activation of layer {layer.name!r}", ((layer, "activation", keras.activations.linear),)
    if layer.weights:
      return  # A layer with weights computes the logits: nothing before it can be the output head.
    yield f"layer {layer.name!r} ({type(layer).__name__})", ((layer, "call", _identity_call),)


def _probe(model):
  shape = list(model.inputs[0].shape) if getattr(model, "inputs", None) else None
  if shape is None:
    return None
  shape = [_PROBE_BATCH] + [_PROBE_SIZE if d is None else d for d in shape[1:]]
  dtype = tf.as_dtype(model.inputs[0].dtype)
  if dtype.is_integer:  # raw pixels (a model that preprocesses inside)
    return tf.cast(tf.random.stateless_uniform(shape, seed=[17, 4], maxval=256, dtype=tf.int32), dtype)
  return tf.cast(tf.random.stateless_normal(shape, seed=[17, 4], stddev=1.0), dtype)


def _run(model, x):
  y = model(x, training=False)
  if isinstance(y, (list, tuple, dict)):
    return None
  return np.asarray(tf.cast(y, tf.float32))


def _looks_like(y):
  """Which heads `y` could be the output of."""
  kinds = []
  if y.ndim != 2:
    return kinds
  in_unit = bool(np.all(y >= -1e-6) and np.all(y <= 1 + 1e-6))
  if in_unit and y.shape[-1] > 1 and np.allclose(y.sum(-1), 1.0, atol=1e-3):
    kinds.append("softmax")
  if y.shape[-1] > 1 and np.all(y <= 1e-6) and np.allclose(np.log(np.exp(y).sum(-1)), 0.0, atol=1e-3):
    kinds.append("log_softmax")
  if in_unit:
    kinds.append("sigmoid")
  return kinds


def detect(model) -> LogitsSource:
  """The `LogitsSource` of `model` (see the module doc)."""
  with tf.init_scope():  # Eager even when called while a tf.function traces.
    x = _probe(model)
    y = None if x is None else _run(model, x)
    kinds = [] if y is None else _looks_like(y)
    if not kinds:
      return LogitsSource()
    for where, patches in _candidates(model):
      with layer_patching.patched_many(patches):
        z = _run(model, x)
      if z is None or z.shape != y.shape or np.allclose(z, y, atol=1e-6):
        continue
      for kind in kinds:
        tolerance = 1e-3 if model.dtype_policy.compute_dtype != "float32" else 1e-5
        if np.allclose(np.asarray(_HEADS[kind](z)), y, atol=tolerance, rtol=1e-4):
          return LogitsSource(patches, kind, where)
  if kinds == ["sigmoid"]:  # Outputs in [0, 1] that no bypass explains: logits can be there too.
    log.warning(
      "Model %r outputs values in [0, 1] on a probe batch but no final sigmoid was found: its outputs are "
      "taken as logits. If they are probabilities, pass logits_layer='NAME'.",
      model.name,
    )
    return LogitsSource()
  raise LogitsError(
    f"Model {model.name!r} outputs what looks like {' or '.join(kinds)} probabilities (values in [0, 1]"
    f"{', rows summing to 1' if 'softmax' in kinds else ''}), but bypassing its last layers did not give "
    "logits that reproduce them. Attention maps and the ATCON loss need logits: pass logits_layer='NAME' "
    "(the layer whose output is the logits), or give the model a linear last layer."
  )
