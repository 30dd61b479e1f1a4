"""One loaded version in its own process, so that unloading it gives all of its memory back.

`tf.saved_model.load` leaves ~44 functions in TensorFlow's process-wide eager context after the model is
dropped (a known TensorFlow problem): a server that loads version after version in one process grows by
~75 MiB per swap. Here each version is loaded in a child process (multiprocessing, spawn); requests go to
it over a pipe (NumPy arrays in, outputs or an error out, answered out of order by a thread pool), and
unloading ends the process. A worker that dies (an abort inside TensorFlow) fails only its requests in
flight with INTERNAL; the manager then loads the version again.
"""

import itertools
import logging
import multiprocessing
import threading
from concurrent import futures

import grpc

from serving.server.validation import ServingError

log = logging.getLogger("serving.server")
_START_TIMEOUT = 600.0
_THREADS = 8


def _serve(conn, path):  # pragma: no cover - runs in the child process
  """The child: loads the SavedModel, then runs (id, signature, arrays, outputs) requests until told to stop."""
  import os
  import signal

  # Ctrl-C reaches the whole process group: the server handles it (drains, then ends its workers).
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  from atcon_tf import quiet

  quiet.tensorflow_logs()
  import tensorflow as tf

  from serving.server import validation

  try:
    loaded = tf.saved_model.load(path, tags=["serve"])
    functions = dict(loaded.signatures)
  except Exception as e:  # pylint: disable=broad-except
    conn.send(("failed", f"{type(e).__name__}: {e}"))
    return
  conn.send(("ready", None))
  lock = threading.Lock()

  def run(request_id, key, arrays, output_filter):
    try:
      feeds = {alias: tf.constant(array) for alias, array in arrays.items()}
      results = functions[key](**feeds)
      answer = (request_id, {alias: results[alias].numpy() for alias in output_filter}, None)
    except tf.errors.OpError as e:
      error = validation.tf_error(e, key)
      answer = (request_id, None, (error.code.name, error.message))
    except Exception as e:  # pylint: disable=broad-except
      answer = (request_id, None, ("INTERNAL", f"{type(e).__name__}: {e}"))
    with lock:
      conn.send(answer)

  with futures.ThreadPoolExecutor(_THREADS) as pool:
    while True:
      try:
        message = conn.recv()
      except (EOFError, OSError):
        return
      if message is None:
        return
      pool.submit(run, *message)


class WorkerProcess:
  """The parent's handle on one worker: `run` sends a request and waits for its answer."""

  def __init__(self, name, version, path):
    self.label = f"{name} version {version}"
    context = multiprocessing.get_context("spawn")
    self._conn, child = context.Pipe()
    self.process = context.Process(
      target=_serve, args=(child, path), name=f"model-{name}-{version}", daemon=True
    )
    self.process.start()
    child.close()
    self._ids = itertools.count()
    self._pending = {}
    self._lock = threading.Lock()
    self._send_lock = threading.Lock()
    self._closed = False
    if not self._conn.poll(_START_TIMEOUT):
      self.close()
      raise RuntimeError(f"{self.label}: the worker process did not load the model in {_START_TIMEOUT:.0f} s")
    try:
      status, message = self._conn.recv()
    except EOFError:
      self.close()
      raise RuntimeError(
        f"{self.label}: the worker process exited while loading (code {self.process.exitcode})"
      )
    if status != "ready":
      self.close()
      raise RuntimeError(message)
    self._reader = threading.Thread(target=self._read, name=f"worker-reader-{name}-{version}", daemon=True)
    self._reader.start()

  @property
  def pid(self):
    return self.process.pid

  def alive(self):
    return not self._closed and self.process.is_alive()

  def _read(self):
    while True:
      try:
        request_id, outputs, error = self._conn.recv()
      except (EOFError, OSError):
        break
      with self._lock:
        future = self._pending.pop(request_id, None)
      if future is not None:
        future.set_result((outputs, error))
    gone = ServingError(
      grpc.StatusCode.INTERNAL, f"the worker process of {self.label} exited (code {self.process.exitcode})"
    )
    with self._lock:
      pending, self._pending = self._pending, {}
    for future in pending.values():
      future.set_result((None, (gone.code.name, gone.message)))

  def run(self, key, arrays, output_filter):
    future = futures.Future()
    request_id = next(self._ids)
    with self._lock:
      if self._closed or not self.process.is_alive():
        raise ServingError(grpc.StatusCode.UNAVAILABLE, f"the worker process of {self.label} is not running")
      self._pending[request_id] = future
    try:
      with self._send_lock:
        self._conn.send((request_id, key, arrays, list(output_filter)))
    except (OSError, ValueError) as e:
      with self._lock:
        self._pending.pop(request_id, None)
      raise ServingError(grpc.StatusCode.INTERNAL, f"the worker process of {self.label}: {e}") from None
    outputs, error = future.result()
    if error is not None:
      raise ServingError(grpc.StatusCode[error[0]], error[1])
    return outputs

  def close(self, timeout=10.0):
    """Ends the process (its requests in flight must be done: the manager waits for them first)."""
    self._closed = True
    try:
      with self._send_lock:
        self._conn.send(None)
    except (OSError, ValueError):
      pass
    self.process.join(timeout)
    if self.process.is_alive():
      self.process.terminate()
      self.process.join(timeout)
    self._conn.close()
