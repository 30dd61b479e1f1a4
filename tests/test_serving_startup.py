"""The local server's lifecycle: misconfigurations stop it at once with one clear line and a non-zero exit
(not a server that logs "No versions found" every second, nor a traceback), and SIGTERM drains the requests
in flight, then exits 0.
"""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from serving import config as config_lib  # noqa: E402
from serving.server import LocalServer  # noqa: E402
from serving.server import startup  # noqa: E402
from serving.client import ServingClient, ServingError  # noqa: E402
from tests.conftest import REPO, ServerProcess, free_port, pixels  # noqa: E402


def _message(base_path):
  with pytest.raises(startup.StartupError) as info:
    startup.check_base_path("m", str(base_path))
  return str(info.value)


def test_base_path_problems_are_named(serving_setup, tmp_path):
  version = serving_setup["path"]
  assert "does not exist" in _message(tmp_path / "missing")
  (tmp_path / "empty").mkdir()
  assert "no versions under" in _message(tmp_path / "empty")
  assert "1/saved_model.pb" in _message(tmp_path / "empty")
  (tmp_path / "unfinished" / "1").mkdir(parents=True)  # a version folder without its SavedModel
  assert "no versions under" in _message(tmp_path / "unfinished")
  message = _message(version)
  assert "is a version folder" in message and os.path.dirname(version) in message
  startup.check_base_path("tiny", os.path.dirname(version))  # the right folder passes


def test_a_port_in_use_is_one_clear_error(serving_setup):
  used = int(serving_setup["server"].target.rsplit(":", 1)[1])
  config = config_lib.models_config([("tiny", os.path.dirname(serving_setup["path"]))])
  with pytest.raises(startup.StartupError) as info:
    LocalServer(config, port=used)
  assert f"cannot listen on 127.0.0.1:{used} for gRPC" in str(info.value)


@pytest.mark.slow
def test_the_command_exits_non_zero_with_one_line(serving_setup, tmp_path):
  copy = tmp_path / "exports" / "tiny" / "1"
  shutil.copytree(serving_setup["path"], copy)
  result = subprocess.run(
    [sys.executable, "-m", "serving.server", f"--model_base_path={copy}", "--port=0"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert result.returncode == 1, result.stderr
  assert lines == [
    f"ERROR: model 1: {copy} is a version folder (it holds saved_model.pb); pass its parent "
    f"{copy.parent} as the base path."
  ], result.stderr
  assert "Serving" not in result.stdout


@pytest.mark.slow
def test_sigterm_drains_requests_in_flight_and_exits_0(serving_setup, tmp_path):
  """Batching with a 1.5 s timeout holds requests in the queue; SIGTERM arrives while they wait."""
  import requests

  batching = config_lib.write_batching_parameters(
    str(tmp_path / "batching.txt"), max_batch_size=8, batch_timeout_micros=1_500_000
  )
  rest_port = free_port()
  server = ServerProcess(
    [
      f"--model_base_path={os.path.dirname(serving_setup['path'])}",
      f"--rest_api_port={rest_port}",
      f"--batching_parameters_file={batching}",
      "--nowarmup",
    ],
    str(tmp_path / "server.log"),
  )
  results = []

  def grpc_call():
    with ServingClient(server.target, timeout=60) as client:
      try:
        results.append(client.predict(pixels(1), "tiny", signature="predict")["probabilities"].shape)
      except ServingError as e:
        results.append(e.code)

  def rest_call():
    body = {"signature_name": "predict", "inputs": pixels(1).tolist()}
    answer = requests.post(f"http://127.0.0.1:{rest_port}/v1/models/tiny:predict", json=body, timeout=60)
    results.append(answer.status_code)

  threads = [threading.Thread(target=f) for f in (grpc_call, grpc_call, rest_call)]
  try:
    for t in threads:
      t.start()
    time.sleep(0.5)  # all three are waiting in the batch queue now
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    for t in threads:
      t.join(timeout=60)
    code = server.process.wait(timeout=60)
  finally:
    server.stop()
  assert sorted(map(str, results)) == ["(1, 4)", "(1, 4)", "200"], results
  assert code == 0, server.log()[-3000:]
  assert time.monotonic() - started < 30
  assert "draining those in flight" in server.log() and "Stopped (drained)" in server.log()


if __name__ == "__main__":
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
