"""A local gRPC server with TF Serving's API, for local use and tests (production: TF Serving).

  python -m serving.server --model_base_path=EXPORT_DIR/NAME --model_name=NAME --port=8500
  python -m serving.server --model_config_file=models.config --port=8500

It implements `tensorflow.serving.PredictionService` (`Predict`, `GetModelMetadata`,
`Classify`) and `ModelService` (`GetModelStatus`, `HandleReloadConfigRequest`) over the
`BASE_PATH/VERSION/` SavedModel layout, with TF Serving's semantics:
- version policy (latest N by default, all, specific), explicit `version` or `version_label`;
- `signature_name` (default `serving_default`), `output_filter`;
- status codes and messages of TF Serving for unknown models / versions (NOT_FOUND), unknown
  signatures (FAILED_PRECONDITION, as TF Serving's predict_util.cc), input-set mismatches and
  bad output filters (INVALID_ARGUMENT);
- inputs are validated against the signature BEFORE the graph runs (dtype, rank, shape,
  batch consistency, empty batch, class-id range, encoded-image headers): a wrong-rank input
  can abort the whole process in oneDNN, and this server must never crash;
- a background poller loads a new version, replays its warm-up requests, then swaps it in
  atomically; the old version is unloaded after its in-flight requests finish;
- warm-up: `assets.extra/tf_serving_warmup_requests` is replayed before a version is served.
Outputs are sent as `tensor_content` (raw bytes). It binds 127.0.0.1 by default.
Not implemented (TF Serving only): server-side batching, Regress, MultiInference, the REST API.
"""
import collections
import contextlib
import logging
import os
import signal
import threading
from concurrent import futures

import grpc
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from google.protobuf import wrappers_pb2  # noqa: E402
from tensorflow.core.protobuf import error_codes_pb2  # noqa: E402
from tensorflow.core.protobuf import saved_model_pb2  # noqa: E402
from tensorflow_serving.apis import classification_pb2  # noqa: E402
from tensorflow_serving.apis import get_model_metadata_pb2  # noqa: E402
from tensorflow_serving.apis import get_model_status_pb2  # noqa: E402
from tensorflow_serving.apis import model_management_pb2  # noqa: E402
from tensorflow_serving.apis import model_pb2  # noqa: E402
from tensorflow_serving.apis import model_service_pb2_grpc  # noqa: E402
from tensorflow_serving.apis import predict_pb2  # noqa: E402
from tensorflow_serving.apis import prediction_log_pb2  # noqa: E402
from tensorflow_serving.apis import prediction_service_pb2_grpc  # noqa: E402
from tensorflow_serving.apis import status_pb2  # noqa: E402
from tensorflow_serving.config import model_server_config_pb2  # noqa: E402

from serving import config as config_lib  # noqa: E402
from serving import export as export_lib  # noqa: E402
from serving import tensors  # noqa: E402

log = logging.getLogger("serving.server")

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
MAX_WARMUP_RECORDS = 1000  # As TF Serving.
MAX_LOAD_ATTEMPTS = 5
State = get_model_status_pb2.ModelVersionStatus.State
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


def _tf_error(error, signature):
  """A TF runtime error -> ServingError with the same code and the gist of its message."""
  code = _GRPC_CODES.get(getattr(error, "error_code", None), grpc.StatusCode.INTERNAL)
  message = getattr(error, "message", None) or str(error)
  noise = ("Graph execution error", "Detected at node", "<stack traces unavailable>")
  lines = [line.strip() for line in message.splitlines()]
  gist = [line for line in lines if line and not line.startswith(noise) and
          not line.startswith("[[") and not line.startswith("[Op:")]
  return ServingError(code, f"signature '{signature}' failed: " + (" ".join(gist) or message))


# --- signatures -------------------------------------------------------------------------
TensorSpec = collections.namedtuple("TensorSpec", ["dtype", "shape"])  # shape: None | tuple


def _spec(tensor_info):
  shape = None
  if not tensor_info.tensor_shape.unknown_rank:
    shape = tuple(None if d.size < 0 else int(d.size) for d in tensor_info.tensor_shape.dim)
  return TensorSpec(tensor_info.dtype, shape)


def _fmt_shape(shape):
  return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


class Signature:
  """One SignatureDef of a loaded version, and the concrete function that runs it."""

  def __init__(self, key, signature_def, function, export_info):
    self.key = key
    self.method_name = signature_def.method_name
    self.inputs = {alias: _spec(info) for alias, info in signature_def.inputs.items()}
    self.outputs = {alias: _spec(info) for alias, info in signature_def.outputs.items()}
    self.function = function
    self.num_classes = (export_info or {}).get("num_classes")
    self.atcon = export_info is not None

  def check_output_filter(self, output_filter):
    seen = set()
    for alias in output_filter:
      if alias not in self.outputs:
        raise invalid(f"output tensor alias not found in signature: {alias} Outputs expected to "
                      f"be in the set {{{','.join(sorted(self.outputs))}}}.")
      if alias in seen:
        raise invalid(f"duplicate output tensor alias: {alias}")
      seen.add(alias)
    return list(output_filter) or sorted(self.outputs)

  def parse_inputs(self, proto_inputs):
    """TensorProtos -> validated NumPy arrays (ServingError INVALID_ARGUMENT otherwise)."""
    if len(proto_inputs) != len(self.inputs):
      sent, expected = set(proto_inputs), set(self.inputs)
      raise invalid(
          f"input size does not match signature: {len(sent)}!={len(expected)} "
          f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
          f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
          f"Missing but required: {{{','.join(sorted(expected - sent))}}}.")
    arrays = {}
    for alias in sorted(proto_inputs):
      if alias not in self.inputs:
        raise invalid(f"input tensor alias not found in signature: {alias}. Inputs expected to "
                      f"be in the set {{{','.join(sorted(self.inputs))}}}.")
      proto = proto_inputs[alias]
      spec = self.inputs[alias]
      if proto.dtype != spec.dtype:
        raise invalid(f"input '{alias}' has dtype {tensors.dtype_name(proto.dtype)} but signature "
                      f"'{self.key}' expects {tensors.dtype_name(spec.dtype)}.")
      try:
        array = tensors.to_numpy(proto)
      except (tensors.TensorParseError, ValueError, TypeError) as e:
        raise invalid(f"tensor parsing error: {alias}: {e}") from None
      self._check_shape(alias, array.shape, spec)
      arrays[alias] = array
    self._check_batch(arrays)
    self._check_values(arrays)
    return arrays

  def _check_shape(self, alias, shape, spec):
    if spec.shape is None:
      return
    if len(shape) != len(spec.shape):
      raise invalid(f"input '{alias}' has rank {len(shape)} (shape {list(shape)}) but signature "
                    f"'{self.key}' expects rank {len(spec.shape)} {_fmt_shape(spec.shape)}.")
    for axis, (got, want) in enumerate(zip(shape, spec.shape)):
      if want is not None and got != want:
        raise invalid(f"input '{alias}' has shape {list(shape)} but signature '{self.key}' "
                      f"expects {_fmt_shape(spec.shape)} (dimension {axis} must be {want}).")

  def _check_batch(self, arrays):
    batch = {alias: a.shape[0] for alias, a in arrays.items()
             if a.ndim >= 1 and self.inputs[alias].shape and self.inputs[alias].shape[0] is None}
    if len(set(batch.values())) > 1:
      raise invalid("inputs have different batch sizes: " +
                    ", ".join(f"{alias}={size}" for alias, size in sorted(batch.items())) + ".")
    for alias, size in batch.items():
      if size == 0:
        raise invalid(f"input '{alias}' is an empty batch (dimension 0 is 0): send at least one "
                      "example.")

  def _check_values(self, arrays):
    if not self.atcon:
      return
    class_ids = arrays.get(export_lib.CLASS_IDS_KEY)
    if class_ids is not None and self.num_classes:
      bad = (class_ids < -1) | (class_ids >= self.num_classes)
      if bad.any():
        raise invalid(f"class_ids {class_ids[bad].tolist()} out of range: each must be in "
                      f"[0, {self.num_classes}) or -1 (top-1 class).")
    encoded = arrays.get(export_lib.BYTES_KEY)
    if encoded is not None:
      for i, data in enumerate(encoded.reshape(-1)):
        if not data:
          raise invalid(f"{export_lib.BYTES_KEY}[{i}] is empty: expected an encoded JPEG, PNG, "
                        "GIF or BMP image.")
        if not data.startswith(_IMAGE_MAGIC):
          raise invalid(f"{export_lib.BYTES_KEY}[{i}] is not a JPEG, PNG, GIF or BMP image "
                        f"(starts with {data[:8]!r}).")

  def run(self, arrays, output_filter):
    feeds = {alias: tf.constant(array) for alias, array in arrays.items()}
    try:
      results = self.function(**feeds)
    except tf.errors.OpError as e:
      raise _tf_error(e, self.key) from None
    return {alias: results[alias].numpy() for alias in output_filter}


# --- loaded versions --------------------------------------------------------------------
class Servable:
  """One loaded version of a model; counts its in-flight requests."""

  def __init__(self, name, version, path):
    self.name, self.version, self.path = name, version, path
    meta_graph = _serve_meta_graph(path)
    self.signature_defs = meta_graph.signature_def
    self.export_info = export_lib.read_export_info(path)
    self.loaded = tf.saved_model.load(path, tags=["serve"])
    self.signatures = {}
    for key, signature_def in self.signature_defs.items():
      if key.startswith("__"):
        continue
      function = self.loaded.signatures.get(key)
      if function is not None:
        self.signatures[key] = Signature(key, signature_def, function, self.export_info)
    self._in_flight = 0
    self._idle = threading.Condition()

  def acquire_unlocked(self):
    with self._idle:
      self._in_flight += 1

  def release(self):
    with self._idle:
      self._in_flight -= 1
      if not self._in_flight:
        self._idle.notify_all()

  def wait_idle(self, timeout):
    with self._idle:
      return self._idle.wait_for(lambda: self._in_flight == 0, timeout=timeout)

  def signature(self, key):
    key = key or DEFAULT_SIGNATURE
    found = self.signatures.get(key)
    if found is None:
      raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                         f"Serving signature key \"{key}\" not found.")
    return found

  def predict(self, request):
    signature = self.signature(request.model_spec.signature_name)
    arrays = signature.parse_inputs(request.inputs)  # In TF Serving's order: inputs first.
    output_filter = signature.check_output_filter(request.output_filter)
    if signature.method_name not in (PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD):
      raise ServingError(grpc.StatusCode.INTERNAL,
                         f"Expected prediction signature method_name to be one of "
                         f"{{{PREDICT_METHOD}, {CLASSIFY_METHOD}, {REGRESS_METHOD}}}. Was: "
                         f"{signature.method_name}")
    return signature.key, signature.run(arrays, output_filter)

  def warm_up(self):
    """Replays assets.extra/tf_serving_warmup_requests (PredictLog records); raises on error."""
    path = os.path.join(self.path, "assets.extra", export_lib.WARMUP_FILE)
    if not os.path.isfile(path):
      return 0
    count = 0
    for record in tf.data.TFRecordDataset(path).take(MAX_WARMUP_RECORDS):
      entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
      if entry.WhichOneof("log_type") != "predict_log":
        continue  # Only Predict is replayed here.
      self.predict(entry.predict_log.request)
      count += 1
    return count


def _serve_meta_graph(path):
  pb = os.path.join(path, "saved_model.pb")
  saved_model = saved_model_pb2.SavedModel()
  with open(pb, "rb") as f:
    saved_model.ParseFromString(f.read())
  for meta_graph in saved_model.meta_graphs:
    if "serve" in meta_graph.meta_info_def.tags:
      return meta_graph
  raise ValueError(f"{path}: no MetaGraph with tag 'serve'.")


# --- version management -----------------------------------------------------------------
def _status(state, error=None):
  status = status_pb2.StatusProto(error_code=error_codes_pb2.OK)
  if error:
    status.error_code = error_codes_pb2.UNKNOWN
    status.error_message = error
  return state, status


class ModelState:
  def __init__(self, config):
    self.config = config
    self.available = {}  # version -> Servable
    self.states = {}  # version -> (State, StatusProto)
    self.failures = collections.Counter()


class ModelManager:
  """Loads the versions each model's policy wants; serves them; swaps with no failed request."""

  def __init__(self, server_config, poll_seconds=1.0, warmup=True, unload_timeout=300.0):
    self._lock = threading.RLock()
    self._poll_lock = threading.Lock()
    self._models = {}
    self.poll_seconds = poll_seconds
    self.warmup = warmup
    self.unload_timeout = unload_timeout
    self._stop = threading.Event()
    self._thread = None
    self.set_config(server_config)

  def set_config(self, server_config):
    configs = list(server_config.model_config_list.config)
    names = [c.name for c in configs]
    if len(set(names)) != len(names) or not all(names):
      raise ValueError(f"Model names must be unique and non-empty, got {names}.")
    with self._lock:
      old = self._models
      self._models = {}
      for config in configs:
        state = old.get(config.name)
        if state is None or state.config.base_path != config.base_path:
          state = ModelState(config)
        state.config = config
        self._models[config.name] = state
      dropped = [s for name, s in old.items() if self._models.get(name) is not s]
    for state in dropped:
      for servable in state.available.values():
        servable.wait_idle(self.unload_timeout)

  def model_names(self):
    with self._lock:
      return sorted(self._models)

  # Polling ---------------------------------------------------------------------------
  def start(self):
    self.poll()
    self._thread = threading.Thread(target=self._loop, name="version-poller", daemon=True)
    self._thread.start()

  def stop(self):
    self._stop.set()
    if self._thread is not None:
      self._thread.join(timeout=10)

  def _loop(self):
    while not self._stop.wait(self.poll_seconds):
      try:
        self.poll()
      except Exception:  # The poller must survive anything (a vanished folder, a bad export).
        log.exception("Version poll failed")

  def _wanted(self, config, on_disk):
    policy = config.model_version_policy.WhichOneof("policy_choice") or "latest"
    versions = sorted(on_disk)
    if policy == "all":
      return set(versions)
    if policy == "specific":
      return set(config.model_version_policy.specific.versions) & set(versions)
    count = config.model_version_policy.latest.num_versions or 1
    return set(versions[-count:])

  def poll(self):
    """One pass: load wanted versions not loaded, then unload the unwanted ones."""
    with self._poll_lock:
      with self._lock:
        models = list(self._models.values())
      for state in models:
        self._poll_model(state)

  def _poll_model(self, state):
    config = state.config
    on_disk = {v: p for v, p in export_lib.version_dirs(config.base_path).items()
               if os.path.isfile(os.path.join(p, "saved_model.pb"))}
    if not on_disk:
      if not state.available:
        log.warning("No versions of model %s found under %s", config.name, config.base_path)
      return  # Keep serving what is loaded: a vanished folder must not take the model down.
    wanted = self._wanted(config, on_disk)
    for version in sorted(wanted - set(state.available), reverse=True):
      if state.failures[version] >= MAX_LOAD_ATTEMPTS:
        continue
      with self._lock:
        state.states[version] = _status(State.LOADING)
      try:
        servable = Servable(config.name, version, on_disk[version])
        if self.warmup:
          servable.warm_up()
      except Exception as e:  # A broken export must not stop the server.
        state.failures[version] += 1
        message = f"Loading {config.name} version {version} failed: {type(e).__name__}: {e}"
        log.error("%s (attempt %d/%d)", message, state.failures[version], MAX_LOAD_ATTEMPTS)
        with self._lock:
          state.states[version] = _status(State.END, message)
        continue
      with self._lock:  # The swap: from now on 'latest' resolves to the new version.
        state.available[version] = servable
        state.states[version] = _status(State.AVAILABLE)
      log.info("Serving %s version %d from %s", config.name, version, on_disk[version])
    with self._lock:
      keep_old = not (wanted & set(state.available))  # Availability first: never go empty.
      retired = [] if keep_old else [
          state.available.pop(v) for v in sorted(set(state.available) - wanted)]
      for servable in retired:
        state.states[servable.version] = _status(State.UNLOADING)
    for servable in retired:  # New requests no longer see it; let in-flight ones finish.
      if not servable.wait_idle(self.unload_timeout):
        log.warning("%s version %d still busy after %.0f s; dropping it", servable.name,
                    servable.version, self.unload_timeout)
      with self._lock:
        state.states[servable.version] = _status(State.END)
      log.info("Unloaded %s version %d", servable.name, servable.version)

  # Lookup ----------------------------------------------------------------------------
  @contextlib.contextmanager
  def acquire(self, model_spec):
    """The servable for a ModelSpec, held (not unloaded) for the duration of the context."""
    name = model_spec.name
    if not name:
      raise invalid("Missing ModelSpec name")
    with self._lock:
      state = self._models.get(name)
      which = model_spec.WhichOneof("version_choice")
      if which == "version":
        version = model_spec.version.value
        servable = state.available.get(version) if state else None
        if servable is None:
          raise ServingError(grpc.StatusCode.NOT_FOUND,
                             f"Servable not found for request: Specific({name}, {version})")
      elif which == "version_label":
        label = model_spec.version_label
        if state is None:
          raise ServingError(grpc.StatusCode.NOT_FOUND,
                             f"Servable not found for request: Latest({name})")
        if label not in state.config.version_labels:
          raise invalid(f"Unrecognized servable version label: {label}")
        version = state.config.version_labels[label]
        servable = state.available.get(version)
        if servable is None:
          raise ServingError(grpc.StatusCode.NOT_FOUND,
                             f"Servable not found for request: Specific({name}, {version})")
      else:
        if not state or not state.available:
          raise ServingError(grpc.StatusCode.NOT_FOUND,
                             f"Servable not found for request: Latest({name})")
        servable = state.available[max(state.available)]
      servable.acquire_unlocked()  # Under the manager lock: it cannot be retired meanwhile.
    try:
      yield servable
    finally:
      servable.release()

  def status(self, model_spec):
    name = model_spec.name
    if not name:
      raise invalid("Missing ModelSpec name")
    with self._lock:
      state = self._models.get(name)
      if state is None or not state.states:
        raise ServingError(grpc.StatusCode.NOT_FOUND,
                           f"Could not find any versions of model {name}")
      states = dict(state.states)
      if model_spec.WhichOneof("version_choice") == "version_label":
        label = model_spec.version_label
        if label not in state.config.version_labels:
          raise invalid(f"Unrecognized servable version label: {label}")
        wanted = state.config.version_labels[label]
      elif model_spec.WhichOneof("version_choice") == "version":
        wanted = model_spec.version.value
      else:
        wanted = None
    if wanted is not None:
      if wanted not in states:
        raise ServingError(grpc.StatusCode.NOT_FOUND,
                           f"Could not find version {wanted} of model {name}")
      states = {wanted: states[wanted]}
    return sorted(states.items(), reverse=True)


# --- gRPC services ----------------------------------------------------------------------
def _model_spec(name, version, signature_name=None):
  spec = model_pb2.ModelSpec(name=name, version=wrappers_pb2.Int64Value(value=version))
  if signature_name:
    spec.signature_name = signature_name
  return spec


def _guarded(method):
  """Maps ServingError to its status; anything unexpected to INTERNAL (never crash)."""

  def wrapper(self, request, context):
    try:
      return method(self, request, context)
    except ServingError as e:
      error = e
    except Exception as e:  # pylint: disable=broad-except
      log.exception("Unexpected error in %s", method.__name__)
      error = ServingError(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")
    context.abort(error.code, error.message)

  wrapper.__name__ = method.__name__
  return wrapper


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):

  def __init__(self, manager):
    self.manager = manager

  @_guarded
  def Predict(self, request, context):
    with self.manager.acquire(request.model_spec) as servable:
      signature_name, outputs = servable.predict(request)
      response = predict_pb2.PredictResponse(
          model_spec=_model_spec(servable.name, servable.version, signature_name))
      for alias, array in outputs.items():
        response.outputs[alias].CopyFrom(tensors.to_tensor_proto(array))
      return response

  @_guarded
  def GetModelMetadata(self, request, context):
    fields = list(request.metadata_field)
    if not fields:
      raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
    for field in fields:
      if field != "signature_def":
        raise invalid(f"Metadata field {field} is not supported")
    with self.manager.acquire(request.model_spec) as servable:
      response = get_model_metadata_pb2.GetModelMetadataResponse(
          model_spec=_model_spec(servable.name, servable.version))
      signature_map = get_model_metadata_pb2.SignatureDefMap()
      for key, signature_def in servable.signature_defs.items():
        signature_map.signature_def[key].CopyFrom(signature_def)
      response.metadata["signature_def"].Pack(signature_map)
      return response

  @_guarded
  def Classify(self, request, context):
    """TF Serving's Classify: needs a signature whose method_name is .../classify."""
    with self.manager.acquire(request.model_spec) as servable:
      signature = servable.signature(request.model_spec.signature_name)
      if signature.method_name != CLASSIFY_METHOD:
        raise invalid(f"Expected classification signature method_name to be {CLASSIFY_METHOD}. "
                      f"Was: {signature.method_name}")
      kind = request.input.WhichOneof("kind")
      if kind == "example_list":
        examples = [e.SerializeToString() for e in request.input.example_list.examples]
      elif kind == "example_list_with_context":
        context_example = request.input.example_list_with_context.context
        examples = []
        for e in request.input.example_list_with_context.examples:
          merged = type(e)()
          merged.CopyFrom(context_example)
          merged.MergeFrom(e)
          examples.append(merged.SerializeToString())
      else:
        raise invalid("Input is empty")
      if not examples:
        raise invalid("Input is empty")
      if list(signature.inputs) != ["inputs"]:
        raise invalid("Classification signature must have exactly one input named 'inputs'")
      array = np.empty(len(examples), dtype=object)
      array[:] = examples
      outputs = signature.run({"inputs": array}, [k for k in ("classes", "scores")
                                                   if k in signature.outputs])
      response = classification_pb2.ClassificationResponse(
          model_spec=_model_spec(servable.name, servable.version, signature.key))
      scores = outputs.get("scores")
      classes = outputs.get("classes")
      rows = len(scores if scores is not None else classes)
      for i in range(rows):
        result = response.result.classifications.add()
        width = (scores if scores is not None else classes).shape[1]
        for j in range(width):
          entry = result.classes.add()
          if classes is not None:
            entry.label = classes[i, j].decode() if isinstance(classes[i, j], bytes) else str(
                classes[i, j])
          if scores is not None:
            entry.score = float(scores[i, j])
      return response

  @_guarded
  def Regress(self, request, context):
    raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                       "Regress is not implemented by the local server (use TF Serving).")

  @_guarded
  def MultiInference(self, request, context):
    raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                       "MultiInference is not implemented by the local server (use TF Serving).")


class ModelService(model_service_pb2_grpc.ModelServiceServicer):

  def __init__(self, manager):
    self.manager = manager

  @_guarded
  def GetModelStatus(self, request, context):
    response = get_model_status_pb2.GetModelStatusResponse()
    for version, (state, status) in self.manager.status(request.model_spec):
      response.model_version_status.add(version=version, state=state, status=status)
    return response

  @_guarded
  def HandleReloadConfigRequest(self, request, context):
    if request.config.WhichOneof("config") != "model_config_list":
      raise invalid("ServerCore config must be a model_config_list")
    try:
      self.manager.set_config(request.config)
    except ValueError as e:
      raise invalid(str(e)) from None
    self.manager.poll()
    return model_management_pb2.ReloadConfigResponse(
        status=status_pb2.StatusProto(error_code=error_codes_pb2.OK))


# --- running ------------------------------------------------------------------------------
class LocalServer:
  """The gRPC server and its model manager. `start()` loads the models, then listens."""

  def __init__(self, server_config, host="127.0.0.1", port=8500, poll_seconds=1.0,
               max_message_mb=64, threads=8, warmup=True):
    self.manager = ModelManager(server_config, poll_seconds=poll_seconds, warmup=warmup)
    limit = int(max_message_mb * 1024 * 1024)
    self.server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grpc"),
        options=[("grpc.max_send_message_length", limit),
                 ("grpc.max_receive_message_length", limit),
                 ("grpc.so_reuseport", 0)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(self.manager), self.server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(self.manager),
                                                             self.server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    self.port = self.server.add_insecure_port(address)
    if not self.port:
      raise OSError(f"Cannot bind {address}.")
    self.host = host

  @property
  def target(self):
    return f"{self.host}:{self.port}"

  def start(self):
    self.manager.start()
    self.server.start()
    return self

  def stop(self, grace=5.0):
    self.server.stop(grace).wait()
    self.manager.stop()


def server_config_from_flags(model_name=None, model_base_path=None, model_config_file=None):
  if model_config_file:
    if model_base_path:
      raise ValueError("Pass either --model_config_file or --model_base_path, not both.")
    config = config_lib.read_models_config(model_config_file)
    for model in config.model_config_list.config:
      if not model.base_path:
        raise ValueError(f"{model_config_file}: model {model.name!r} has no base_path.")
      model.base_path = os.path.abspath(model.base_path)  # Relative: to the working folder.
    return config
  if not model_base_path:
    raise ValueError("Pass --model_base_path=EXPORT_DIR/NAME (or --model_config_file).")
  base_path = os.path.abspath(model_base_path)
  name = model_name or os.path.basename(base_path.rstrip(os.sep))
  return model_server_config_pb2.ModelServerConfig(
      model_config_list=model_server_config_pb2.ModelConfigList(
          config=[config_lib.model_config(name, base_path)]))


def define_flags():
  from absl import flags

  flags.DEFINE_string("model_base_path", None, "EXPORT_DIR/NAME, holding version folders.")
  flags.DEFINE_string("model_name", None, "Model name (default: the base path's last folder).")
  flags.DEFINE_string("model_config_file", None, "A models.config (ModelServerConfig text).")
  flags.DEFINE_string("host", "127.0.0.1", "Address to bind (0.0.0.0 exposes the server).")
  flags.DEFINE_integer("port", 8500, "gRPC port (0: any free port, printed at start).")
  flags.DEFINE_float("file_system_poll_wait_seconds", 1.0, "Period of the version poller.")
  flags.DEFINE_integer("max_message_mb", 64, "Largest request/response message.")
  flags.DEFINE_integer("threads", 8, "gRPC worker threads (concurrent requests).")
  flags.DEFINE_boolean("warmup", True, "Replay assets.extra warm-up requests before serving.")


def main(argv):
  from absl import flags

  if len(argv) > 1:
    raise SystemExit(f"Unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  from absl import logging as absl_logging

  absl_logging.set_verbosity(absl_logging.WARNING)  # TF's loading chatter.
  log.setLevel(logging.INFO)  # Loads, swaps and unloads of versions.
  try:
    server_config = server_config_from_flags(f.model_name, f.model_base_path,
                                             f.model_config_file)
  except ValueError as e:
    raise SystemExit(str(e)) from None
  server = LocalServer(server_config, host=f.host, port=f.port,
                       poll_seconds=f.file_system_poll_wait_seconds,
                       max_message_mb=f.max_message_mb, threads=f.threads, warmup=f.warmup)
  server.start()
  done = threading.Event()
  for signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, lambda *_: done.set())
  print(f"Serving {', '.join(server.manager.model_names())} on {server.target} "
        f"(gRPC, TF Serving API)", flush=True)
  done.wait()
  server.stop()


if __name__ == "__main__":
  from absl import app

  define_flags()
  app.run(main)
