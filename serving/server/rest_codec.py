"""TF Serving's REST JSON <-> tensors: row (`instances`) and columnar (`inputs`) formats, `{"b64": ...}`.

Requests are converted with the signature's input dtypes into TensorProtos, so they meet the same
validation as gRPC requests. In responses, string outputs whose name ends in `_bytes` are written as
`{"b64": ...}` (TF Serving's rule); other strings as UTF-8 text.
"""

import base64
import binascii

import numpy as np
from tensorflow.core.framework import types_pb2

from serving import tensors
from serving.server.validation import invalid


def _is_b64(value):
  return isinstance(value, dict) and set(value) == {"b64"}


def _strings(value, alias):
  """Nested lists of str / {"b64": ...} -> nested lists of bytes."""
  if isinstance(value, list):
    return [_strings(v, alias) for v in value]
  if _is_b64(value):
    if not isinstance(value["b64"], str):
      raise invalid(f"input '{alias}': the value of \"b64\" must be a base64 string")
    try:
      return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError) as e:
      raise invalid(f"input '{alias}': \"b64\" is not valid base64: {e}") from None
  if isinstance(value, str):
    return value.encode("utf-8")
  raise invalid(
    f"input '{alias}' is a string tensor: expected strings or {{\"b64\": ...}}, got {value!r:.80}"
  )


def _array(value, alias, spec):
  """A JSON value -> NumPy array of the signature's dtype for `alias` (INVALID_ARGUMENT if it does not fit)."""
  if spec.dtype == types_pb2.DT_STRING:
    value = _strings(value, alias)
    try:
      shaped = np.asarray(value, dtype=object)
    except ValueError:
      shaped = None
    if shaped is None or any(isinstance(v, list) for v in shaped.reshape(-1)):
      raise invalid(f"input '{alias}': lists of different lengths (a tensor must be rectangular)")
    return shaped
  dtype = tensors.numpy_dtype(spec.dtype)
  if dtype is None:
    raise invalid(f"input '{alias}' has a dtype the REST API cannot fill: {tensors.dtype_name(spec.dtype)}")
  try:
    raw = np.asarray(value)
  except ValueError:
    raise invalid(f"input '{alias}': lists of different lengths (a tensor must be rectangular)") from None
  if raw.dtype.kind not in "biuf":
    raise invalid(
      f"input '{alias}' expects {tensors.dtype_name(spec.dtype)} numbers, got JSON values of kind "
      f"{'strings' if raw.dtype.kind in 'US' else 'mixed or nested objects'}"
    )
  if np.dtype(dtype).kind in "iu":
    if raw.dtype.kind == "f" and not np.all(np.mod(raw, 1) == 0):
      raise invalid(f"input '{alias}' expects integers ({tensors.dtype_name(spec.dtype)}), got fractions")
    info = np.iinfo(dtype)
    if raw.size and (raw.min() < info.min or raw.max() > info.max):
      raise invalid(f"input '{alias}': values out of range for {tensors.dtype_name(spec.dtype)}")
  return raw.astype(dtype)


def request_inputs(body, signature):
  """({alias: TensorProto}, row_format) from a parsed :predict body, for `signature`."""
  has_instances, has_inputs = "instances" in body, "inputs" in body
  if has_instances == has_inputs:
    if has_instances:
      raise invalid("Not formatted correctly expecting only one of 'inputs' or 'instances' keys exist")
    raise invalid("Missing 'inputs' or 'instances' key")
  aliases = sorted(signature.inputs)
  if has_instances:
    instances = body["instances"]
    if not isinstance(instances, list) or not instances:
      raise invalid("'instances' must be a non-empty list")
    named = [isinstance(i, dict) and not _is_b64(i) for i in instances]
    if any(named) and not all(named):
      raise invalid("'instances' mixes named inputs (objects) and bare values")
    if all(named):
      keys = set(instances[0])
      for i, instance in enumerate(instances):
        if set(instance) != keys:
          raise invalid(f"instances[{i}] has inputs {sorted(instance)}, instances[0] has {sorted(keys)}")
      columns = {key: [instance[key] for instance in instances] for key in keys}
    elif len(aliases) == 1:
      columns = {aliases[0]: instances}
    else:
      raise invalid(
        f"signature '{signature.key}' has {len(aliases)} inputs {aliases}: each instance must be an object "
        "naming them"
      )
  else:
    inputs = body["inputs"]
    if isinstance(inputs, dict) and not _is_b64(inputs):
      columns = inputs
    elif len(aliases) == 1:
      columns = {aliases[0]: inputs}
    else:
      raise invalid(
        f"signature '{signature.key}' has {len(aliases)} inputs {aliases}: 'inputs' must name them"
      )
  protos = {}
  for alias, value in columns.items():
    spec = signature.inputs.get(alias)
    if spec is None:  # let the shared validation word the error as TF Serving does
      protos[alias] = tensors.to_tensor_proto(np.zeros(0, np.float32))
      continue
    protos[alias] = tensors.to_tensor_proto(_array(value, alias, spec), _dtype_for(spec))
  return protos, has_instances


def _dtype_for(spec):
  return None if spec.dtype == types_pb2.DT_STRING else tensors.numpy_dtype(spec.dtype)


def _json_value(alias, array):
  if array.dtype == object:
    if alias.endswith("_bytes"):
      encode = np.frompyfunc(lambda b: {"b64": base64.b64encode(b).decode("ascii")}, 1, 1)
    else:
      encode = np.frompyfunc(lambda b: b.decode("utf-8", errors="replace"), 1, 1)
    return encode(array).tolist() if array.ndim else encode(array)
  return array.tolist()


def response_body(outputs, row_format):
  """TF Serving's :predict answer: {"predictions": [...]} (row) or {"outputs": ...} (columnar)."""
  if not row_format:
    if len(outputs) == 1:
      ((alias, array),) = outputs.items()
      return {"outputs": _json_value(alias, array)}
    return {"outputs": {alias: _json_value(alias, array) for alias, array in outputs.items()}}
  values = {alias: _json_value(alias, array) for alias, array in outputs.items()}
  sizes = {alias: len(v) if isinstance(v, list) else None for alias, v in values.items()}
  if len(set(sizes.values())) != 1 or None in sizes.values():
    raise invalid(f"outputs have different batch sizes {sizes}: ask for the columnar ('inputs') format")
  if len(values) == 1:
    return {"predictions": next(iter(values.values()))}
  size = next(iter(sizes.values()))
  return {"predictions": [{alias: v[i] for alias, v in values.items()} for i in range(size)]}
