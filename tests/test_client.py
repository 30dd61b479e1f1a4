"""The client library (`serving.client.ServingClient`) and its CLI (`python -m serving.client`):
clear errors (from the server, before sending, with no server at all), and the CLI's printed
classes and written overlays.

The server and its tiny export are conftest's session fixture `serving_setup`.
"""

import os
import socket
import subprocess
import sys

import grpc
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from PIL import Image  # noqa: E402

from serving import tensors  # noqa: E402
from serving.client import ServingClient, ServingError  # noqa: E402
from tests.conftest import CLASS_NAMES, REPO, SIZE, assert_serving, pixels, png  # noqa: E402

_GOOD = pixels(2)


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


def test_predictions_carry_the_served_class_names(serving_setup):
  client = serving_setup["client"]
  result = client.predict(pixels(2), "tiny")
  assert result.class_names == CLASS_NAMES  # the export's contract, over gRPC
  top = int(np.argmax(result["probabilities"][0]))
  assert result.class_name(top) == CLASS_NAMES[top] and result.class_name(7) == "7"
  assert client.class_names("tiny", version=result.version) == CLASS_NAMES
  assert ("tiny", result.version, None) in client._class_names_cache  # pylint: disable=protected-access
  encoded = client.predict([png(pixels(1)[0])], "tiny", class_ids=[1])
  assert encoded.class_names == CLASS_NAMES and encoded.class_name(encoded["class_ids"][0]) == "dog"
  assert client.predict(pixels(1), "tiny", with_class_names=False).class_names is None


class _PredictStub:
  """Predict answers like any server; GetModelMetadata fails with `error` (counted)."""

  def __init__(self, error):
    self.error = error
    self.metadata_calls = 0

  def Predict(self, request, timeout=None):  # noqa: N802 - gRPC's name
    from tensorflow_serving.apis import predict_pb2

    response = predict_pb2.PredictResponse()
    response.model_spec.name = request.model_spec.name
    response.model_spec.version.value = 3
    response.model_spec.signature_name = request.model_spec.signature_name
    response.outputs["probabilities"].CopyFrom(tensors.to_tensor_proto(np.full((1, 4), 0.25, np.float32)))
    return response

  def GetModelMetadata(self, request, timeout=None):  # noqa: N802 - gRPC's name
    self.metadata_calls += 1
    raise self.error


def test_servers_without_a_contract_give_no_class_names():
  # Real TF Serving: INVALID_ARGUMENT "not supported", asked once per model version.
  with ServingClient("127.0.0.1:1", timeout=1) as client:
    stub = _PredictStub(
      _RpcError(grpc.StatusCode.INVALID_ARGUMENT, "Metadata field atcon_contract is not supported")
    )
    client._predictions = stub  # pylint: disable=protected-access
    for _ in range(2):
      result = client.predict([png(pixels(1)[0])], "plain")
      assert result.class_names is None and result.class_name(2) == "2" and result.version == 3
    assert stub.metadata_calls == 1
  # A transient failure is not remembered.
  with ServingClient("127.0.0.1:1", timeout=1) as client:
    stub = _PredictStub(_RpcError(grpc.StatusCode.UNAVAILABLE, "connection reset"))
    client._predictions = stub  # pylint: disable=protected-access
    assert client.predict([png(pixels(1)[0])], "plain").class_names is None
    assert client.predict([png(pixels(1)[0])], "plain").class_names is None
    assert stub.metadata_calls == 2


def test_client_errors_are_clear(serving_setup, tmp_path):
  client = serving_setup["client"]
  with pytest.raises(ServingError) as info:
    client.predict(_GOOD, "nope")
  error = info.value
  assert error.code == grpc.StatusCode.NOT_FOUND
  assert "Latest(nope)" in error.details
  assert "model='nope'" in str(error) and serving_setup["server"].target in str(error)
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
    client.predict(pixels(3), "tiny", class_ids=[0, 1])
  # Responses bigger than the client's limit: RESOURCE_EXHAUSTED, with the limit in the hint.
  with ServingClient(serving_setup["server"].target, timeout=30, max_message_mb=0.01) as small:
    with pytest.raises(ServingError) as info:
      small.predict(pixels(16), "tiny", output_filter=["gradcam"])
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
  assert_serving(serving_setup)


def _client_cli(*args):
  """`python -m serving.client ARGS`, completed."""
  return subprocess.run(
    [sys.executable, "-m", "serving.client", *args],
    cwd=REPO,
    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    capture_output=True,
    text=True,
    timeout=120,
  )


@pytest.mark.slow
def test_client_cli_prints_classes_and_writes_overlays(serving_setup, tmp_path):
  images = []
  for i, (size, fmt) in enumerate([((SIZE, SIZE), "PNG"), ((40, 30), "JPEG")]):
    image = np.random.default_rng(i).integers(0, 256, size=(*size, 3), dtype=np.uint8)
    path = tmp_path / f"image{i}.{fmt.lower()}"
    path.write_bytes(png(image, fmt))
    images.append(str(path))
  out_dir = tmp_path / "overlays"
  target = serving_setup["server"].target
  result = _client_cli(f"--server={target}", "--model=tiny", f"--out_dir={out_dir}", "--top_k=2", *images)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "model tiny version 1 signature predict_bytes" in result.stdout
  for i, path in enumerate(images):
    assert f"{path}: " in result.stdout and "consistency" in result.stdout
    line = next(line for line in result.stdout.splitlines() if line.startswith(f"{path}: "))
    top = line[len(f"{path}: ") :].split(" | ")[0].split(", ")  # "dog 0.312, cat 0.301"
    assert len(top) == 2 and all(part.split()[0] in CLASS_NAMES for part in top), (
      line
    )  # names from the contract
    for key in ("gradcam", "guided_backprop"):
      written = out_dir / f"image{i}_{key}.png"
      with Image.open(written) as overlay:
        original = Image.open(path)
        assert overlay.size == original.size and overlay.mode == "RGB"
  labels = tmp_path / "labels.txt"
  labels.write_text("zero\none\ntwo\nthree\n")
  named = _client_cli(
    f"--server={target}", "--model=tiny", "--out_dir=", f"--labels={labels}", "--class_id=2", images[0]
  )
  assert named.returncode == 0, named.stderr[-3000:]
  assert "explained class two" in named.stdout  # --labels wins over the contract
  line = next(line for line in named.stdout.splitlines() if line.startswith(f"{images[0]}: "))
  top = line[len(f"{images[0]}: ") :].split(" | ")[0].split(", ")
  assert all(part.split()[0] in ("zero", "one", "two", "three") for part in top), line
  bad = _client_cli(f"--server={target}", "--model=nope", "--out_dir=", images[0])
  assert bad.returncode == 1 and "NOT_FOUND" in bad.stderr


if __name__ == "__main__":
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
