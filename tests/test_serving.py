"""The local TF-Serving-compatible server and the client, end to end over gRPC on loopback.

One tiny export serves the whole module; the server runs as a subprocess (its real CLI, a
models.config with two models) so a crash would show as a dead process.
"""

import io
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
import types

import grpc
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from PIL import Image  # noqa: E402
from google.protobuf import wrappers_pb2  # noqa: E402
from tensorflow_serving.apis import classification_pb2  # noqa: E402
from tensorflow_serving.apis import get_model_metadata_pb2  # noqa: E402
from tensorflow_serving.apis import get_model_status_pb2  # noqa: E402
from tensorflow_serving.apis import model_management_pb2  # noqa: E402
from tensorflow_serving.apis import model_pb2  # noqa: E402
from tensorflow_serving.apis import model_service_pb2_grpc  # noqa: E402
from tensorflow_serving.apis import predict_pb2  # noqa: E402
from tensorflow_serving.apis import prediction_service_pb2_grpc  # noqa: E402
from tensorflow_serving.apis import regression_pb2  # noqa: E402

import atcon_tf  # noqa: E402
from atcon_tf.contract import ServingContract  # noqa: E402
from atcon_tf.testing import tiny_cnn  # noqa: E402
from serving import config as config_lib  # noqa: E402
from serving import export as export_lib  # noqa: E402
from serving import tensors  # noqa: E402
from serving.client import ServingClient, ServingError  # noqa: E402
from tests.conftest import reference_outputs, reference_predict  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 16
CLASSES = 4
ATOL = 1e-5
MAX_MESSAGE_MB = 4
CLASS_NAMES = ["cat", "dog", "fox", "owl"]
EXPLAIN_KEYS = ("probabilities", "class_ids", "gradcam", "guided_backprop", "consistency")


def _pixels(batch, seed=0, size=SIZE, channels=3):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, size=(batch, size, size, channels)).astype(np.float32)


def _png(pixels, fmt="PNG"):
  buffer = io.BytesIO()
  Image.fromarray(np.asarray(pixels, np.uint8)).save(buffer, fmt)
  return buffer.getvalue()


def _assert_close(got, want, keys=EXPLAIN_KEYS):
  for key in keys:
    np.testing.assert_allclose(np.asarray(got[key]), want[key], atol=ATOL, err_msg=key)


class Server:
  """`python -m serving.server` in a subprocess; `target` once it printed its ready line."""

  def __init__(self, args, log_path):
    self.log_path = log_path
    self._log = open(log_path, "w")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    self.process = subprocess.Popen(
      [sys.executable, "-m", "serving.server", "--port=0", *args],
      cwd=REPO,
      env=env,
      stdout=subprocess.PIPE,
      stderr=self._log,
      text=True,
    )
    deadline = time.monotonic() + 180
    line = ""
    while time.monotonic() < deadline:
      ready, _, _ = select.select([self.process.stdout], [], [], 1.0)
      if ready:
        line = self.process.stdout.readline()
        if line.startswith("Serving ") or not line:
          break
      if self.process.poll() is not None:
        break
    if not line.startswith("Serving "):
      self.stop()
      raise RuntimeError(f"Server did not start: {line!r}\n{self.log()[-3000:]}")
    self.target = line.split(" on ", 1)[1].split()[0]

  def alive(self):
    return self.process.poll() is None

  def log(self):
    with open(self.log_path) as f:
      return f.read()

  def stop(self):
    if self.process.poll() is None:
      self.process.terminate()
      try:
        self.process.wait(timeout=20)
      except subprocess.TimeoutExpired:
        self.process.kill()
        self.process.wait()
    self._log.close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp("serving")
  export_dir = str(root / "exports")
  model = tiny_cnn(SIZE, classes=CLASSES)
  path = export_lib.export_model(
    model, export_dir, "tiny", preprocessing="scale_0_1", class_names=CLASS_NAMES
  )
  # A second model name over a copy of the same export, for the hot-swap test.
  shutil.copytree(path, os.path.join(export_dir, "swap", "1"))
  config_path = config_lib.write_models_config(
    str(root / "models.config"),
    [
      config_lib.model_config("tiny", os.path.join(export_dir, "tiny")),
      config_lib.model_config("swap", os.path.join(export_dir, "swap"), num_versions=1),
    ],
  )
  server = Server(
    [
      f"--model_config_file={config_path}",
      "--file_system_poll_wait_seconds=0.2",
      f"--max_message_mb={MAX_MESSAGE_MB}",
      "--threads=8",
    ],
    str(root / "server.log"),
  )
  client = ServingClient(server.target, timeout=60, max_message_mb=64)
  yield {
    "server": server,
    "client": client,
    "model": model,
    "path": path,
    "tapped": atcon_tf.TappedModel(model),
    "export_dir": export_dir,
    "root": root,
  }
  client.close()
  server.stop()


@pytest.fixture(scope="module")
def stubs(setup):
  channel = grpc.insecure_channel(
    setup["server"].target,
    options=[("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)],
  )
  yield (
    prediction_service_pb2_grpc.PredictionServiceStub(channel),
    model_service_pb2_grpc.ModelServiceStub(channel),
  )
  channel.close()


def _assert_serving(setup):
  """The server process is alive and answers a valid request."""
  assert setup["server"].alive(), setup["server"].log()[-3000:]
  result = setup["client"].predict(_pixels(1), "tiny", signature="predict")
  assert result["probabilities"].shape == (1, CLASSES)


# --- correctness --------------------------------------------------------------------------
def test_maps_over_grpc_equal_in_process_model(setup):
  client, tapped = setup["client"], setup["tapped"]
  x = _pixels(3, seed=1)
  want = reference_outputs(tapped, x, "scale_0_1")
  result = client.predict(x, "tiny")
  assert (result.model, result.version, result.signature) == ("tiny", 1, "serving_default")
  _assert_close(result, want)
  _assert_close(
    client.predict(x, "tiny", signature="predict"),
    reference_predict(tapped, x, "scale_0_1"),
    keys=("probabilities", "class_ids"),
  )
  class_ids = np.array([2, -1, 0], np.int32)
  explained = client.predict(x, "tiny", class_ids=class_ids)
  assert explained.signature == "explain_class"
  _assert_close(explained, reference_outputs(tapped, x, "scale_0_1", class_ids=class_ids))
  # Encoded images (bytes and a path) -> predict_bytes, decoded in the graph.
  path = setup["root"] / "one.png"
  path.write_bytes(_png(x[1]))
  encoded = client.predict([_png(x[0]), str(path)], "tiny")
  assert encoded.signature == "predict_bytes"
  _assert_close(encoded, {k: v[:2] for k, v in want.items()})
  # uint8 arrays are cast to the signature's dtype (float32) by the client.
  _assert_close(client.predict(x.astype(np.uint8), "tiny", version=1), want)
  filtered = client.predict(x, "tiny", output_filter=["gradcam", "consistency"])
  assert set(filtered) == {"gradcam", "consistency"}
  _assert_close(filtered, want, keys=("gradcam", "consistency"))


def test_metadata_and_status(setup, stubs):
  client = setup["client"]
  metadata = client.metadata("tiny")
  assert metadata["model"] == "tiny" and metadata["version"] == 1
  signatures = metadata["signatures"]
  assert {"serving_default", "predict", "predict_bytes", "explain_class", "explain_class_bytes"} <= set(
    signatures
  )
  assert signatures["serving_default"]["inputs"] == {
    "images": {"dtype": "float32", "shape": [None, SIZE, SIZE, 3]}
  }
  assert signatures["predict_bytes"]["inputs"] == {"images_bytes": {"dtype": "string", "shape": [None]}}
  assert set(signatures["serving_default"]["outputs"]) == set(EXPLAIN_KEYS)
  assert set(signatures["predict"]["outputs"]) == {"probabilities", "class_ids"}
  assert signatures["explain_class"]["inputs"]["class_ids"] == {"dtype": "int32", "shape": [None]}
  assert signatures["serving_default"]["method"] == "tensorflow/serving/predict"
  assert client.status("tiny") == [{"version": 1, "state": "AVAILABLE", "error_code": 0, "error_message": ""}]
  assert client.status("tiny", version=1)[0]["state"] == "AVAILABLE"
  # The raw response is TF Serving's: an Any holding a SignatureDefMap.
  response = stubs[0].GetModelMetadata(
    get_model_metadata_pb2.GetModelMetadataRequest(
      model_spec=model_pb2.ModelSpec(name="tiny"), metadata_field=["signature_def"]
    ),
    timeout=30,
  )
  signature_map = get_model_metadata_pb2.SignatureDefMap()
  assert response.metadata["signature_def"].Unpack(signature_map)
  assert "predict_bytes" in signature_map.signature_def


def test_contract_over_grpc_is_the_exported_one(setup, stubs):
  """GetModelMetadata's "atcon_contract": what the export recorded, without reading its files."""
  contract = setup["client"].contract("tiny")
  assert contract["preprocessing"] == "scale_0_1"
  assert contract["target_layer"] == "features"  # tiny_cnn's last spatial layer
  assert contract["image_size"] == [SIZE, SIZE]
  assert contract["class_names"] == CLASS_NAMES
  assert contract["multi_label"] is False
  assert ServingContract.from_json(contract) == export_lib.load_contract(setup["path"])
  assert setup["client"].contract("tiny", version=1) == contract
  # Raw: both fields in one request, the contract a JSON StringValue inside the Any.
  response = stubs[0].GetModelMetadata(
    get_model_metadata_pb2.GetModelMetadataRequest(
      model_spec=model_pb2.ModelSpec(name="tiny"), metadata_field=["signature_def", "atcon_contract"]
    ),
    timeout=30,
  )
  value = wrappers_pb2.StringValue()
  assert response.metadata["atcon_contract"].Unpack(value)
  assert json.loads(value.value) == contract
  assert response.metadata["signature_def"].Unpack(get_model_metadata_pb2.SignatureDefMap())
  # signature_def alone answers signature_def alone, as TF Serving does.
  response = stubs[0].GetModelMetadata(
    get_model_metadata_pb2.GetModelMetadataRequest(
      model_spec=model_pb2.ModelSpec(name="tiny"), metadata_field=["signature_def"]
    ),
    timeout=30,
  )
  assert set(response.metadata) == {"signature_def"}


class _RpcError(grpc.RpcError):
  def __init__(self, code, details):
    super().__init__()
    self._code, self._details = code, details

  def code(self):
    return self._code

  def details(self):
    return self._details


class _Stub:
  """A PredictionService stub whose GetModelMetadata fails as a given server would."""

  def __init__(self, error):
    self.error = error

  def GetModelMetadata(self, request, timeout=None):  # noqa: N802 - gRPC's name
    assert list(request.metadata_field) == ["atcon_contract"]
    raise self.error


@pytest.mark.parametrize(
  "code,details,hint",
  [
    # Real TF Serving's answer (get_model_metadata_impl.cc) to a field it does not know.
    (
      grpc.StatusCode.INVALID_ARGUMENT,
      "Metadata field atcon_contract is not supported",
      "real TF Serving only serves the 'signature_def' metadata field",
    ),
    # The local server, for an export without a contract.
    (
      grpc.StatusCode.FAILED_PRECONDITION,
      "Model old version 1 records no ATCON contract",
      "this export records no contract",
    ),
  ],
)
def test_client_contract_errors_name_the_info_file(code, details, hint):
  with ServingClient("127.0.0.1:1", timeout=1) as client:
    client._predictions = _Stub(_RpcError(code, details))  # pylint: disable=protected-access
    with pytest.raises(ServingError) as info:
      client.contract("old")
  assert info.value.code == code and details in str(info.value)
  assert hint in str(info.value) and "assets.extra/atcon_serving.json" in str(info.value)


def test_server_refuses_the_contract_of_an_export_without_one():
  from serving.server import services

  servable = types.SimpleNamespace(name="old", version=3, export_info={"num_classes": 4})
  with pytest.raises(services.ServingError) as info:
    services._contract(servable)  # pylint: disable=protected-access
  assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
  assert "Model old version 3 records no ATCON contract" in info.value.message
  assert "assets.extra/atcon_serving.json" in info.value.message


# --- malformed requests -------------------------------------------------------------------
def _request(
  inputs, model="tiny", signature="serving_default", version=None, output_filter=(), version_label=None
):
  spec = model_pb2.ModelSpec(name=model, signature_name=signature)
  if version is not None:
    spec.version.CopyFrom(wrappers_pb2.Int64Value(value=version))
  if version_label is not None:
    spec.version_label = version_label
  request = predict_pb2.PredictRequest(model_spec=spec, output_filter=list(output_filter))
  for key, value in inputs.items():
    request.inputs[key].CopyFrom(
      value if isinstance(value, tensors.tensor_pb2.TensorProto) else tensors.to_tensor_proto(value)
    )
  return request


def _truncated_tensor():
  proto = tensors.to_tensor_proto(_pixels(2))
  proto.tensor_content = proto.tensor_content[:-4]
  return proto


_GOOD = _pixels(2)
_PNG = _png(_GOOD[0])
_CASES = {
  # name: (request builder, expected code, substring of the details)
  "wrong_dtype_uint8": (
    lambda: _request({"images": _GOOD.astype(np.uint8)}),
    grpc.StatusCode.INVALID_ARGUMENT,
    "dtype uint8",
  ),
  "wrong_dtype_string": (
    lambda: _request({"images": [b"abc", b"def"]}),
    grpc.StatusCode.INVALID_ARGUMENT,
    "dtype string",
  ),
  "wrong_dtype_class_ids_int64": (
    lambda: _request({"images": _GOOD, "class_ids": np.array([0, 1], np.int64)}, signature="explain_class"),
    grpc.StatusCode.INVALID_ARGUMENT,
    "dtype int64",
  ),
  "wrong_rank_3d": (lambda: _request({"images": _GOOD[0]}), grpc.StatusCode.INVALID_ARGUMENT, "rank 3"),
  "wrong_rank_5d": (lambda: _request({"images": _GOOD[None]}), grpc.StatusCode.INVALID_ARGUMENT, "rank 5"),
  "wrong_rank_bytes_2d": (
    lambda: _request({"images_bytes": np.array([[_PNG]], object)}, signature="predict_bytes"),
    grpc.StatusCode.INVALID_ARGUMENT,
    "rank 2",
  ),
  "wrong_height_width": (
    lambda: _request({"images": _pixels(2, size=SIZE + 1)}),
    grpc.StatusCode.INVALID_ARGUMENT,
    "dimension 1 must be 16",
  ),
  "wrong_channels": (
    lambda: _request({"images": _pixels(2, channels=1)}),
    grpc.StatusCode.INVALID_ARGUMENT,
    "dimension 3 must be 3",
  ),
  "missing_input": (
    lambda: _request({"images": _GOOD}, signature="explain_class"),
    grpc.StatusCode.INVALID_ARGUMENT,
    "Missing but required: {class_ids}",
  ),
  "no_inputs": (
    lambda: _request({}),
    grpc.StatusCode.INVALID_ARGUMENT,
    "input size does not match signature",
  ),
  "unknown_input_name": (
    lambda: _request({"pixels": _GOOD}),
    grpc.StatusCode.INVALID_ARGUMENT,
    "input tensor alias not found in signature: pixels",
  ),
  "extra_input": (
    lambda: _request({"images": _GOOD, "class_ids": np.zeros(2, np.int32)}),
    grpc.StatusCode.INVALID_ARGUMENT,
    "Sent extra: {class_ids}",
  ),
  "undecodable_bytes": (
    lambda: _request({"images_bytes": [b"definitely not an image"]}, signature="predict_bytes"),
    grpc.StatusCode.INVALID_ARGUMENT,
    "not a JPEG, PNG",
  ),
  "truncated_png": (
    lambda: _request({"images_bytes": [_PNG[:60]]}, signature="predict_bytes"),
    grpc.StatusCode.INVALID_ARGUMENT,
    "PNG",
  ),
  "truncated_jpeg": (
    lambda: _request({"images_bytes": [_png(_GOOD[0], "JPEG")[:40]]}, signature="predict_bytes"),
    grpc.StatusCode.INVALID_ARGUMENT,
    "JPEG",
  ),
  "empty_bytes": (
    lambda: _request({"images_bytes": [b""]}, signature="predict_bytes"),
    grpc.StatusCode.INVALID_ARGUMENT,
    "is empty",
  ),
  "unknown_model": (
    lambda: _request({"images": _GOOD}, model="nope"),
    grpc.StatusCode.NOT_FOUND,
    "Servable not found for request: Latest(nope)",
  ),
  "unknown_version": (
    lambda: _request({"images": _GOOD}, version=7),
    grpc.StatusCode.NOT_FOUND,
    "Specific(tiny, 7)",
  ),
  "unknown_version_label": (
    lambda: _request({"images": _GOOD}, version_label="canary"),
    grpc.StatusCode.INVALID_ARGUMENT,
    "version label: canary",
  ),
  "missing_model_name": (
    lambda: _request({"images": _GOOD}, model=""),
    grpc.StatusCode.INVALID_ARGUMENT,
    "Missing ModelSpec name",
  ),
  # TF Serving answers FAILED_PRECONDITION here (predict_util.cc), and so does this server.
  "unknown_signature": (
    lambda: _request({"images": _GOOD}, signature="explain_everything"),
    grpc.StatusCode.FAILED_PRECONDITION,
    'Serving signature key "explain_everything" not found',
  ),
  "bad_output_filter": (
    lambda: _request({"images": _GOOD}, output_filter=["heatmap"]),
    grpc.StatusCode.INVALID_ARGUMENT,
    "output tensor alias not found",
  ),
  "duplicate_output_filter": (
    lambda: _request({"images": _GOOD}, output_filter=["gradcam", "gradcam"]),
    grpc.StatusCode.INVALID_ARGUMENT,
    "duplicate output tensor alias",
  ),
  "empty_batch": (
    lambda: _request({"images": np.zeros((0, SIZE, SIZE, 3), np.float32)}),
    grpc.StatusCode.INVALID_ARGUMENT,
    "empty batch",
  ),
  "empty_bytes_batch": (
    lambda: _request({"images_bytes": np.zeros((0,), object)}, signature="predict_bytes"),
    grpc.StatusCode.INVALID_ARGUMENT,
    "empty batch",
  ),
  "batch_size_mismatch": (
    lambda: _request({"images": _GOOD, "class_ids": np.zeros(3, np.int32)}, signature="explain_class"),
    grpc.StatusCode.INVALID_ARGUMENT,
    "different batch sizes",
  ),
  "class_id_too_large": (
    lambda: _request(
      {"images": _GOOD, "class_ids": np.array([0, CLASSES], np.int32)}, signature="explain_class"
    ),
    grpc.StatusCode.INVALID_ARGUMENT,
    "out of range",
  ),
  "class_id_negative": (
    lambda: _request({"images": _GOOD, "class_ids": np.array([-2, 0], np.int32)}, signature="explain_class"),
    grpc.StatusCode.INVALID_ARGUMENT,
    "out of range",
  ),
  "malformed_tensor_content": (
    lambda: _request({"images": _truncated_tensor()}),
    grpc.StatusCode.INVALID_ARGUMENT,
    "tensor parsing error",
  ),
  "message_too_large": (
    lambda: _request(
      {"images": _pixels(int(MAX_MESSAGE_MB * 1.2 * 2**20 // (SIZE * SIZE * 12)))}, signature="predict"
    ),
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    "",
  ),
}


@pytest.mark.parametrize("case", sorted(_CASES))
def test_malformed_predict_is_rejected_and_server_keeps_serving(setup, stubs, case):
  build, code, details = _CASES[case]
  with pytest.raises(grpc.RpcError) as info:
    stubs[0].Predict(build(), timeout=60)
  assert info.value.code() == code, info.value.details()
  assert details in info.value.details()
  _assert_serving(setup)


def test_malformed_metadata_status_and_classify(setup, stubs):
  predictions, models = stubs
  cases = [
    (
      lambda: predictions.GetModelMetadata(
        get_model_metadata_pb2.GetModelMetadataRequest(model_spec=model_pb2.ModelSpec(name="tiny")),
        timeout=30,
      ),
      grpc.StatusCode.INVALID_ARGUMENT,
      "metadata_field",
    ),
    (
      lambda: predictions.GetModelMetadata(
        get_model_metadata_pb2.GetModelMetadataRequest(
          model_spec=model_pb2.ModelSpec(name="tiny"), metadata_field=["weights"]
        ),
        timeout=30,
      ),
      grpc.StatusCode.INVALID_ARGUMENT,
      "not supported",
    ),
    (
      lambda: predictions.GetModelMetadata(
        get_model_metadata_pb2.GetModelMetadataRequest(
          model_spec=model_pb2.ModelSpec(name="nope"), metadata_field=["signature_def"]
        ),
        timeout=30,
      ),
      grpc.StatusCode.NOT_FOUND,
      "nope",
    ),
    (
      lambda: models.GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec=model_pb2.ModelSpec(name="nope")), timeout=30
      ),
      grpc.StatusCode.NOT_FOUND,
      "Could not find any versions of model nope",
    ),
    (
      lambda: models.GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(
          model_spec=model_pb2.ModelSpec(name="tiny", version=wrappers_pb2.Int64Value(value=9))
        ),
        timeout=30,
      ),
      grpc.StatusCode.NOT_FOUND,
      "Could not find version 9 of model tiny",
    ),
    # Classify needs a classification signature; the exports have predict signatures only.
    (
      lambda: predictions.Classify(
        classification_pb2.ClassificationRequest(model_spec=model_pb2.ModelSpec(name="tiny")), timeout=30
      ),
      grpc.StatusCode.INVALID_ARGUMENT,
      "Expected classification signature",
    ),
    (
      lambda: predictions.Regress(
        regression_pb2.RegressionRequest(model_spec=model_pb2.ModelSpec(name="tiny")), timeout=30
      ),
      grpc.StatusCode.UNIMPLEMENTED,
      "Regress",
    ),
  ]
  for call, code, details in cases:
    with pytest.raises(grpc.RpcError) as info:
      call()
    assert info.value.code() == code, info.value.details()
    assert details in info.value.details()
  _assert_serving(setup)


# --- client -------------------------------------------------------------------------------
def test_client_errors_are_clear(setup, tmp_path):
  client = setup["client"]
  with pytest.raises(ServingError) as info:
    client.predict(_GOOD, "nope")
  error = info.value
  assert error.code == grpc.StatusCode.NOT_FOUND
  assert "Latest(nope)" in error.details
  assert "model='nope'" in str(error) and setup["server"].target in str(error)
  assert "NOT_FOUND" in str(error) and "hint" in str(error)

  # Shapes are checked against the signature before sending (TF Serving would not check).
  with pytest.raises(
    ValueError,
    match=r"shape \[16, 16, 3\] do not fit signature "
    r"'serving_default', which takes \[\?, 16, 16, 3\]",
  ):
    client.predict(_GOOD[0], "tiny")
  with pytest.raises(ValueError, match="empty batch"):
    client.predict(np.zeros((0, SIZE, SIZE, 3), np.float32), "tiny")
  with pytest.raises(ServingError, match="FAILED_PRECONDITION.*signature"):
    client.predict(_GOOD, "tiny", signature="nope")
  with pytest.raises(FileNotFoundError, match="missing.png"):
    client.predict([str(tmp_path / "missing.png")], "tiny")
  with pytest.raises(ValueError, match="class_ids"):
    client.predict(_pixels(3), "tiny", class_ids=[0, 1])
  # Responses bigger than the client's limit: RESOURCE_EXHAUSTED, with the limit in the hint.
  with ServingClient(setup["server"].target, timeout=30, max_message_mb=0.01) as small:
    with pytest.raises(ServingError) as info:
      small.predict(_pixels(16), "tiny", output_filter=["gradcam"])
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_message_mb=0.01" in str(info.value)
  # No server at all: UNAVAILABLE, naming the target.
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  with ServingClient(f"127.0.0.1:{port}", timeout=3) as nowhere:
    with pytest.raises(ServingError) as info:
      nowhere.status("tiny")
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    assert f"127.0.0.1:{port}" in str(info.value) and "is a model server running" in str(info.value)
  _assert_serving(setup)


@pytest.mark.slow
def test_client_cli_prints_classes_and_writes_overlays(setup, tmp_path):
  images = []
  for i, (size, fmt) in enumerate([((SIZE, SIZE), "PNG"), ((40, 30), "JPEG")]):
    pixels = np.random.default_rng(i).integers(0, 256, size=(*size, 3), dtype=np.uint8)
    path = tmp_path / f"image{i}.{fmt.lower()}"
    path.write_bytes(_png(pixels, fmt))
    images.append(str(path))
  out_dir = tmp_path / "overlays"
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "serving.client",
      f"--server={setup['server'].target}",
      "--model=tiny",
      f"--out_dir={out_dir}",
      "--top_k=2",
      *images,
    ],
    cwd=REPO,
    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert "model tiny version 1 signature predict_bytes" in result.stdout
  for i, path in enumerate(images):
    assert f"{path}: " in result.stdout and "consistency" in result.stdout
    for key in ("gradcam", "guided_backprop"):
      written = out_dir / f"image{i}_{key}.png"
      with Image.open(written) as overlay:
        original = Image.open(path)
        assert overlay.size == original.size and overlay.mode == "RGB"
  bad = subprocess.run(
    [
      sys.executable,
      "-m",
      "serving.client",
      f"--server={setup['server'].target}",
      "--model=nope",
      "--out_dir=",
      images[0],
    ],
    cwd=REPO,
    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert bad.returncode == 1 and "NOT_FOUND" in bad.stderr


# --- concurrency and hot swap -------------------------------------------------------------
def test_eight_concurrent_clients(setup):
  target, tapped = setup["server"].target, setup["tapped"]
  inputs = [_pixels(2, seed=100 + i) for i in range(8)]
  expected = [reference_outputs(tapped, x, "scale_0_1") for x in inputs]
  failures, done = [], []

  def worker(i):
    with ServingClient(target, timeout=60) as client:
      for j in range(6):
        signature = ("serving_default", "predict", "predict_bytes")[j % 3]
        try:
          if signature == "predict_bytes":
            result = client.predict([_png(p) for p in inputs[i]], "tiny")
          else:
            result = client.predict(inputs[i], "tiny", signature=signature)
          keys = ("probabilities", "class_ids") if signature == "predict" else EXPLAIN_KEYS
          _assert_close(result, expected[i], keys=keys)
          done.append(1)
        except Exception as e:  # pylint: disable=broad-except
          failures.append(f"client {i} request {j}: {e!r}")

  threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(timeout=300)
  assert not failures, failures[:5]
  assert len(done) == 48
  _assert_serving(setup)


def test_reload_config_adds_a_model(setup, stubs):
  predictions, models = stubs
  config = config_lib.models_config(
    [
      config_lib.model_config("tiny", os.path.join(setup["export_dir"], "tiny")),
      config_lib.model_config("swap", os.path.join(setup["export_dir"], "swap")),
      config_lib.model_config(
        "alias", os.path.join(setup["export_dir"], "tiny"), version_labels={"stable": 1}
      ),
    ]
  )
  response = models.HandleReloadConfigRequest(
    model_management_pb2.ReloadConfigRequest(config=config), timeout=120
  )
  assert response.status.error_code == 0
  result = setup["client"].predict(_GOOD, "alias", version_label="stable", signature="predict")
  assert result.model == "alias" and result.version == 1
  _assert_serving(setup)


@pytest.mark.slow
def test_hot_swap_during_requests_has_no_failures(setup):
  """A new version folder appears while 4 clients send requests: all succeed, then v2 serves."""
  target, client = setup["server"].target, setup["client"]
  new_model = tiny_cnn(SIZE, classes=CLASSES, seed=1)
  x = _pixels(2, seed=7)
  want = {
    1: reference_outputs(setup["tapped"], x, "scale_0_1"),
    2: reference_outputs(atcon_tf.TappedModel(new_model), x, "scale_0_1"),
  }
  assert not np.allclose(want[1]["probabilities"], want[2]["probabilities"])
  stop, failures, versions = threading.Event(), [], []

  def worker():
    with ServingClient(target, timeout=60) as c:
      while not stop.is_set():
        try:
          result = c.predict(x, "swap")
          _assert_close(result, want[result.version])
          versions.append(result.version)
        except Exception as e:  # pylint: disable=broad-except
          failures.append(repr(e))

  threads = [threading.Thread(target=worker) for _ in range(4)]
  for t in threads:
    t.start()
  try:
    time.sleep(0.5)
    path = export_lib.export_model(new_model, setup["export_dir"], "swap", preprocessing="scale_0_1")
    assert path.endswith(os.path.join("swap", "2"))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
      states = {s["version"]: s["state"] for s in client.status("swap")}
      if states.get(2) == "AVAILABLE" and states.get(1) == "END" and versions[-8:] == [2] * 8:
        break
      time.sleep(0.1)
  finally:
    stop.set()
    for t in threads:
      t.join(timeout=120)
  assert not failures, failures[:5]
  assert states == {1: "END", 2: "AVAILABLE"}, states
  assert 1 in versions and versions[-1] == 2
  assert client.predict(x, "swap").version == 2
  with pytest.raises(ServingError) as info:
    client.predict(x, "swap", version=1)
  assert info.value.code == grpc.StatusCode.NOT_FOUND
  _assert_serving(setup)


if __name__ == "__main__":
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
