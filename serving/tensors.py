"""Fast NumPy <-> TensorProto conversion for the client and the local server.

Numeric tensors go through `tensor_content` (raw little-endian bytes: one memcpy, no
per-element protobuf fields). Decoding also accepts the typed `*_val` fields, which real
TF Serving uses in its Predict responses, with TensorFlow's rules (an empty field means
zeros; fewer values than elements repeat the last one; more values is an error).
"""

import numpy as np
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow.core.framework import types_pb2


class TensorParseError(ValueError):
  """A TensorProto that does not describe a valid tensor."""


# DataType enum -> (numpy dtype, name of the typed repeated field).
_DTYPES = {
  types_pb2.DT_FLOAT: (np.float32, "float_val"),
  types_pb2.DT_DOUBLE: (np.float64, "double_val"),
  types_pb2.DT_INT32: (np.int32, "int_val"),
  types_pb2.DT_UINT8: (np.uint8, "int_val"),
  types_pb2.DT_INT16: (np.int16, "int_val"),
  types_pb2.DT_INT8: (np.int8, "int_val"),
  types_pb2.DT_UINT16: (np.uint16, "int_val"),
  types_pb2.DT_INT64: (np.int64, "int64_val"),
  types_pb2.DT_UINT32: (np.uint32, "uint32_val"),
  types_pb2.DT_UINT64: (np.uint64, "uint64_val"),
  types_pb2.DT_BOOL: (np.bool_, "bool_val"),
  types_pb2.DT_HALF: (np.float16, "half_val"),
  types_pb2.DT_STRING: (object, "string_val"),
}
_NUMPY_TO_ENUM = {
  np.dtype(np.float32): types_pb2.DT_FLOAT,
  np.dtype(np.float64): types_pb2.DT_DOUBLE,
  np.dtype(np.int32): types_pb2.DT_INT32,
  np.dtype(np.uint8): types_pb2.DT_UINT8,
  np.dtype(np.int16): types_pb2.DT_INT16,
  np.dtype(np.int8): types_pb2.DT_INT8,
  np.dtype(np.uint16): types_pb2.DT_UINT16,
  np.dtype(np.int64): types_pb2.DT_INT64,
  np.dtype(np.uint32): types_pb2.DT_UINT32,
  np.dtype(np.uint64): types_pb2.DT_UINT64,
  np.dtype(np.bool_): types_pb2.DT_BOOL,
  np.dtype(np.float16): types_pb2.DT_HALF,
}


def dtype_name(enum):
  """'float32' for DT_FLOAT, etc. (the DataType enum name if numpy has no equivalent)."""
  if enum in _DTYPES and enum != types_pb2.DT_STRING:
    return np.dtype(_DTYPES[enum][0]).name
  if enum == types_pb2.DT_STRING:
    return "string"
  try:
    return types_pb2.DataType.Name(enum)
  except ValueError:
    return f"dtype#{enum}"


def numpy_dtype(enum):
  return _DTYPES[enum][0] if enum in _DTYPES else None


def _as_bytes(value):
  if isinstance(value, bytes):
    return value
  if isinstance(value, str):
    return value.encode("utf-8")
  if isinstance(value, (bytearray, memoryview, np.bytes_)):
    return bytes(value)
  raise TypeError(f"Expected bytes or str in a string tensor, got {type(value).__name__}.")


def _as_array(value, dtype=None):
  if (
    isinstance(value, (list, tuple)) and value and all(isinstance(v, (bytes, str, bytearray)) for v in value)
  ):
    array = np.empty(len(value), dtype=object)  # Not 'S': it would drop trailing NUL bytes.
    array[:] = list(value)
    return array
  array = np.asarray(value)
  if dtype is not None:
    array = array.astype(dtype, copy=False)
  return array


def to_tensor_proto(value, dtype=None):
  """NumPy array (or nested list / bytes list) -> TensorProto (tensor_content for numbers)."""
  array = _as_array(value, dtype)
  shape = tensor_shape_pb2.TensorShapeProto(
    dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(s)) for s in array.shape]
  )
  if array.dtype.kind in ("O", "S", "U"):
    return tensor_pb2.TensorProto(
      dtype=types_pb2.DT_STRING, tensor_shape=shape, string_val=[_as_bytes(v) for v in array.reshape(-1)]
    )
  enum = _NUMPY_TO_ENUM.get(array.dtype)
  if enum is None:
    raise TypeError(f"Unsupported dtype {array.dtype} for a TensorProto.")
  content = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
  return tensor_pb2.TensorProto(dtype=enum, tensor_shape=shape, tensor_content=content)


def shape_of(proto):
  """The shape of a TensorProto as a tuple; TensorParseError if unknown or negative."""
  if proto.tensor_shape.unknown_rank:
    raise TensorParseError("tensor shape has unknown rank")
  dims = tuple(int(d.size) for d in proto.tensor_shape.dim)
  if any(d < 0 for d in dims):
    raise TensorParseError(f"tensor shape {list(dims)} has a negative dimension")
  return dims


def to_numpy(proto):
  """TensorProto -> NumPy array (strings as an object array of bytes)."""
  dims = shape_of(proto)
  if proto.dtype not in _DTYPES:
    raise TensorParseError(f"unsupported tensor dtype {dtype_name(proto.dtype)}")
  np_dtype, field = _DTYPES[proto.dtype]
  count = int(np.prod(dims, dtype=np.int64)) if dims else 1
  if proto.dtype == types_pb2.DT_STRING:
    values = list(proto.string_val)
    array = np.empty(len(values), dtype=object)
    array[:] = values
  elif proto.tensor_content:
    itemsize = np.dtype(np_dtype).itemsize
    if len(proto.tensor_content) != count * itemsize:
      raise TensorParseError(
        f"tensor_content has {len(proto.tensor_content)} bytes, shape {list(dims)} of "
        f"{dtype_name(proto.dtype)} needs {count * itemsize}"
      )
    return (
      np.frombuffer(proto.tensor_content, dtype=np.dtype(np_dtype).newbyteorder("<"))
      .astype(np_dtype, copy=False)
      .reshape(dims)
    )
  elif proto.dtype == types_pb2.DT_HALF:
    array = np.asarray(proto.half_val, np.uint16).view(np.float16)
  else:
    array = np.asarray(getattr(proto, field), dtype=np_dtype)
  if array.size == count:
    return array.reshape(dims)
  if array.size > count:
    raise TensorParseError(f"{array.size} values for shape {list(dims)} ({count} elements)")
  if count == 0:
    return np.zeros(dims, np_dtype)
  if array.size == 0:
    if proto.dtype == types_pb2.DT_STRING:
      filled = np.empty(count, dtype=object)
      filled[:] = [b""] * count
      return filled.reshape(dims)
    return np.zeros(dims, np_dtype)
  filled = np.empty(count, dtype=array.dtype)
  filled[: array.size] = array
  filled[array.size :] = array[-1]
  return filled.reshape(dims)
