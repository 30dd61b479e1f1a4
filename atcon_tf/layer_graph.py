"""The layer graph of a Keras model, as Grad-CAM layer choice and logits detection need it.

Two questions are answered here, nested models included:
- which layers every input-to-output path crosses (`bottleneck_layers`): Grad-CAM of a layer that a
  parallel branch bypasses (a conv inside one Inception branch or a residual block) explains only
  part of the evidence, so only such cut layers are Grad-CAM candidates;
- which layers end the model (`trailing_layers`): where a softmax, however written, can hide.
Functional and Sequential models have a graph; a subclassed model has only its `layers` list, which
is then taken as a chain (the best that can be known without tracing it).
"""

from __future__ import annotations

import keras


def _functional(model):
  """The Functional graph behind `model` (a Sequential wraps one once built), or None."""
  if isinstance(model, keras.Sequential):
    return getattr(model, "_functional", None)
  if hasattr(model, "_nodes_by_depth") and getattr(model, "outputs", None):
    return model
  return None


def _graph(functional):
  """(ordered nodes from inputs to outputs, output nodes) of one Functional graph."""
  by_depth = functional._nodes_by_depth
  ordered = [node for depth in sorted(by_depth, reverse=True) for node in by_depth[depth]]
  outputs = []
  for tensor in functional.outputs:
    operation, node_index, _ = tensor._keras_history
    outputs.append(operation._inbound_nodes[node_index])
  return ordered, outputs


def _reaches_input_without(outputs, removed, members):
  """True if some input node is reachable from an output node without passing `removed`."""
  stack = [node for node in outputs if node is not removed]
  seen = {id(node) for node in stack}
  while stack:
    node = stack.pop()
    parents = [p for p in node.parent_nodes if id(p) in members]
    if not parents:
      return True  # An input node.
    for parent in parents:
      if parent is not removed and id(parent) not in seen:
        seen.add(id(parent))
        stack.append(parent)
  return False


def bottleneck_layers(model, prefix=""):
  """`(path, layer)` of the layers every input-to-output path crosses, from input to output.

  A nested model that is itself a bottleneck contributes its own bottleneck layers (paths
  `outer/inner`) right after itself. Subclassed models: all their layers, in `layers` order.
  """
  functional = _functional(model)
  if functional is None:
    found = []
    for layer in model.layers:
      found.append((prefix + layer.name, layer))
      if isinstance(layer, keras.Model):
        found += bottleneck_layers(layer, prefix + layer.name + "/")
    return found
  nodes, outputs = _graph(functional)
  members = {id(node) for node in nodes}
  found = []
  for node in nodes:
    layer = node.operation
    if not isinstance(layer, keras.layers.Layer) or isinstance(layer, keras.layers.InputLayer):
      continue
    if _reaches_input_without(outputs, node, members):
      continue
    found.append((prefix + layer.name, layer))
    if isinstance(layer, keras.Model):
      found += bottleneck_layers(layer, prefix + layer.name + "/")
  return found


def trailing_layers(model, limit=8):
  """The layers that end `model`, last first: the single-input chain before its (first) output.

  Descends into a nested model found on the way (its last layers follow it). Stops at a layer
  with several inputs, or after `limit` layers.
  """
  chain = []
  functional = _functional(model)
  if functional is None:
    layers = list(getattr(model, "layers", []))[::-1]
    for layer in layers[:limit]:
      chain.append(layer)
      if isinstance(layer, keras.Model):
        chain += trailing_layers(layer, limit - len(chain))
        break
    return chain[:limit]
  operation, node_index, _ = functional.outputs[0]._keras_history
  node = operation._inbound_nodes[node_index]
  while node is not None and len(chain) < limit:
    layer = node.operation
    if isinstance(layer, keras.layers.InputLayer):
      break
    chain.append(layer)
    if isinstance(layer, keras.Model):
      chain += trailing_layers(layer, limit - len(chain))
      break
    parents = node.parent_nodes
    node = parents[0] if len(parents) == 1 else None
  return chain[:limit]


def operations(model):
  """Every operation of `model` and its nested models (Keras ops that are not layers included)."""
  functional = _functional(model)
  found = []
  for operation in functional.operations if functional is not None else model.layers:
    found.append(operation)
    if isinstance(operation, keras.Model):
      found += operations(operation)
  return found
