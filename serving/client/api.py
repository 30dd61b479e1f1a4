"""The gRPC client library for TF Serving (and the local `serving.server`).

  with ServingClient("127.0.0.1:8500", timeout=30, max_message_mb=64) as client:
    result = client.predict(["cat.png"], model="atcon")     # encoded files -> predict_bytes
    result = client.predict(images, model="atcon")           # (B, H, W, 3) -> serving_default
    result["probabilities"], result["gradcam"], result.version
    result.class_names, result.class_name(3)  # from the served contract (None / "3" where it has none)
    client.metadata("atcon"); client.status("atcon")
    client.contract("atcon")  # preprocessing, image size, class names... (local server only)

Every gRPC failure is raised as `ServingError` (status code, details, the call, a hint).
"""

import json
import time

import grpc
import numpy as np
from google.protobuf import wrappers_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving import tensors
from serving.client.inputs import _cast_pixels, _check_shape, _is_encoded_input, file_names, read_encoded
from serving.client.results import _HINTS, Prediction, ServingError
from serving.export import layout

IMAGES_KEY = "images"
CONTRACT_FIELD = layout.CONTRACT_METADATA_FIELD  # GetModelMetadata field of the local server only
BYTES_KEY = "images_bytes"
CLASS_IDS_KEY = "class_ids"
_CONTRACT_HINT_TF_SERVING = (
  "real TF Serving only serves the 'signature_def' metadata field; the export's "
  f"assets.extra/{layout.EXPORT_INFO_FILE} holds the contract (serving.export.load_contract(version_path))"
)
_CONTRACT_HINT_NO_CONTRACT = (
  f"this export records no contract: the export's assets.extra/{layout.EXPORT_INFO_FILE} holds it once the "
  "model is re-exported with serving.export"
)
# Answers meaning "this server or export has no contract" (cached as no class names); others may pass.
_NO_CONTRACT_CODES = (
  grpc.StatusCode.INVALID_ARGUMENT,
  grpc.StatusCode.FAILED_PRECONDITION,
  grpc.StatusCode.UNIMPLEMENTED,
)
_STATE_NAMES = dict(get_model_status_pb2.ModelVersionStatus.State.items())
_STATE_NAMES = {v: k for k, v in _STATE_NAMES.items()}


def bytes_signature(signature, class_ids):
  """The signature for encoded images: predict_bytes / explain_class_bytes; 'predict' (no maps) means
  predict_only_bytes, since `predict` itself takes pixel arrays."""
  if signature == "predict":
    return "predict_only_bytes"
  return signature or ("explain_class_bytes" if class_ids is not None else "predict_bytes")


class ServingClient:
  """Client of TF Serving's PredictionService and ModelService over one gRPC channel."""

  def __init__(self, target="127.0.0.1:8500", timeout=30.0, max_message_mb=64, credentials=None):
    self.target = target
    self.timeout = float(timeout)
    self.max_message_mb = max_message_mb
    limit = int(max_message_mb * 1024 * 1024)
    options = [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]
    if credentials is None:
      self._channel = grpc.insecure_channel(target, options=options)
    else:
      self._channel = grpc.secure_channel(target, credentials, options=options)
    self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
    self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
    self._signature_cache = {}
    self._class_names_cache = {}

  def close(self):
    self._channel.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  # --- plumbing -------------------------------------------------------------------------
  def _call(self, method, request, call):
    try:
      return method(request, timeout=self.timeout)
    except grpc.RpcError as e:
      code = e.code() if callable(getattr(e, "code", None)) else grpc.StatusCode.UNKNOWN
      details = e.details() if callable(getattr(e, "details", None)) else str(e)
      hint = _HINTS.get(code)
      if hint:
        hint = hint.format(target=self.target, timeout=self.timeout, max_message_mb=self.max_message_mb)
      raise ServingError(code, details, call, self.target, hint) from None

  @staticmethod
  def model_spec(model, version=None, signature=None, version_label=None):
    if not model:
      raise ValueError("A model name is required.")
    spec = model_pb2.ModelSpec(name=model)
    if version is not None and version_label is not None:
      raise ValueError("Pass a version or a version_label, not both.")
    if version is not None:
      spec.version.CopyFrom(wrappers_pb2.Int64Value(value=int(version)))
    if version_label is not None:
      spec.version_label = version_label
    if signature:
      spec.signature_name = signature
    return spec

  # --- API ------------------------------------------------------------------------------
  def metadata(self, model, version=None, version_label=None):
    """{'model', 'version', 'signatures': {name: {'method', 'inputs', 'outputs'}}}.

    inputs/outputs map each alias to {'dtype': 'float32', 'shape': [None, 32, 32, 3]}.
    Internal signatures (names starting with '__') are left out.
    """
    request = get_model_metadata_pb2.GetModelMetadataRequest(
      model_spec=self.model_spec(model, version, version_label=version_label),
      metadata_field=["signature_def"],
    )
    response = self._call(self._predictions.GetModelMetadata, request, f"GetModelMetadata(model={model!r})")
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)

    def describe(infos):
      out = {}
      for alias, info in sorted(infos.items()):
        shape = (
          None
          if info.tensor_shape.unknown_rank
          else [None if d.size < 0 else int(d.size) for d in info.tensor_shape.dim]
        )
        out[alias] = {"dtype": tensors.dtype_name(info.dtype), "shape": shape}
      return out

    signatures = {}
    for key, signature_def in sorted(signature_map.signature_def.items()):
      if key.startswith("__"):
        continue
      signatures[key] = {
        "method": signature_def.method_name,
        "inputs": describe(signature_def.inputs),
        "outputs": describe(signature_def.outputs),
      }
    return {
      "model": response.model_spec.name,
      "version": response.model_spec.version.value,
      "signatures": signatures,
    }

  def contract(self, model, version=None, version_label=None):
    """The `ServingContract` (as a dict) the served version was exported with.

    preprocessing, image_size, class_names, target_layer, multi_label and the loss settings: what a
    client needs to send the right pixels and read the maps. Answered by the local `serving.server`
    (metadata_field "atcon_contract"); real TF Serving only serves "signature_def", and a
    `ServingError` says so. The export's `assets.extra/atcon_serving.json` holds the same contract
    (`serving.export.load_contract(version_path)` reads it).
    """
    call = f"GetModelMetadata(model={model!r}, metadata_field={CONTRACT_FIELD!r})"
    request = get_model_metadata_pb2.GetModelMetadataRequest(
      model_spec=self.model_spec(model, version, version_label=version_label), metadata_field=[CONTRACT_FIELD]
    )
    try:
      response = self._call(self._predictions.GetModelMetadata, request, call)
    except ServingError as e:
      if e.code == grpc.StatusCode.INVALID_ARGUMENT and "not supported" in e.details:
        raise ServingError(e.code, e.details, call, self.target, _CONTRACT_HINT_TF_SERVING) from None
      if e.code == grpc.StatusCode.FAILED_PRECONDITION:
        raise ServingError(e.code, e.details, call, self.target, _CONTRACT_HINT_NO_CONTRACT) from None
      raise
    value = wrappers_pb2.StringValue()
    if CONTRACT_FIELD not in response.metadata or not response.metadata[CONTRACT_FIELD].Unpack(value):
      raise ServingError(
        grpc.StatusCode.UNIMPLEMENTED,
        f"the answer holds no {CONTRACT_FIELD!r} StringValue",
        call,
        self.target,
        _CONTRACT_HINT_TF_SERVING,
      )
    return json.loads(value.value)

  def class_names(self, model, version=None, version_label=None):
    """The class names in the served contract of `model` (a version, or the latest), or None.

    None when the server answers no contract (real TF Serving) or the export records no names. A given
    version's answer is asked once and cached; transient failures (UNAVAILABLE, NOT_FOUND, ...) are not cached.
    """
    key = (model, version, version_label)
    if key in self._class_names_cache:
      return self._class_names_cache[key]
    try:
      names = self.contract(model, version, version_label).get("class_names") or None
    except ServingError as e:
      if e.code not in _NO_CONTRACT_CODES:
        return None
      names = None
    except ValueError:  # not JSON
      names = None
    names = [str(n) for n in names] if names else None
    if version is not None or version_label is not None:
      self._class_names_cache[key] = names
    return names

  def status(self, model, version=None, version_label=None):
    """[{'version', 'state' ('AVAILABLE', 'LOADING', 'END', ...), 'error_code', 'error_message'}]."""
    request = get_model_status_pb2.GetModelStatusRequest(
      model_spec=self.model_spec(model, version, version_label=version_label)
    )
    response = self._call(self._models.GetModelStatus, request, f"GetModelStatus(model={model!r})")
    return [
      {
        "version": s.version,
        "state": _STATE_NAMES.get(s.state, str(s.state)),
        "error_code": s.status.error_code,
        "error_message": s.status.error_message,
      }
      for s in response.model_version_status
    ]

  def wait_until_available(self, model, version=None, timeout=60.0, poll=0.2):
    """Blocks until `model` (a given version, or any) is AVAILABLE; returns its status."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
      try:
        statuses = self.status(model, version)
        available = [s for s in statuses if s["state"] == "AVAILABLE"]
        if available:
          return available[0]
        last = statuses
      except ServingError as e:
        if e.code not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE):
          raise
        last = e
      if time.monotonic() > deadline:
        raise TimeoutError(
          f"Model {model!r} (version {version}) not available on {self.target} "
          f"after {timeout:.0f} s; last answer: {last}"
        )
      time.sleep(poll)

  def _input_spec(self, model, version, signature):
    """{'dtype', 'shape'} of the signature's `images` input (None if it has none), cached."""
    key = (model, version, signature)
    cached = self._signature_cache.get(key)
    if cached is not None and time.monotonic() - cached[1] < 60.0:
      return cached[0]
    spec = self.metadata(model, version)["signatures"].get(signature, {}).get("inputs", {})
    spec = spec.get(IMAGES_KEY)
    self._signature_cache[key] = (spec, time.monotonic())
    return spec

  def predict_request(
    self,
    images,
    model,
    signature=None,
    version=None,
    output_filter=None,
    class_ids=None,
    version_label=None,
    input_spec=None,
  ):
    """The PredictRequest that `predict` sends (see there).

    input_spec: {'dtype', 'shape'} of the `images` input (from `metadata`): arrays are cast
    to that dtype and their shape is checked first (real TF Serving does not check shapes,
    and a wrong-rank input can abort it in oneDNN).
    """
    input_dtype = input_spec.get("dtype") if input_spec else None
    encoded = _is_encoded_input(images)
    if encoded:
      values = read_encoded(images)
      batch = len(values)
      key = BYTES_KEY
      signature = bytes_signature(signature, class_ids)
    else:
      if isinstance(images, (list, tuple)):
        if not images:
          raise ValueError("No images to send.")
        images = np.stack([np.asarray(i) for i in images])
      values = np.asarray(images)
      batch = values.shape[0] if values.ndim else 0
      key = IMAGES_KEY
      signature = signature or ("explain_class" if class_ids is not None else "serving_default")
      if input_dtype is None and values.dtype not in (np.float32, np.uint8):
        input_dtype = "float32"
      if input_dtype is not None:
        values = _cast_pixels(values, input_dtype)
      if input_spec and input_spec.get("shape") is not None:
        _check_shape(values.shape, input_spec["shape"], signature)
    request = predict_pb2.PredictRequest(model_spec=self.model_spec(model, version, signature, version_label))
    request.inputs[key].CopyFrom(tensors.to_tensor_proto(values))
    if class_ids is not None:
      ids = np.asarray(class_ids, np.int32).reshape(-1)
      if ids.size == 1 and batch != 1:
        ids = np.full(batch, ids[0], np.int32)
      if ids.size != batch:
        raise ValueError(
          f"{ids.size} class_ids for {batch} images: pass one per image "
          "(-1 = top-1 class) or a single one for all."
        )
      request.inputs[CLASS_IDS_KEY].CopyFrom(tensors.to_tensor_proto(ids))
    if output_filter:
      request.output_filter.extend([output_filter] if isinstance(output_filter, str) else list(output_filter))
    return request

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
    """Runs a signature; returns a `Prediction` (dict of NumPy arrays, + model/version/class names).

    images: a (B, H, W, C) array (or list of HxWxC arrays) of raw pixels, or image file paths /
      encoded JPEG/PNG bytes (one or a list). Arrays are cast to the signature's input dtype
      (float32 or uint8, read once from the model's metadata).
    signature: default 'serving_default' for arrays and 'predict_bytes' for encoded images;
      with class_ids, 'explain_class' / 'explain_class_bytes'. 'predict' = no maps (for encoded images:
      'predict_only_bytes'). A server error about `images_bytes[i]` names the file (`ServingError.path`).
    class_ids: one class per image (or one for all) to explain; -1 = top-1 class.
    output_filter: names of the outputs to return (default: all of the signature's).
    with_class_names: fill `Prediction.class_names` from the answering version's contract (one extra call
      per model version, cached; None on servers without the contract, such as real TF Serving).
    """
    input_spec = None
    if not _is_encoded_input(images):
      default = "explain_class" if class_ids is not None else "serving_default"
      try:
        input_spec = self._input_spec(model, version, signature or default)
      except ServingError:
        input_spec = None  # Let Predict report the problem with its own status.
    request = self.predict_request(
      images, model, signature, version, output_filter, class_ids, version_label, input_spec
    )
    try:
      response = self._call(
        self._predictions.Predict,
        request,
        f"Predict(model={model!r}, signature={request.model_spec.signature_name!r})",
      )
    except ServingError as e:
      if _is_encoded_input(images):
        raise e.naming_files(file_names(images)) from None
      raise
    outputs = {alias: tensors.to_numpy(proto) for alias, proto in response.outputs.items()}
    answered = response.model_spec.version.value if response.model_spec.HasField("version") else None
    names = None
    if with_class_names and answered is not None:  # the version that answered: cached
      names = self.class_names(model, answered)
    elif with_class_names:
      names = self.class_names(model, version, version_label)
    return Prediction(
      outputs,
      response.model_spec.name,
      response.model_spec.version.value,
      response.model_spec.signature_name or request.model_spec.signature_name,
      class_names=names,
    )
