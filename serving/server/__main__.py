"""The local server's command line (for local use and tests; production: TF Serving).

  python -m serving.server --model_base_path=EXPORT_DIR/NAME --model_name=NAME --port=8500
  python -m serving.server --model_config_file=models.config --port=8500

Prints `Serving NAMES on HOST:PORT (gRPC, TF Serving API)[, REST on HOST:PORT]` once the models are
loaded (with --port=0 the port is any free one); SIGINT / SIGTERM stop accepting, drain the requests in
flight (--drain_seconds) and exit 0. A misconfiguration is one ERROR line and exit 1.
"""

import gc
import logging
import signal
import threading

from absl import app
from absl import flags
from absl import logging as absl_logging

from serving.server import startup
from serving.server.manager import server_config_from_flags
from serving.server.local import LocalServer

log = logging.getLogger("serving.server")


def define_flags():
  flags.DEFINE_string("model_base_path", None, "EXPORT_DIR/NAME, holding version folders.")
  flags.DEFINE_string("model_name", None, "Model name (default: the base path's last folder).")
  flags.DEFINE_string("model_config_file", None, "A models.config (ModelServerConfig text).")
  flags.DEFINE_string("host", "127.0.0.1", "Address to bind (0.0.0.0 exposes the server).")
  flags.DEFINE_integer("port", 8500, "gRPC port (0: any free port, printed at start).")
  flags.DEFINE_float("file_system_poll_wait_seconds", 1.0, "Period of the version poller.")
  flags.DEFINE_integer("max_message_mb", 64, "Largest request/response message.")
  flags.DEFINE_integer("threads", 8, "gRPC worker threads (concurrent requests).")
  flags.DEFINE_boolean("warmup", True, "Replay assets.extra warm-up requests before serving.")
  flags.DEFINE_integer(
    "rest_api_port", None, "TF Serving's REST API on this port (0: any free port; default: off)."
  )
  flags.DEFINE_boolean("enable_batching", False, "Merge concurrent requests (TF Serving's dynamic batching).")
  flags.DEFINE_string(
    "batching_parameters_file",
    None,
    "batching_parameters.txt written by serving.config (default values if unset).",
  )
  flags.DEFINE_float("drain_seconds", 30.0, "On SIGTERM/SIGINT, wait this long for requests in flight.")
  flags.DEFINE_boolean(
    "worker_processes",
    True,
    "Run each loaded version in its own process, so unloading frees all its memory.",
  )


def main(argv):
  if len(argv) > 1:
    raise SystemExit(f"Unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  absl_logging.set_verbosity(absl_logging.WARNING)  # TF's loading chatter.
  log.setLevel(logging.INFO)  # Loads, swaps and unloads of versions.
  try:
    server_config = server_config_from_flags(f.model_name, f.model_base_path, f.model_config_file)
    startup.check_server_config(server_config)
    batching = None
    if f.enable_batching or f.batching_parameters_file:
      from serving.server.batching import BatchingParameters

      batching = (
        BatchingParameters.from_file(f.batching_parameters_file)
        if f.batching_parameters_file
        else BatchingParameters()
      )
    server = LocalServer(
      server_config,
      host=f.host,
      port=f.port,
      poll_seconds=f.file_system_poll_wait_seconds,
      max_message_mb=f.max_message_mb,
      threads=f.threads,
      warmup=f.warmup,
      rest_port=f.rest_api_port,
      batching=batching,
      worker_processes=f.worker_processes,
    )
  except (ValueError, OSError, startup.StartupError) as e:
    raise SystemExit(f"ERROR: {e}") from None
  server.start()
  # TensorFlow's import leaves millions of objects for the cyclic GC to scan: a full collection, set off by
  # a large JSON request, paused REST answers by ~300 ms. Freeze what start-up made; new objects are still collected.
  gc.collect()
  gc.freeze()
  done = threading.Event()
  for signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, lambda *_: done.set())
  apis = f"{server.target} (gRPC, TF Serving API)"
  if server.rest_target:
    apis += f", REST on {server.rest_target}"
  print(f"Serving {', '.join(server.manager.model_names())} on {apis}", flush=True)
  done.wait()
  log.info("Stopping: no new requests; draining those in flight (up to %.0f s)", f.drain_seconds)
  drained = server.stop(grace=f.drain_seconds)
  log.info("Stopped (%s)", "drained" if drained else "deadline passed")
  return 0


if __name__ == "__main__":
  define_flags()
  app.run(main)
