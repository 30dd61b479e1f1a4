"""The client over TF Serving's REST API (port 8501): the same calls and results as `ServingClient`.

  with RestClient("127.0.0.1:8501", timeout=30) as client:
    result = client.predict(["cat.png"], model="atcon")   # {"b64": ...} -> predict_bytes
    result = client.predict(images, model="atcon")         # JSON numbers -> serving_default
Requests use the columnar format ("inputs"); outputs are decoded with the dtypes of the signature's
metadata (`*_bytes` outputs from base64). Errors are `ServingError` with the gRPC code TF Serving's HTTP
status stands for, and `.http_status`. Standard library only (urllib).
"""

import base64
import json
import time
import urllib.error
import urllib.request

import grpc
import numpy as np

from serving.client.api import BYTES_KEY, CLASS_IDS_KEY, IMAGES_KEY, bytes_signature
from serving.client.inputs import _cast_pixels, _check_shape, _is_encoded_input, file_names, read_encoded
from serving.client.results import _HINTS, Prediction, ServingError

# TF Serving's HTTP status -> the gRPC code behind it (400 also stands for FAILED_PRECONDITION).
_CODES = {
  400: grpc.StatusCode.INVALID_ARGUMENT,
  401: grpc.StatusCode.UNAUTHENTICATED,
  403: grpc.StatusCode.PERMISSION_DENIED,
  404: grpc.StatusCode.NOT_FOUND,
  409: grpc.StatusCode.ABORTED,
  429: grpc.StatusCode.RESOURCE_EXHAUSTED,
  499: grpc.StatusCode.CANCELLED,
  500: grpc.StatusCode.INTERNAL,
  501: grpc.StatusCode.UNIMPLEMENTED,
  503: grpc.StatusCode.UNAVAILABLE,
  504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def _path(model, version=None, version_label=None):
  if not model:
    raise ValueError("A model name is required.")
  if version is not None and version_label is not None:
    raise ValueError("Pass a version or a version_label, not both.")
  path = f"/v1/models/{model}"
  if version is not None:
    path += f"/versions/{int(version)}"
  elif version_label is not None:
    path += f"/labels/{version_label}"
  return path


class RestClient:
  """Client of TF Serving's REST API: predict, metadata, status, contract (local server only)."""

  def __init__(self, target="127.0.0.1:8501", timeout=30.0):
    self.target = target if "://" in target else f"http://{target}"
    self.timeout = float(timeout)
    self._metadata_cache = {}

  def close(self):
    pass

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def _call(self, method, path, call, body=None):
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(self.target + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
      with urllib.request.urlopen(request, timeout=self.timeout) as answer:
        return json.loads(answer.read())
    except urllib.error.HTTPError as e:
      text = e.read().decode("utf-8", errors="replace")
      try:
        details = json.loads(text).get("error", text)
      except (ValueError, AttributeError):
        details = text
      code = _CODES.get(e.code, grpc.StatusCode.UNKNOWN)
      raise ServingError(code, details, call, self.target, self._hint(code), http_status=e.code) from None
    except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
      reason = getattr(e, "reason", e)
      code = (
        grpc.StatusCode.DEADLINE_EXCEEDED if isinstance(reason, TimeoutError) else grpc.StatusCode.UNAVAILABLE
      )
      raise ServingError(code, str(reason), call, self.target, self._hint(code)) from None

  def _hint(self, code):
    hint = _HINTS.get(code)
    return hint.format(target=self.target, timeout=self.timeout, max_message_mb="(none)") if hint else None

  def status(self, model, version=None, version_label=None):
    """[{'version', 'state', 'error_code', 'error_message'}], as `ServingClient.status`."""
    body = self._call("GET", _path(model, version, version_label), f"GET status(model={model!r})")
    return [
      {
        "version": int(s["version"]),
        "state": s["state"],
        "error_code": 0 if s["status"].get("error_code", "OK") == "OK" else s["status"]["error_code"],
        "error_message": s["status"].get("error_message", ""),
      }
      for s in body.get("model_version_status", [])
    ]

  def wait_until_available(self, model, version=None, timeout=60.0, poll=0.2):
    deadline = time.monotonic() + timeout
    while True:
      try:
        available = [s for s in self.status(model, version) if s["state"] == "AVAILABLE"]
        if available:
          return available[0]
      except ServingError as e:
        if e.code not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE):
          raise
      if time.monotonic() > deadline:
        raise TimeoutError(f"Model {model!r} not available on {self.target} after {timeout:.0f} s")
      time.sleep(poll)

  def _raw_metadata(self, model, version=None, version_label=None):
    key = (model, version, version_label)
    cached = self._metadata_cache.get(key)
    if cached is not None and time.monotonic() - cached[1] < 60.0:
      return cached[0]
    body = self._call(
      "GET", _path(model, version, version_label) + "/metadata", f"GET metadata(model={model!r})"
    )
    self._metadata_cache[key] = (body, time.monotonic())
    return body

  def metadata(self, model, version=None, version_label=None):
    """{'model', 'version', 'signatures': {name: {'method', 'inputs', 'outputs'}}}, as over gRPC."""
    body = self._raw_metadata(model, version, version_label)

    def describe(infos):
      out = {}
      for alias, info in sorted(infos.items()):
        dtype = info.get("dtype", "DT_INVALID")[3:].lower()
        dtype = {"float": "float32", "double": "float64"}.get(dtype, dtype)
        shape = info.get("tensor_shape", {})
        dims = None if shape.get("unknown_rank") else [int(d["size"]) for d in shape.get("dim", [])]
        out[alias] = {"dtype": dtype, "shape": None if dims is None else [None if d < 0 else d for d in dims]}
      return out

    signatures = {}
    for key, definition in sorted(body["metadata"]["signature_def"]["signature_def"].items()):
      if key.startswith("__"):
        continue
      signatures[key] = {
        "method": definition.get("method_name", ""),
        "inputs": describe(definition.get("inputs", {})),
        "outputs": describe(definition.get("outputs", {})),
      }
    return {
      "model": body["model_spec"]["name"],
      "version": int(body["model_spec"]["version"]),
      "signatures": signatures,
    }

  def contract(self, model, version=None, version_label=None):
    """The export's contract (local server only: real TF Serving's metadata has none; then None)."""
    return self._raw_metadata(model, version, version_label)["metadata"].get("atcon_contract")

  def predict(
    self,
    images,
    model,
    signature=None,
    version=None,
    output_filter=None,
    class_ids=None,
    version_label=None,
    with_class_names=True,
  ):
    """As `ServingClient.predict`. REST has no output filter: outputs are selected here, after the call."""
    encoded = _is_encoded_input(images)
    metadata = self.metadata(model, version, version_label)
    if encoded:
      signature = bytes_signature(signature, class_ids)
      values = read_encoded(images)
      inputs = {BYTES_KEY: [{"b64": base64.b64encode(v).decode("ascii")} for v in values]}
      batch = len(values)
    else:
      signature = signature or ("explain_class" if class_ids is not None else "serving_default")
      values = (
        np.stack([np.asarray(i) for i in images]) if isinstance(images, (list, tuple)) else np.asarray(images)
      )
      spec = metadata["signatures"].get(signature, {}).get("inputs", {}).get(IMAGES_KEY)
      if spec is not None:
        values = _cast_pixels(values, spec["dtype"])
        if spec["shape"] is not None:
          _check_shape(values.shape, spec["shape"], signature)
      whole = values.dtype.kind == "f" and bool(np.all(np.mod(values, 1) == 0))
      inputs = {
        IMAGES_KEY: (values.astype(np.int64) if whole else values).tolist()
      }  # "12" encodes faster than "12.0"
      batch = values.shape[0] if values.ndim else 0
    if class_ids is not None:
      ids = np.asarray(class_ids, np.int32).reshape(-1)
      ids = np.full(batch, ids[0], np.int32) if ids.size == 1 and batch != 1 else ids
      if ids.size != batch:
        raise ValueError(f"{ids.size} class_ids for {batch} images: pass one per image or one for all.")
      inputs[CLASS_IDS_KEY] = ids.tolist()
    call = f"POST :predict(model={model!r}, signature={signature!r})"
    try:
      body = self._call(
        "POST",
        _path(model, version, version_label) + ":predict",
        call,
        {"signature_name": signature, "inputs": inputs},
      )
    except ServingError as e:
      raise (e.naming_files(file_names(images)) if encoded else e) from None
    specs = metadata["signatures"].get(signature, {}).get("outputs", {})
    outputs = body["outputs"]
    if not isinstance(outputs, dict) or (len(specs) == 1 and set(outputs) != set(specs)):
      outputs = {next(iter(specs)): outputs}  # a single output comes bare
    result = {
      alias: _decode(alias, value, specs.get(alias, {}).get("dtype")) for alias, value in outputs.items()
    }
    if output_filter:
      wanted = [output_filter] if isinstance(output_filter, str) else list(output_filter)
      result = {alias: result[alias] for alias in wanted}
    names = None
    if with_class_names:
      contract = self.contract(model, version, version_label) or {}
      names = contract.get("class_names")
    return Prediction(
      result, model, version if version is not None else metadata["version"], signature, names
    )


def _decode(alias, value, dtype):
  if dtype == "string":

    def one(v):
      return base64.b64decode(v["b64"]) if isinstance(v, dict) else str(v).encode("utf-8")

    flat = np.asarray(value, dtype=object)
    return np.frompyfunc(one, 1, 1)(flat) if flat.ndim else one(value)
  return np.asarray(value, dtype=dtype if dtype and dtype != "string" else None)
