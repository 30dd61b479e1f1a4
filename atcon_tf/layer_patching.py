"""Temporary, weight-sharing changes to Keras layers.

Attention maps need variants of the *same* network (guided ReLUs, logits instead of
probabilities, a tap on one layer's output). Cloning would copy the weights, so we
patch attributes of the live layers inside a context and restore them on exit.
Under `tf.function` the patch is read at trace time, so each variant traces its own graph.
"""

import contextlib

import keras


def iter_layers(model):
  """Yields every layer of `model`, looking into nested models, each layer once."""
  seen = set()
  stack = [model]
  while stack:
    layer = stack.pop(0)
    children = getattr(layer, "layers", None)
    if layer is not model and id(layer) not in seen:
      seen.add(id(layer))
      yield layer
    if children is not None and isinstance(layer, keras.layers.Layer):
      stack[0:0] = list(children)


def iter_layer_paths(model, prefix=""):
  """Yields `(path, layer)` for every layer of `model` once, nested layers as `outer/inner`."""
  seen = set()
  stack = [(prefix, model)]
  while stack:
    path, layer = stack.pop(0)
    if layer is not model:
      if id(layer) in seen:
        continue
      seen.add(id(layer))
      yield path, layer
    children = getattr(layer, "layers", None)
    if children is not None and isinstance(layer, keras.layers.Layer):
      base = "" if layer is model else path + "/"
      stack[0:0] = [(base + child.name, child) for child in children]


@contextlib.contextmanager
def patched(obj, name, value):
  """Sets `obj.name = value` for the duration of the context (instance attribute)."""
  had_own = name in obj.__dict__
  old = obj.__dict__.get(name)
  object.__setattr__(obj, name, value)
  try:
    yield
  finally:
    if had_own:
      object.__setattr__(obj, name, old)
    else:
      object.__delattr__(obj, name)


@contextlib.contextmanager
def patched_many(patches):
  """Applies a list of `(obj, name, value)` patches together."""
  with contextlib.ExitStack() as stack:
    for obj, name, value in patches:
      stack.enter_context(patched(obj, name, value))
    yield
