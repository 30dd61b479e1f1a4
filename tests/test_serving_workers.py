"""A version loaded in its own worker process: same outputs as in-process, unloading ends the process (so
its memory goes back), and a worker that dies fails its requests with INTERNAL instead of the server.
RSS per swap over 10 swaps under load is measured by `bench/serving.py --parts=swap`.
"""

import os
import signal
import sys

import grpc
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from atcon_tf.testing import tiny_cnn  # noqa: E402
from serving import export as export_lib  # noqa: E402
from serving.server import ServingError  # noqa: E402
from serving.server.servable import Servable  # noqa: E402
from tests.conftest import pixels  # noqa: E402


@pytest.mark.slow
def test_worker_process_serves_then_ends_with_its_version(tmp_path):
  path = export_lib.export_model(tiny_cnn(16, classes=4), str(tmp_path), "tiny", preprocessing="scale_0_1")
  local = Servable("tiny", 1, path)
  remote = Servable("tiny", 1, path, worker_process=True)
  assert remote.warm_up() == len(export_lib.SIGNATURES)
  x = pixels(3, seed=4)
  for key in ("serving_default", "predict"):
    signature = remote.signature(key)
    want = local.signature(key).run({"images": x}, sorted(signature.outputs))
    got = signature.run({"images": x}, sorted(signature.outputs))
    for alias in want:
      np.testing.assert_array_equal(got[alias], want[alias], alias)
  # A TensorFlow error inside the worker comes back as the same ServingError as in-process.
  with pytest.raises(ServingError) as info:
    remote.signature("predict_bytes").run(
      {"images_bytes": np.array([b"\xff\xd8\xffbroken"], object)}, ["class_ids"]
    )
  assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT and "predict_bytes" in info.value.message
  process = remote.worker.process
  assert process.is_alive() and process.pid != os.getpid()
  remote.unload()
  assert not process.is_alive() and process.exitcode == 0 and not remote.alive()

  dying = Servable("tiny", 2, path, worker_process=True)
  os.kill(dying.worker.pid, signal.SIGKILL)
  dying.worker.process.join(30)
  with pytest.raises(ServingError) as info:
    dying.signature("predict").run({"images": x}, ["class_ids"])
  assert info.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL)
  assert "worker process of tiny version 2" in info.value.message
  assert not dying.alive()  # the manager's poller then loads the version again
  dying.unload()


if __name__ == "__main__":
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
