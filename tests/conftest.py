"""Shared test helpers: quiet TensorFlow, tiny pixel batches, and an eager reference of the served outputs.

The reference is built only from atcon_tf's primitive maps and the loss (no `maps.explain`, no serving
code), so it is an independent check of the fused paths that exports, evaluation and pictures use.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def pixels(batch, size=16, seed=0, channels=3):
  """Random raw pixels in [0, 255], float32 (B, size, size, channels)."""
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, size=(batch, size, size, channels)).astype(np.float32)


def reference_outputs(tapped, raw_images, preprocessing="scale_0_1", class_ids=None, mask_intensity=8.0):
  """NumPy outputs of `serving_default` (or `explain_class` when class_ids is given).

  `consistency` comes from `consistency_per_image` when every class is the top-1 one (the ATCON
  definition); for other classes it repeats the loss's steps for that class.
  """
  import tensorflow as tf

  from atcon_tf import maps
  from atcon_tf import preprocessing as preprocessing_lib
  from atcon_tf.losses import consistency_per_image
  from atcon_tf.losses.similarity import pearson_cost
  from atcon_tf.maps import processing

  x = tf.constant(preprocessing_lib.apply_numpy(raw_images, preprocessing))
  logits = tapped.logits(x)
  top1 = maps.top1_classes(logits).numpy()
  classes = top1 if class_ids is None else np.where(np.asarray(class_ids) >= 0, class_ids, top1)
  classes = tf.constant(classes.astype(np.int32))
  cam = maps.gradcam(tapped, x, classes, relu=True, shortcut=False)
  saliency = processing.channel_magnitude(maps.guided_backprop(tapped, x, classes))
  if np.array_equal(classes.numpy(), top1):
    costs = consistency_per_image(tapped, x, mask_intensity=mask_intensity, fused=False).costs
  else:
    raw_cam = maps.gradcam(tapped, x, classes, relu=False, shortcut=False).cam
    mask, _ = processing.soft_mask(saliency, mask_intensity)
    masked = maps.gradcam(tapped, x * mask[..., None], classes, relu=False, shortcut=False).cam
    costs = pearson_cost(raw_cam, masked)
  size = tf.shape(x)[1:3]
  return {
    "probabilities": tapped.probabilities(cam.logits).numpy(),
    "class_ids": classes.numpy(),
    "gradcam": processing.normalize_01(processing.resize_align_corners(cam.cam, size)).numpy(),
    "guided_backprop": processing.normalize_01(saliency).numpy(),
    "consistency": (-costs).numpy(),
  }


def reference_predict(tapped, raw_images, preprocessing="scale_0_1"):
  """NumPy outputs of the `predict` signature."""
  import tensorflow as tf

  from atcon_tf import maps
  from atcon_tf import preprocessing as preprocessing_lib

  x = tf.constant(preprocessing_lib.apply_numpy(raw_images, preprocessing))
  logits = tapped.logits(x)
  return {
    "probabilities": tapped.probabilities(logits).numpy(),
    "class_ids": maps.top1_classes(logits).numpy(),
  }


# --- the served tiny model ----------------------------------------------------------------
# The gRPC tests (test_serving_*.py, test_client.py) share one tiny export and one server for the
# whole session: `python -m serving.server` as a subprocess (its real CLI, a models.config with
# two models) so a crash would show as a dead process. The tests that change the server's state
# only touch the model "swap" and add the model "alias"; the others ask "tiny" (and "nope").
# Heavy imports stay inside the functions, so test files that use none of this do not pay for them.
import io  # noqa: E402
import select  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 16
CLASSES = 4
ATOL = 1e-5
MAX_MESSAGE_MB = 4
CLASS_NAMES = ["cat", "dog", "fox", "owl"]
EXPLAIN_KEYS = ("probabilities", "class_ids", "gradcam", "guided_backprop", "consistency")


def png(image, fmt="PNG"):
  """Pixels (H, W, 3) encoded as an image file's bytes (PNG, or another PIL format)."""
  from PIL import Image

  buffer = io.BytesIO()
  Image.fromarray(np.asarray(image, np.uint8)).save(buffer, fmt)
  return buffer.getvalue()


def assert_close(got, want, keys=EXPLAIN_KEYS):
  for key in keys:
    np.testing.assert_allclose(np.asarray(got[key]), want[key], atol=ATOL, err_msg=key)


class ServerProcess:
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


@pytest.fixture(scope="session")
def serving_setup(tmp_path_factory):
  """The running server over models "tiny" and "swap", a client to it, and the in-memory model."""
  import atcon_tf
  from atcon_tf.testing import tiny_cnn
  from serving import config as config_lib
  from serving import export as export_lib
  from serving.client import ServingClient

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
  server = ServerProcess(
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


@pytest.fixture(scope="session")
def serving_stubs(serving_setup):
  """Raw (PredictionService, ModelService) stubs to the server, for requests the client won't send."""
  import grpc
  from tensorflow_serving.apis import model_service_pb2_grpc
  from tensorflow_serving.apis import prediction_service_pb2_grpc

  channel = grpc.insecure_channel(
    serving_setup["server"].target,
    options=[("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)],
  )
  yield (
    prediction_service_pb2_grpc.PredictionServiceStub(channel),
    model_service_pb2_grpc.ModelServiceStub(channel),
  )
  channel.close()


def assert_serving(setup):
  """The server process is alive and answers a valid request."""
  assert setup["server"].alive(), setup["server"].log()[-3000:]
  result = setup["client"].predict(pixels(1), "tiny", signature="predict")
  assert result["probabilities"].shape == (1, CLASSES)


def smoke_config(tmp_path, data_dir, **overrides):
  """The `smoke` preset writing to tmp_path/run, quiet, no evaluation or pictures unless overridden."""
  from trainers import config as config_lib

  values = dict(workdir=str(tmp_path / "run"), data_dir=data_dir, evaluate=False, viz_every=0, verbose=0)
  values.update(overrides)
  return config_lib.preset("smoke", **values)


def read_history(path):
  """The rows of a Keras CSVLogger file."""
  import csv

  with open(path) as f:
    return list(csv.DictReader(f))


def free_port():
  """A TCP port free on 127.0.0.1 now (for servers that need the number before they start)."""
  import socket

  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="session")
def serving_rest(serving_setup):
  """A second server over the same "tiny" export (and "swap_rest", a copy) with gRPC and REST, dynamic
  batching from a batching_parameters.txt, and Prometheus metrics: {"grpc", "rest" (base URL), "server"}.

  It loads versions in its own process (--noworker_processes), so both loading modes run end to end
  (`serving_setup` uses the default worker processes), and its hot swap takes half the time."""
  from serving import config as config_lib
  from serving.client import ServingClient

  root = serving_setup["root"] / "rest"
  exports = os.path.join(serving_setup["export_dir"])
  shutil.copytree(serving_setup["path"], os.path.join(exports, "swap_rest", "1"))
  config_path = config_lib.write_models_config(
    str(root / "models.config"),
    [
      config_lib.model_config("tiny", os.path.join(exports, "tiny")),
      config_lib.model_config("swap_rest", os.path.join(exports, "swap_rest")),
    ],
  )
  batching = config_lib.write_batching_parameters(
    str(root / "batching_parameters.txt"),
    max_batch_size=8,
    batch_timeout_micros=5000,
    allowed_batch_sizes=[4, 8],
  )
  port = free_port()
  server = ServerProcess(
    [
      f"--model_config_file={config_path}",
      f"--rest_api_port={port}",
      "--enable_batching",
      f"--batching_parameters_file={batching}",
      "--noworker_processes",
      "--file_system_poll_wait_seconds=0.2",
      f"--max_message_mb={MAX_MESSAGE_MB}",
    ],
    str(root / "server.log"),
  )
  client = ServingClient(server.target, timeout=60, max_message_mb=64)
  yield {"server": server, "grpc": client, "rest": f"http://127.0.0.1:{port}", "root": root}
  client.close()
  server.stop()
