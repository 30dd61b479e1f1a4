"""Load measurements of the local server for bench/serving.py: dynamic batching and memory over hot swaps.

- `batching_table`: 16 client threads send batch-1 `serving_default` requests for some seconds, to a server
  without batching and to one with --enable_batching (a batching_parameters.txt written by serving.config);
  throughput and p50 / p99 latency, and the ratio (target >= 2x throughput).
- `swap_table`: 4 clients send requests while new versions appear one after another; the RSS of the server
  process and its children after each swap, with and without --worker_processes (target: after the last
  swap within 10 % of after the second).
"""

import os
import shutil
import tempfile
import threading
import time

import numpy as np

MODEL = "bench"
CLIENTS = 16
SWAP_CLIENTS = 4


def _load(target, image_size, seconds, clients=CLIENTS):
  """(requests/s, p50 ms, p99 ms, errors) of `clients` threads sending batch-1 requests for `seconds`."""
  from serving.client import ServingClient

  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, size=(1, image_size, image_size, 3)).astype(np.float32)
  latencies, errors = [[] for _ in range(clients)], []
  stop = threading.Event()

  def worker(i):
    with ServingClient(target, timeout=120) as client:
      client.predict(x, MODEL, with_class_names=False)  # connection and metadata set up
      while not stop.is_set():
        start = time.perf_counter()
        try:
          client.predict(x, MODEL, with_class_names=False)
          latencies[i].append(time.perf_counter() - start)
        except Exception as e:  # pylint: disable=broad-except
          errors.append(repr(e))

  threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
  for t in threads:
    t.start()
  time.sleep(2.0)  # everyone connected and warm
  for values in latencies:
    values.clear()
  started = time.perf_counter()
  time.sleep(seconds)
  stop.set()
  elapsed = time.perf_counter() - started
  for t in threads:
    t.join(timeout=120)
  ms = np.concatenate([np.asarray(v) for v in latencies]) * 1e3
  return len(ms) / elapsed, float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), len(errors)


def batching_table(path, image_size, seconds, start_server, stop_server):
  from serving import config as config_lib

  batching = config_lib.write_batching_parameters(
    os.path.join(tempfile.mkdtemp(prefix="bench-batching-"), "batching_parameters.txt"),
    max_batch_size=16,
    batch_timeout_micros=5000,
    num_batch_threads=os.cpu_count() or 1,
    allowed_batch_sizes=[4, 8, 16],
  )
  rows = {}
  for name, extra in (
    ("no batching", ()),
    ("batching", ("--enable_batching", f"--batching_parameters_file={batching}")),
  ):
    process, target, _ = start_server(os.path.dirname(path), 32, *extra)
    try:
      rows[name] = _load(target, image_size, seconds)
    finally:
      stop_server(process)
  lines = [
    f"{CLIENTS} concurrent gRPC clients, batch 1, serving_default (maps), {seconds:.0f} s each; batching: "
    "max_batch_size 16, batch_timeout_micros 5000, allowed_batch_sizes 4,8,16.",
    "",
    "| server | requests/s | p50 ms | p99 ms | errors |",
    "|---|---:|---:|---:|---:|",
  ]
  for name, (rate, p50, p99, errors) in rows.items():
    lines.append(f"| {name} | {rate:.1f} | {p50:.1f} | {p99:.1f} | {errors} |")
  ratio = rows["batching"][0] / rows["no batching"][0]
  lines.append(
    f"\nthroughput with / without batching: {ratio:.2f}x (target >= 2x: {'met' if ratio >= 2 else 'NOT met'})"
  )
  return "\n".join(lines)


def _rss_mib(pid):
  """RSS of a process and all its descendants, MiB (Linux /proc)."""
  total, todo = 0, [pid]
  while todo:
    current = todo.pop()
    try:
      with open(f"/proc/{current}/status") as f:
        total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
      for task in os.listdir(f"/proc/{current}/task"):
        with open(f"/proc/{current}/task/{task}/children") as f:
          todo += [int(c) for c in f.read().split()]
    except (FileNotFoundError, ProcessLookupError, StopIteration):
      continue
  return total / 1024


def _swaps(path, image_size, swaps, workers, start_server, stop_server):
  """[(swap, RSS MiB)] and the number of failed requests, over `swaps` new versions under load."""
  from serving.client import ServingClient

  base = tempfile.mkdtemp(prefix="bench-swap-")
  shutil.copytree(path, os.path.join(base, "1"))
  extra = ["--file_system_poll_wait_seconds=0.5", "--worker_processes" if workers else "--noworker_processes"]
  process, target, _ = start_server(base, 8, *extra)
  client = ServingClient(target, timeout=120)
  x = np.random.default_rng(0).integers(0, 256, size=(4, image_size, image_size, 3)).astype(np.float32)
  stop, errors = threading.Event(), []

  def worker():
    with ServingClient(target, timeout=120) as c:
      while not stop.is_set():
        try:
          c.predict(x, MODEL, with_class_names=False)
        except Exception as e:  # pylint: disable=broad-except
          errors.append(repr(e))

  threads = [threading.Thread(target=worker) for _ in range(SWAP_CLIENTS)]
  for t in threads:
    t.start()
  rss = [(0, _rss_mib(process.pid))]
  try:
    for version in range(2, swaps + 2):
      staged = os.path.join(base, f".staged-{version}")
      shutil.copytree(path, staged)
      os.rename(staged, os.path.join(base, str(version)))  # atomic, as serving.export publishes
      deadline = time.monotonic() + 300
      while time.monotonic() < deadline:
        states = {s["version"]: s["state"] for s in client.status(MODEL)}
        if states.get(version) == "AVAILABLE" and states.get(version - 1) == "END":
          break
        time.sleep(0.2)
      time.sleep(1.0)
      rss.append((version - 1, _rss_mib(process.pid)))
      print(
        f"  {'workers' if workers else 'in-process'}: swap {version - 1}: {rss[-1][1]:.0f} MiB", flush=True
      )
  finally:
    stop.set()
    for t in threads:
      t.join(timeout=120)
    client.close()
    stop_server(process)
    shutil.rmtree(base, ignore_errors=True)
  return rss, len(errors)


def swap_table(path, image_size, swaps, start_server, stop_server):
  runs = {
    mode: _swaps(path, image_size, swaps, mode == "workers", start_server, stop_server)
    for mode in ("workers", "in-process")
  }
  lines = [
    f"Server RSS (process + children, MiB) after each hot swap, {SWAP_CLIENTS} clients sending requests meanwhile.",
    "",
    "| swap | " + " | ".join(runs) + " |",
    "|---:|" + "---:|" * len(runs),
  ]
  for i in range(swaps + 1):
    lines.append(f"| {i} | " + " | ".join(f"{runs[m][0][i][1]:.0f}" for m in runs) + " |")
  for mode, (rss, errors) in runs.items():
    ratio = rss[-1][1] / rss[2][1]
    verdict = "met" if ratio <= 1.10 else "NOT met"
    lines.append(
      f"\n{mode}: after swap {swaps} / after swap 2 = {ratio:.3f} (target <= 1.10: {verdict}); failed requests: {errors}"
    )
  return "\n".join(lines)
