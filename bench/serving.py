"""Serving benchmark: `predict` vs `maps` (Grad-CAM and guided backprop) vs `serving_default` (the maps and
the consistency), in-process vs gRPC vs REST, batch 1 and 32;
dynamic batching under 16 concurrent clients; server memory over 10 hot swaps under load.

  python bench/serving.py [--parts=latency,batching,swap --iterations=30 --rounds=5 --image_size=32 --out=bench.md]

Exports `atcon_tf.testing.small_resnet(image_size)` (float32 input, scale_0_1) to a temporary
folder, then measures
- in-process: the loaded SavedModel's signature called from Python (outputs fetched as NumPy);
- gRPC: `serving.client.ServingClient.predict` against `python -m serving.server` on loopback
  (request encoding, validation, the same signature, response decoding);
- REST: `serving.client.RestClient.predict` against the same server's REST port (JSON both ways).
`batching`: 16 client threads send batch-1 `serving_default` requests for --seconds to a server without
and one with --enable_batching (batching_parameters.txt from serving.config); throughput, p50, p99.
`swap`: 4 clients send requests while 10 new versions appear one after another; the server's RSS
(its process and its children) after each swap, with and without --worker_processes.
Configurations are measured in interleaved rounds, so load from other processes on the
machine spreads over all of them. Prints a markdown table and the ratios against the targets:
maps (the `maps` signature) <= 2.5x predict-only at batch 32; gRPC <= 1.25x in-process at batch 32 for serving_default;
serving_default (maps and consistency: one more forward) is reported beside them.
"""

import gc
import os
import select
import subprocess
import sys
import tempfile
import time

from atcon_tf import quiet

quiet.tensorflow_logs()  # before TensorFlow is imported: no CUDA / oneDNN start-up noise
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Run as `python bench/serving.py`, this file's folder comes first on sys.path and `import serving` would
# find this script instead of the package: put the repository there instead.
sys.path[:] = [REPO] + [p for p in sys.path if os.path.abspath(p or ".") != os.path.join(REPO, "bench")]

import numpy as np  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402

MODEL = "bench"
SIGNATURES = ("predict", "maps", "serving_default")
BATCHES = (1, 32)
TARGET_MAPS = 2.5  # issue 11: maps within 2.5x predict at batch 32
TARGET_GRPC = 1.25


def define_flags():
  flags.DEFINE_integer("iterations", 30, "Timed calls per configuration and round.")
  flags.DEFINE_integer("rounds", 5, "Interleaved rounds over all configurations.")
  flags.DEFINE_integer("warmup", 5, "Untimed calls per configuration before timing.")
  flags.DEFINE_integer("image_size", 32, "Input size of small_resnet.")
  flags.DEFINE_integer("server_threads", 8, "gRPC worker threads of the local server.")
  flags.DEFINE_string("out", None, "Also write the markdown report to this file.")
  flags.DEFINE_list("parts", ["latency", "batching", "swap"], "Which measurements to run.")
  flags.DEFINE_float("seconds", 20.0, "Duration of each batching measurement.")
  flags.DEFINE_integer("swaps", 10, "Hot swaps measured.")


def _start_server(base_path, threads, *extra):
  """(process, gRPC target, REST target) of `python -m serving.server` with a REST port."""
  import socket

  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    rest_port = sock.getsockname()[1]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
  process = subprocess.Popen(
    [
      sys.executable,
      "-m",
      "serving.server",
      f"--model_base_path={base_path}",
      f"--model_name={MODEL}",
      "--port=0",
      f"--rest_api_port={rest_port}",
      f"--threads={threads}",
      *extra,
    ],
    cwd=REPO,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.DEVNULL,
    text=True,
  )
  deadline = time.monotonic() + 300
  while time.monotonic() < deadline:
    ready, _, _ = select.select([process.stdout], [], [], 1.0)
    if ready:
      line = process.stdout.readline()
      if line.startswith("Serving "):
        return process, line.split(" on ", 1)[1].split()[0], f"127.0.0.1:{rest_port}"
      if not line:
        break
    if process.poll() is not None:
      break
  process.kill()
  raise RuntimeError("The local server did not start.")


def _stop(process):
  process.terminate()
  process.wait(timeout=60)


def _percentiles(samples):
  ms = np.asarray(samples) * 1e3
  return float(np.percentile(ms, 50)), float(np.percentile(ms, 90)), float(np.mean(ms))


def export(image_size):
  from atcon_tf.backbones import small_resnet
  from serving.export import export_model

  workdir = tempfile.mkdtemp(prefix="bench-serving-")
  return export_model(small_resnet(image_size), workdir, MODEL, warmup=True, preprocessing="imagenet_torch")


def run_benchmark(path, iterations, rounds, warmup, image_size, server_threads):
  import tensorflow as tf

  from serving.client import RestClient, ServingClient

  loaded = tf.saved_model.load(path)
  process, target, rest_target = _start_server(os.path.dirname(path), server_threads)
  client = ServingClient(target, timeout=120, max_message_mb=256)
  rest = RestClient(rest_target, timeout=120)
  # This process holds TensorFlow and a loaded model: without a freeze, the cyclic GC set off by each large
  # JSON answer scans all of it (pauses of ~0.3 s that would be charged to REST).
  gc.collect()
  gc.freeze()
  client.wait_until_available(MODEL)
  rng = np.random.default_rng(0)
  inputs = {b: rng.integers(0, 256, size=(b, image_size, image_size, 3)).astype(np.float32) for b in BATCHES}

  def in_process(signature, batch):
    function = loaded.signatures[signature]
    x = inputs[batch]

    def call():
      outputs = function(images=tf.constant(x))
      return {k: v.numpy() for k, v in outputs.items()}

    return call

  def grpc_call(signature, batch):
    x = inputs[batch]
    return lambda: client.predict(x, MODEL, signature=signature, with_class_names=False)

  def rest_call(signature, batch):
    x = inputs[batch]
    return lambda: rest.predict(x, MODEL, signature=signature, with_class_names=False)

  makers = {"in-process": in_process, "gRPC": grpc_call, "REST": rest_call}
  configs = [(mode, signature, batch) for mode in makers for signature in SIGNATURES for batch in BATCHES]
  calls = {c: makers[c[0]](c[1], c[2]) for c in configs}
  # Same results all ways (sanity), then warm every path.
  for signature in SIGNATURES:
    a = calls[("in-process", signature, 32)]()
    for mode in ("gRPC", "REST"):
      b = calls[(mode, signature, 32)]()
      for key in a:
        np.testing.assert_allclose(a[key], b[key], atol=1e-5)
  for config in configs:
    for _ in range(warmup):
      calls[config]()
  samples = {c: [] for c in configs}
  try:
    for _ in range(rounds):
      for config in configs:
        call = calls[config]
        for _ in range(iterations):
          start = time.perf_counter()
          call()
          samples[config].append(time.perf_counter() - start)
  finally:
    client.close()
    process.terminate()
    process.wait(timeout=30)
  return samples


def report(samples, image_size):
  import platform

  import tensorflow as tf

  stats = {c: _percentiles(s) for c, s in samples.items()}
  lines = [
    f"small_resnet({image_size}) on {os.cpu_count()} CPU cores, TF {tf.__version__}, "
    f"Python {platform.python_version()}; {len(next(iter(samples.values())))} calls per "
    "configuration.",
    "",
    "| path | signature | batch | p50 ms | p90 ms | images/s |",
    "|---|---|---:|---:|---:|---:|",
  ]
  for (mode, signature, batch), (p50, p90, mean) in stats.items():
    lines.append(f"| {mode} | {signature} | {batch} | {p50:.2f} | {p90:.2f} | {batch / (mean / 1e3):.0f} |")
  lines += ["", "| ratio (p50) | batch 1 | batch 32 | target (batch 32) | met |", "|---|---:|---:|---:|---|"]

  def ratio(a, b, batch):
    return stats[a[:2] + (batch,)][0] / stats[b[:2] + (batch,)][0]

  rows = [
    ("maps / predict, in-process", ("in-process", "maps"), ("in-process", "predict"), TARGET_MAPS),
    ("maps / predict, gRPC", ("gRPC", "maps"), ("gRPC", "predict"), TARGET_MAPS),
    (
      "maps + consistency / predict, in-process",
      ("in-process", "serving_default"),
      ("in-process", "predict"),
      None,
    ),
    ("maps + consistency / predict, gRPC", ("gRPC", "serving_default"), ("gRPC", "predict"), None),
    (
      "gRPC / in-process, serving_default",
      ("gRPC", "serving_default"),
      ("in-process", "serving_default"),
      TARGET_GRPC,
    ),
    ("gRPC / in-process, predict", ("gRPC", "predict"), ("in-process", "predict"), None),
    ("REST / gRPC, serving_default", ("REST", "serving_default"), ("gRPC", "serving_default"), None),
    ("REST / gRPC, predict", ("REST", "predict"), ("gRPC", "predict"), None),
  ]
  met_all = True
  for name, a, b, target in rows:
    r1, r32 = ratio(a, b, 1), ratio(a, b, 32)
    if target is None:
      lines.append(f"| {name} | {r1:.2f}x | {r32:.2f}x | - | - |")
      continue
    met = r32 <= target
    met_all &= met
    lines.append(f"| {name} | {r1:.2f}x | {r32:.2f}x | <= {target}x | {'yes' if met else 'NO'} |")
  return "\n".join(lines), met_all


def main(argv):
  del argv
  from absl import logging as absl_logging

  from bench import serving_load

  absl_logging.set_verbosity(absl_logging.WARNING)
  f = flags.FLAGS
  path = export(f.image_size)
  texts, met = [], True
  if "latency" in f.parts:
    samples = run_benchmark(path, f.iterations, f.rounds, f.warmup, f.image_size, f.server_threads)
    text, met = report(samples, f.image_size)
    texts.append(text)
    print(text, flush=True)
  if "batching" in f.parts:
    texts.append(serving_load.batching_table(path, f.image_size, f.seconds, _start_server, _stop))
    print(texts[-1], flush=True)
  if "swap" in f.parts:
    texts.append(serving_load.swap_table(path, f.image_size, f.swaps, _start_server, _stop))
    print(texts[-1], flush=True)
  if f.out:
    with open(f.out, "w") as fh:
      fh.write("\n\n".join(texts) + "\n")
  return 0 if met else 1


if __name__ == "__main__":
  define_flags()
  app.run(main)
