"""Request validation against a signature, and the errors the server answers with.

Inputs are validated against the signature BEFORE the graph runs (dtype, rank, shape, batch
consistency, empty batch, class-id range, encoded-image headers): a wrong-rank input can abort
the whole process in oneDNN, and this server must never crash. Messages and status codes are
TF Serving's: input-set mismatches and bad output filters are INVALID_ARGUMENT.
"""

import re

import grpc

from serving import export as export_lib
from serving import tensors

_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")
_GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}


class ServingError(Exception):
  """An error answered to the client with a gRPC status code."""

  def __init__(self, code, message):
    super().__init__(message)
    self.code = code
    self.message = message


def invalid(message):
  return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def tf_error(error, signature):
  """A TF runtime error -> ServingError with the same code and the gist of its message."""
  code = _GRPC_CODES.get(getattr(error, "error_code", None), grpc.StatusCode.INTERNAL)
  message = getattr(error, "message", None) or str(error)
  noise = ("Graph execution error", "Detected at node", "<stack traces unavailable>")
  message = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", message)
  lines = [line.strip() for line in message.splitlines()]
  gist = [
    line
    for line in lines
    if line and not line.startswith(noise) and not line.startswith("[[") and not line.startswith("[Op:")
  ]
  return ServingError(code, f"signature '{signature}' failed: " + (" ".join(gist) or message))


def _fmt_shape(shape):
  return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def check_output_filter(signature, output_filter):
  """The output aliases to return, in order (all of the signature's if the filter is empty)."""
  seen = set()
  for alias in output_filter:
    if alias not in signature.outputs:
      raise invalid(
        f"output tensor alias not found in signature: {alias} Outputs expected to "
        f"be in the set {{{','.join(sorted(signature.outputs))}}}."
      )
    if alias in seen:
      raise invalid(f"duplicate output tensor alias: {alias}")
    seen.add(alias)
  return list(output_filter) or sorted(signature.outputs)


def parse_inputs(signature, proto_inputs):
  """TensorProtos -> validated NumPy arrays (ServingError INVALID_ARGUMENT otherwise)."""
  if len(proto_inputs) != len(signature.inputs):
    sent, expected = set(proto_inputs), set(signature.inputs)
    raise invalid(
      f"input size does not match signature: {len(sent)}!={len(expected)} "
      f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
      f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
      f"Missing but required: {{{','.join(sorted(expected - sent))}}}."
    )
  arrays = {}
  for alias in sorted(proto_inputs):
    if alias not in signature.inputs:
      raise invalid(
        f"input tensor alias not found in signature: {alias}. Inputs expected to "
        f"be in the set {{{','.join(sorted(signature.inputs))}}}."
      )
    proto = proto_inputs[alias]
    spec = signature.inputs[alias]
    if proto.dtype != spec.dtype:
      raise invalid(
        f"input '{alias}' has dtype {tensors.dtype_name(proto.dtype)} but signature "
        f"'{signature.key}' expects {tensors.dtype_name(spec.dtype)}."
      )
    try:
      array = tensors.to_numpy(proto)
    except (tensors.TensorParseError, ValueError, TypeError) as e:
      raise invalid(f"tensor parsing error: {alias}: {e}") from None
    _check_shape(signature, alias, array.shape, spec)
    arrays[alias] = array
  _check_batch(signature, arrays)
  _check_values(signature, arrays)
  return arrays


def _check_shape(signature, alias, shape, spec):
  if spec.shape is None:
    return
  if len(shape) != len(spec.shape):
    raise invalid(
      f"input '{alias}' has rank {len(shape)} (shape {list(shape)}) but signature "
      f"'{signature.key}' expects rank {len(spec.shape)} {_fmt_shape(spec.shape)}."
    )
  for axis, (got, want) in enumerate(zip(shape, spec.shape)):
    if want is not None and got != want:
      raise invalid(
        f"input '{alias}' has shape {list(shape)} but signature '{signature.key}' "
        f"expects {_fmt_shape(spec.shape)} (dimension {axis} must be {want})."
      )


def _check_batch(signature, arrays):
  batch = {
    alias: a.shape[0]
    for alias, a in arrays.items()
    if a.ndim >= 1 and signature.inputs[alias].shape and signature.inputs[alias].shape[0] is None
  }
  if len(set(batch.values())) > 1:
    raise invalid(
      "inputs have different batch sizes: "
      + ", ".join(f"{alias}={size}" for alias, size in sorted(batch.items()))
      + "."
    )
  for alias, size in batch.items():
    if size == 0:
      raise invalid(f"input '{alias}' is an empty batch (dimension 0 is 0): send at least one example.")


def _check_values(signature, arrays):
  """ATCON exports only: class ids in range, encoded images that look like images."""
  if not signature.atcon:
    return
  class_ids = arrays.get(export_lib.CLASS_IDS_KEY)
  if class_ids is not None and signature.num_classes:
    bad = (class_ids < -1) | (class_ids >= signature.num_classes)
    if bad.any():
      raise invalid(
        f"class_ids {class_ids[bad].tolist()} out of range: each must be in "
        f"[0, {signature.num_classes}) or -1 (top-1 class)."
      )
  encoded = arrays.get(export_lib.BYTES_KEY)
  if encoded is not None:
    for i, data in enumerate(encoded.reshape(-1)):
      if not data:
        raise invalid(
          f"{export_lib.BYTES_KEY}[{i}] is empty: expected an encoded JPEG, PNG, GIF or BMP image."
        )
      if not data.startswith(_IMAGE_MAGIC):
        raise invalid(
          f"{export_lib.BYTES_KEY}[{i}] is not a JPEG, PNG, GIF or BMP image (starts with {data[:8]!r})."
        )
