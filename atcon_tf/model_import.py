"""Bring an existing Keras classifier into atcon_tf: load its file and find its Grad-CAM layer."""

from __future__ import annotations

import os

import keras


class TargetLayerError(ValueError):
  """The model has no layer that Grad-CAM can use."""


def load_classifier(model_or_path):
  """Returns a Keras model from a model object or a `.keras` / `.h5` path."""
  if isinstance(model_or_path, keras.Model):
    return model_or_path
  if not isinstance(model_or_path, (str, os.PathLike)):
    raise TypeError(
      f"Expected a keras.Model or a path to a .keras/.h5 file, got {type(model_or_path).__name__}."
    )
  path = os.fspath(model_or_path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"No model file at {path!r}.")
  if not path.endswith((".keras", ".h5", ".hdf5")):
    raise ValueError(f"Unsupported model file {path!r}: expected a .keras or .h5 file.")
  return keras.saving.load_model(path, compile=False)


def _output_shape(layer):
  try:
    return tuple(layer.output.shape)
  except (AttributeError, ValueError):
    return None


def _layer_paths(model, prefix=""):
  """Yields `(path, layer)` in order; nested layers get `outer/inner` paths."""
  for layer in model.layers:
    path = prefix + layer.name
    yield path, layer
    if isinstance(layer, keras.Model):
      yield from _layer_paths(layer, path + "/")


def is_spatial(shape):
  """True for a 4-D (batch, h, w, channels) output with more than one spatial cell."""
  if shape is None or len(shape) != 4:
    return False
  h, w = shape[1], shape[2]
  if h is None or w is None:
    return True  # Unknown spatial size (variable input size): usable.
  return h * w > 1


def find_target_layer(model):
  """Path of the last layer with a 4-D output of spatial size > 1 (nested models searched)."""
  found = None
  for path, layer in _layer_paths(model):
    if isinstance(layer, keras.Model):
      continue  # Prefer the nested model's own last spatial layer.
    if is_spatial(_output_shape(layer)):
      found = path
  if found is None:
    raise TargetLayerError(
      f"Model {model.name!r} has no layer usable for Grad-CAM: looked for the last layer "
      "(nested models included) whose output is 4-D (batch, height, width, channels) with "
      "height*width > 1. Pass target_layer= explicitly, or use a larger input size if the "
      "last convolutional block shrinks to 1x1."
    )
  return found


def get_layer_by_path(model, path):
  """Resolves `outer/inner/layer` paths (as returned by `find_target_layer`)."""
  layer = model
  for name in path.split("/"):
    if not isinstance(layer, keras.Model):
      raise TargetLayerError(f"{path!r}: {layer.name!r} is not a model, cannot look inside it.")
    try:
      layer = layer.get_layer(name)
    except ValueError:
      names = [p for p, _ in _layer_paths(model)]
      raise TargetLayerError(
        f"No layer {path!r} in model {model.name!r}. Known layers: {', '.join(names[-12:])} "
        f"(last 12 of {len(names)})."
      ) from None
  return layer


def output_activation_patches(model):
  """Patches that turn a final softmax/sigmoid into the identity, and that activation's name.

  Attention maps and the ATCON loss are defined on logits; a model that ends in a softmax
  is still usable, its last activation is bypassed while maps are computed.
  """
  layer = model.layers[-1] if getattr(model, "layers", None) else None
  while isinstance(layer, keras.Model) and layer.layers:
    layer = layer.layers[-1]
  if layer is None:
    return [], None
  if isinstance(layer, keras.layers.Softmax):
    return [(layer, "call", lambda inputs, mask=None: inputs)], "softmax"
  activation = getattr(layer, "activation", None)
  for name in ("softmax", "sigmoid"):
    if activation is getattr(keras.activations, name):
      return [(layer, "activation", keras.activations.linear)], name
  return [], None
