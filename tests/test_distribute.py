"""tf.distribute: a mirrored run over 2 logical CPUs and a 2-process multi-worker run.

Replica-scaling bugs show up as an N-times larger update; comparing with the
single-device run catches them.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(**extra):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
  env.update(extra)
  return env


def _run(mode, schedule):
  proc = subprocess.run(
    [sys.executable, "-m", "tests.distributed_job", mode, schedule],
    cwd=ROOT,
    env=_env(),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def _assert_same_weights(a, b, rtol=1e-4, atol=1e-6):
  assert len(a["weights"]) == len(b["weights"]) > 0
  for wa, wb in zip(a["weights"], b["weights"]):
    np.testing.assert_allclose(np.array(wa), np.array(wb), rtol=rtol, atol=atol)


def _assert_trained(run):
  """The run moved its weights: equal weights of two runs that did not train would prove nothing."""
  moved = max(
    float(np.abs(np.array(w) - np.array(w0)).max()) for w, w0 in zip(run["weights"], run["initial_weights"])
  )
  assert moved > 1e-4, moved


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["atcon", "supervised", "combining"])
def test_mirrored_matches_single_device(schedule):
  single = _run("single", schedule)
  mirrored = _run("mirrored", schedule)
  _assert_trained(single)
  assert mirrored["replicas"] == 2
  assert mirrored["loss"] == pytest.approx(single["loss"], rel=1e-4)
  _assert_same_weights(single, mirrored)


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_multi_worker_two_processes_end_with_identical_weights(tmp_path):
  workers = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
  procs = []
  for index in range(2):
    tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
    out = str(tmp_path / f"worker{index}.json")
    procs.append(
      (
        out,
        subprocess.Popen(
          [sys.executable, "-m", "tests.distributed_job", "multi_worker", "atcon", out],
          cwd=ROOT,
          env=_env(TF_CONFIG=tf_config),
          stdout=subprocess.PIPE,
          stderr=subprocess.PIPE,
          text=True,
        ),
      )
    )
  results = []
  for out, proc in procs:
    try:
      _, stderr = proc.communicate(timeout=300)
    finally:
      if proc.poll() is None:
        proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    with open(out) as f:
      results.append(json.load(f))
  assert [r["replicas"] for r in results] == [2, 2]
  _assert_trained(results[0])
  _assert_same_weights(results[0], results[1], rtol=0, atol=0)
  single = _run("single", "atcon")
  _assert_same_weights(single, results[0])


if __name__ == "__main__":
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
