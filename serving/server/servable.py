"""One loaded SavedModel version (`BASE_PATH/VERSION/`) and the signatures it serves.

Requests name a `signature_name` (default `serving_default`) and may pass an `output_filter`;
an unknown signature is FAILED_PRECONDITION, as TF Serving's predict_util.cc. Before a version
is served, its warm-up requests (`assets.extra/tf_serving_warmup_requests`) are replayed.
"""

import collections
import os
import threading

import grpc
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2

from serving import export as export_lib
from serving.server import validation
from serving.server.validation import ServingError

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
MAX_WARMUP_RECORDS = 1000  # As TF Serving.

TensorSpec = collections.namedtuple("TensorSpec", ["dtype", "shape"])  # shape: None | tuple


def _spec(tensor_info):
  shape = None
  if not tensor_info.tensor_shape.unknown_rank:
    shape = tuple(None if d.size < 0 else int(d.size) for d in tensor_info.tensor_shape.dim)
  return TensorSpec(tensor_info.dtype, shape)


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

  def run(self, arrays, output_filter):
    if not callable(self.function):  # a WorkerProcess: the version lives in its own process
      return self.function.run(self.key, arrays, output_filter)
    feeds = {alias: tf.constant(array) for alias, array in arrays.items()}
    try:
      results = self.function(**feeds)
    except tf.errors.OpError as e:
      raise validation.tf_error(e, self.key) from None
    return {alias: results[alias].numpy() for alias in output_filter}


class Servable:
  """One loaded version of a model; counts its in-flight requests."""

  def __init__(self, name, version, path, worker_process=False):
    """worker_process: load the SavedModel in a child process (`worker.WorkerProcess`), not in this one."""
    self.name, self.version, self.path = name, version, path
    meta_graph = _serve_meta_graph(path)
    self.signature_defs = meta_graph.signature_def
    self.export_info = export_lib.read_export_info(path)
    self.worker = None
    if worker_process:
      from serving.server.worker import WorkerProcess

      self.worker = WorkerProcess(name, version, path)
      functions = {key: self.worker for key in self.signature_defs}
    else:
      self.loaded = tf.saved_model.load(path, tags=["serve"])
      functions = self.loaded.signatures
    self.signatures = {}
    for key, signature_def in self.signature_defs.items():
      if key.startswith("__"):
        continue
      function = functions.get(key)
      if function is not None:
        self.signatures[key] = Signature(key, signature_def, function, self.export_info)
    self._in_flight = 0
    self._idle = threading.Condition()
    self.on_unload = []  # callables run once the version is retired (e.g. the batcher's queues)

  def unload(self):
    """Releases what the version holds once no request uses it any more."""
    hooks, self.on_unload = self.on_unload, []
    for hook in hooks:
      hook()
    if self.worker is not None:
      self.worker.close()

  def alive(self):
    """False once its worker process died (then the manager loads the version again)."""
    return self.worker is None or self.worker.alive()

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
      raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, f"Serving signature key \"{key}\" not found.")
    return found

  def prepare(self, signature_name, proto_inputs, output_filter=()):
    """(signature, validated arrays, output aliases) for a request; ServingError if it is malformed.

    proto_inputs: alias -> TensorProto, or a function of the Signature that returns them (REST converts
    JSON with the signature's dtypes).
    """
    signature = self.signature(signature_name)
    if callable(proto_inputs):
      proto_inputs = proto_inputs(signature)
    arrays = validation.parse_inputs(signature, proto_inputs)  # TF Serving's order: inputs first.
    output_filter = validation.check_output_filter(signature, output_filter)
    if signature.method_name not in (PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD):
      raise ServingError(
        grpc.StatusCode.INTERNAL,
        f"Expected prediction signature method_name to be one of "
        f"{{{PREDICT_METHOD}, {CLASSIFY_METHOD}, {REGRESS_METHOD}}}. Was: "
        f"{signature.method_name}",
      )
    return signature, arrays, output_filter

  def predict(self, request):
    """(signature key, outputs) of a PredictRequest, run alone (warm-up; requests go through Dispatcher)."""
    signature, arrays, output_filter = self.prepare(
      request.model_spec.signature_name, request.inputs, request.output_filter
    )
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
