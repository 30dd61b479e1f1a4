"""What the server serves as the model set and versions change under it: a ReloadConfig request
adds a model (with a version label), and a new version folder is picked up by the poller and
swapped in while clients send requests, with no failed request.

The server and its tiny export are conftest's session fixtures `serving_setup` and `serving_stubs`;
these tests change only the model "swap" and add "alias", which no other test asks for.
"""

import os
import sys
import threading
import time

import grpc
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tensorflow_serving.apis import model_management_pb2  # noqa: E402

import atcon_tf  # noqa: E402
from atcon_tf.testing import tiny_cnn  # noqa: E402
from serving import config as config_lib  # noqa: E402
from serving import export as export_lib  # noqa: E402
from serving.client import ServingClient, ServingError  # noqa: E402
from tests.conftest import (  # noqa: E402
  CLASSES,
  SIZE,
  assert_close,
  assert_serving,
  pixels,
  reference_outputs,
)


def test_reload_config_adds_a_model(serving_setup, serving_stubs):
  predictions, models = serving_stubs
  config = config_lib.models_config(
    [
      config_lib.model_config("tiny", os.path.join(serving_setup["export_dir"], "tiny")),
      config_lib.model_config("swap", os.path.join(serving_setup["export_dir"], "swap")),
      config_lib.model_config(
        "alias", os.path.join(serving_setup["export_dir"], "tiny"), version_labels={"stable": 1}
      ),
    ]
  )
  response = models.HandleReloadConfigRequest(
    model_management_pb2.ReloadConfigRequest(config=config), timeout=120
  )
  assert response.status.error_code == 0
  result = serving_setup["client"].predict(pixels(2), "alias", version_label="stable", signature="predict")
  assert result.model == "alias" and result.version == 1
  assert_serving(serving_setup)


@pytest.mark.slow
def test_hot_swap_during_requests_has_no_failures(serving_setup):
  """A new version folder appears while 4 clients send requests: all succeed, then v2 serves."""
  target, client = serving_setup["server"].target, serving_setup["client"]
  new_model = tiny_cnn(SIZE, classes=CLASSES, seed=1)
  x = pixels(2, seed=7)
  want = {
    1: reference_outputs(serving_setup["tapped"], x, "scale_0_1"),
    2: reference_outputs(atcon_tf.TappedModel(new_model), x, "scale_0_1"),
  }
  assert not np.allclose(want[1]["probabilities"], want[2]["probabilities"])
  stop, failures, versions = threading.Event(), [], []

  def worker():
    with ServingClient(target, timeout=60) as c:
      while not stop.is_set():
        try:
          result = c.predict(x, "swap")
          assert_close(result, want[result.version])
          versions.append(result.version)
        except Exception as e:  # pylint: disable=broad-except
          failures.append(repr(e))

  threads = [threading.Thread(target=worker) for _ in range(4)]
  for t in threads:
    t.start()
  try:
    time.sleep(0.5)
    path = export_lib.export_model(new_model, serving_setup["export_dir"], "swap", preprocessing="scale_0_1")
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
  assert_serving(serving_setup)


if __name__ == "__main__":
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
