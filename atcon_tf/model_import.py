"""Bring an existing Keras classifier into atcon_tf: load its file and choose its Grad-CAM layer.

The automatic choice is what an expert would pick: the output of the last convolutional block, i.e.
the last layer that every path from the input to the output crosses (a residual Add, an Inception
Concatenate, the last conv/activation before global pooling), never a pooling, padding, dropout or
branch-internal layer. A map smaller than 3x3 is accepted with a warning (a larger input helps).
"""

from __future__ import annotations

import logging
import os

import keras

from atcon_tf import layer_graph

log = logging.getLogger(__name__)

# Layers that reshape or regularise a map without computing new evidence: never a Grad-CAM layer.
_NOT_A_MAP_LAYER = (
  keras.layers.InputLayer,
  keras.layers.MaxPooling2D,
  keras.layers.AveragePooling2D,
  keras.layers.ZeroPadding2D,
  keras.layers.Cropping2D,
  keras.layers.Dropout,  # SpatialDropout2D derives from it
  keras.layers.GaussianNoise,
  keras.layers.GaussianDropout,
  keras.layers.AlphaDropout,
  keras.layers.ActivityRegularization,
)
SMALL_MAP = 3  # a chosen map below 3x3 gets a warning


class TargetLayerError(ValueError):
  """The model has no layer that Grad-CAM can use, or the given one cannot be used."""


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


def output_shape(layer):
  """The layer's (first) output shape, or None when Keras cannot tell (subclassed models)."""
  try:
    output = layer.output
  except (AttributeError, ValueError):
    return None
  if isinstance(output, (list, tuple)):
    output = output[0] if output else None
  return None if output is None else tuple(output.shape)


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


def _is_small(shape):
  return shape[1] is not None and shape[2] is not None and min(shape[1], shape[2]) < SMALL_MAP


def find_target_layer(model):
  """Path of the last bottleneck layer (see the module doc) with a 4-D output of spatial size > 1."""
  found = None
  for path, layer in layer_graph.bottleneck_layers(model):
    if isinstance(layer, keras.Model) or isinstance(layer, _NOT_A_MAP_LAYER):
      continue  # A nested model contributes its own layers.
    if is_spatial(output_shape(layer)):
      found = path, layer
  if found is None:
    raise TargetLayerError(
      f"Model {model.name!r} has no layer usable for Grad-CAM: looked for the last layer that every "
      "path to the output crosses (nested models included) whose output is 4-D (batch, height, width, "
      "channels) with height*width > 1, pooling and padding excluded. Pass target_layer= explicitly, "
      "or use a larger input size if the last convolutional block shrinks to 1x1."
    )
  path, layer = found
  shape = output_shape(layer)
  if _is_small(shape):
    log.warning(
      "Grad-CAM layer %r gives a %dx%d map, too coarse for a useful attention map or ATCON loss: "
      "use a larger input size.",
      path,
      shape[1],
      shape[2],
    )
  return path


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


def check_target_layer(model, path):
  """The layer at `path`, after checking that Grad-CAM can use it (4-D output, more than one cell)."""
  layer = get_layer_by_path(model, path)
  shape = output_shape(layer)
  if shape is None:
    return layer  # A subclassed model: its shapes are known only when it runs.
  if not is_spatial(shape):
    raise TargetLayerError(
      f"target_layer {path!r} has output shape {shape}: Grad-CAM needs a 4-D (batch, height, width, "
      "channels) output with height*width > 1 (a 1x1 map makes every consistency cost 0). "
      f"The automatic choice for this model is {_automatic_or_none(model)!r}."
    )
  if _is_small(shape):
    log.warning(
      "target_layer %r gives a %dx%d map: a larger input size gives a finer map.", path, *shape[1:3]
    )
  return layer


def _automatic_or_none(model):
  try:
    return find_target_layer(model)
  except TargetLayerError:
    return None
