"""Dynamic batching on a real loaded version (in this process): merged and padded batches give each request
its own outputs, a full queue answers UNAVAILABLE, and a bad request in a merged batch fails alone.
"""

import os
import sys
import threading

import grpc
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from atcon_tf.testing import tiny_cnn  # noqa: E402
from serving import config as config_lib  # noqa: E402
from serving import export as export_lib  # noqa: E402
from serving.server import ServingError  # noqa: E402
from serving.server.batching import Batcher, BatchingParameters  # noqa: E402
from serving.server.metrics import Metrics  # noqa: E402
from serving.server.servable import Servable  # noqa: E402
from tests.conftest import pixels, png  # noqa: E402


@pytest.fixture(scope="module")
def servable(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("exports"))
  path = export_lib.export_model(
    tiny_cnn(16, classes=4), root, "tiny", preprocessing="scale_0_1", warmup=False
  )
  return Servable("tiny", 1, path)


def _run_concurrently(batcher, servable, signature, requests):
  results, errors = [None] * len(requests), [None] * len(requests)

  def one(i):
    try:
      results[i] = batcher.run(servable, signature, requests[i], sorted(signature.outputs))
    except ServingError as e:
      errors[i] = e

  threads = [threading.Thread(target=one, args=(i,)) for i in range(len(requests))]
  for t in threads:
    t.start()
  for t in threads:
    t.join(timeout=120)
  return results, errors


def test_parameters_are_read_from_the_file_serving_config_writes(tmp_path):
  path = config_lib.write_batching_parameters(
    str(tmp_path / "b.txt"),
    max_batch_size=8,
    batch_timeout_micros=1000,
    num_batch_threads=2,
    allowed_batch_sizes=[2, 8],
  )
  assert BatchingParameters.from_file(path) == BatchingParameters(8, 1000, 100, 2, (2, 8))
  (tmp_path / "bad.txt").write_text("max_batch_size { value: 8 }\nallowed_batch_sizes: 4\n")
  with pytest.raises(ValueError, match="allowed_batch_sizes must increase and end with max_batch_size"):
    BatchingParameters.from_file(str(tmp_path / "bad.txt"))


def test_merged_and_padded_batches_give_each_request_its_outputs(servable):
  signature = servable.signature("serving_default")
  params = BatchingParameters(
    max_batch_size=8, batch_timeout_micros=200_000, num_batch_threads=1, allowed_batch_sizes=(4, 8)
  )
  metrics = Metrics()
  batcher = Batcher(params, metrics)
  requests = [{"images": pixels(1 + i % 2, seed=i)} for i in range(5)]  # 7 examples: merged, padded to 8
  alone = [signature.run(r, sorted(signature.outputs)) for r in requests]
  results, errors = _run_concurrently(batcher, servable, signature, requests)
  assert errors == [None] * 5
  for got, want in zip(results, alone):
    for key in want:
      np.testing.assert_allclose(got[key], want[key], atol=1e-5, err_msg=key)
  # Run sizes (after padding) are 4 or 8 only, and all 7 examples went in merged batches (alone: 20).
  samples = {
    (s.name, s.labels.get("le")): s.value for metric in metrics.registry.collect() for s in metric.samples
  }
  assert samples[("atcon_serving_batch_size_bucket", "2.0")] == 0
  assert samples[("atcon_serving_batch_size_sum", None)] in (8, 12, 16)
  batcher.close()


def test_a_full_queue_is_unavailable(servable):
  signature = servable.signature("predict")
  # Room for 4 waiting examples; a long timeout keeps 3 single-image requests waiting.
  params = BatchingParameters(
    max_batch_size=4, batch_timeout_micros=1_000_000, max_enqueued_batches=1, num_batch_threads=1
  )
  batcher = Batcher(params)
  waiting = [
    threading.Thread(target=batcher.run, args=(servable, signature, {"images": pixels(1)}, ["probabilities"]))
    for _ in range(3)
  ]
  for t in waiting:
    t.start()
  deadline = 100
  while batcher._queues and next(iter(batcher._queues.values())).waiting < 3 and deadline:  # noqa: SLF001
    threading.Event().wait(0.01)
    deadline -= 1
  with pytest.raises(ServingError) as info:
    batcher.run(servable, signature, {"images": pixels(2)}, ["probabilities"])
  assert info.value.code == grpc.StatusCode.UNAVAILABLE
  assert "The batch scheduling queue to which this task was submitted is full" in info.value.message
  for t in waiting:
    t.join(timeout=30)
  batcher.close()


def test_a_bad_request_in_a_merged_batch_fails_alone(servable):
  signature = servable.signature("predict_bytes")
  params = BatchingParameters(max_batch_size=8, batch_timeout_micros=300_000, num_batch_threads=1)
  batcher = Batcher(params)
  good = {"images_bytes": np.array([png(p) for p in pixels(2, seed=3)], dtype=object)}
  bad = {
    "images_bytes": np.array(
      [png(pixels(1)[0]), b"\x89PNG\r\n\x1a\n" + b"\0" * 8 + b"\0\0\x40\0\0\0\x40\0"], dtype=object
    )
  }
  results, errors = _run_concurrently(batcher, servable, signature, [good, bad, good])
  assert errors[0] is None and errors[2] is None and results[0]["probabilities"].shape == (2, 4)
  assert errors[1].code == grpc.StatusCode.INVALID_ARGUMENT
  # Its own index (1), not the index it had in the merged batch.
  assert "images_bytes[1] is 16384x16384 pixels" in errors[1].message, errors[1].message
  batcher.close()


if __name__ == "__main__":
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
