"""Dynamic batching with TF Serving's `BatchingParameters` (read from `batching_parameters.txt`).

Concurrent requests for the same version and signature are queued and merged along axis 0 into one call:
a batch closes when it holds `max_batch_size` examples or its oldest request waited
`batch_timeout_micros`; `num_batch_threads` batches run at once; a batch is padded (repeating its first
example, as TF Serving) up to the next of `allowed_batch_sizes`. When `max_enqueued_batches` batches are
waiting, a request is refused with UNAVAILABLE. A request larger than `max_batch_size` runs alone.
If a merged batch fails, its requests are run one by one, so a bad request fails alone and its error
names its own images (the ATCON outputs are per example, so merging never changes a result).
"""

import collections
import dataclasses
import threading
import time

import grpc
import numpy as np

from serving.server.validation import ServingError

FULL_QUEUE = "The batch scheduling queue to which this task was submitted is full"


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
  max_batch_size: int = 32
  batch_timeout_micros: int = 2000
  max_enqueued_batches: int = 100
  num_batch_threads: int = 4
  allowed_batch_sizes: tuple = ()

  @classmethod
  def from_file(cls, path):
    """From a file written by `serving.config` (TF Serving's text format); ValueError if malformed."""
    from serving import config as config_lib

    try:
      values = config_lib.read_batching_parameters(path)
    except (IndexError, ValueError) as e:
      raise ValueError(f"{path}: not a batching parameters file ({e}).") from None
    values.pop("pad_variable_length_inputs", None)
    unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
      raise ValueError(f"{path}: unsupported batching parameters {sorted(unknown)}.")
    values["allowed_batch_sizes"] = tuple(values.get("allowed_batch_sizes", ()))
    params = cls(**values)
    sizes = params.allowed_batch_sizes
    if sizes and (list(sizes) != sorted(set(sizes)) or sizes[-1] != params.max_batch_size):
      raise ValueError(f"{path}: allowed_batch_sizes must increase and end with max_batch_size.")
    if min(params.max_batch_size, params.max_enqueued_batches, params.num_batch_threads) < 1:
      raise ValueError(f"{path}: batch sizes, queue length and thread count must be positive.")
    return params


class _Task:
  def __init__(self, arrays, size, output_filter):
    self.arrays, self.size, self.output_filter = arrays, size, output_filter
    self.enqueued = time.monotonic()
    self.done = threading.Event()
    self.outputs = self.error = None


class _Queue:
  """One version's signature: waiting requests and the threads that merge and run them."""

  def __init__(self, signature, params, on_batch):
    self.signature, self.params, self.on_batch = signature, params, on_batch
    self.tasks = collections.deque()
    self.waiting = 0  # examples queued
    self.closed = False
    self.cond = threading.Condition()
    self.threads = [
      threading.Thread(target=self._loop, name=f"batch-{signature.key}", daemon=True)
      for _ in range(params.num_batch_threads)
    ]
    for thread in self.threads:
      thread.start()

  def submit(self, task):
    p = self.params
    with self.cond:
      if self.closed:
        raise ServingError(grpc.StatusCode.UNAVAILABLE, "The servable is being unloaded; retry.")
      if self.waiting + task.size > p.max_enqueued_batches * p.max_batch_size:
        raise ServingError(grpc.StatusCode.UNAVAILABLE, FULL_QUEUE)
      self.tasks.append(task)
      self.waiting += task.size
      self.cond.notify_all()

  def close(self):
    with self.cond:
      self.closed = True
      self.cond.notify_all()

  def _take(self):
    """The next batch's tasks (blocking), or None once closed and empty."""
    timeout = self.params.batch_timeout_micros / 1e6
    with self.cond:
      while True:
        if not self.tasks:
          if self.closed:
            return None
          self.cond.wait()
          continue
        left = self.tasks[0].enqueued + timeout - time.monotonic()
        if self.waiting >= self.params.max_batch_size or left <= 0 or self.closed:
          break
        self.cond.wait(left)
      taken, total = [], 0
      while self.tasks and total + self.tasks[0].size <= self.params.max_batch_size:
        task = self.tasks.popleft()
        taken.append(task)
        total += task.size
      self.waiting -= total
      return taken

  def _loop(self):
    while True:
      tasks = self._take()
      if tasks is None:
        return
      self._run(tasks)

  def _run(self, tasks):
    try:
      if len(tasks) == 1 and self._padded(tasks[0].size) == tasks[0].size:
        task = tasks[0]
        task.outputs = self.signature.run(task.arrays, task.output_filter)
        self.on_batch(task.size)
      else:
        self._run_merged(tasks)
    except ServingError as e:
      if len(tasks) == 1:
        tasks[0].error = e
      else:  # find the culprit: each request alone
        for task in tasks:
          self._run([task])
    except Exception as e:  # pylint: disable=broad-except
      for task in tasks:
        task.error = ServingError(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")
    finally:
      for task in tasks:
        if task.outputs is not None or task.error is not None:
          task.done.set()

  def _padded(self, total):
    return next((s for s in self.params.allowed_batch_sizes if s >= total), total)

  def _run_merged(self, tasks):
    total = sum(t.size for t in tasks)
    padded = self._padded(total)
    merged = {}
    for alias in tasks[0].arrays:
      parts = [t.arrays[alias] for t in tasks]
      if padded > total:
        parts.append(np.repeat(parts[0][:1], padded - total, axis=0))
      merged[alias] = np.concatenate(parts, axis=0)
    wanted = sorted({alias for t in tasks for alias in t.output_filter})
    outputs = self.signature.run(merged, wanted)
    self.on_batch(padded)
    start = 0
    for task in tasks:
      task.outputs = {alias: outputs[alias][start : start + task.size] for alias in task.output_filter}
      start += task.size


class Batcher:
  """Queues per (loaded version, signature); `run` blocks until the request's batch has run."""

  def __init__(self, params, metrics=None):
    self.params = params
    self.metrics = metrics
    self._queues = {}
    self._lock = threading.Lock()

  def _queue(self, servable, signature):
    key = (id(servable), signature.key)
    with self._lock:
      queue = self._queues.get(key)
      if queue is None:
        labels = (servable.name, signature.key)

        def on_batch(size):
          if self.metrics is not None:
            self.metrics.batch_size.labels(*labels).observe(size)

        queue = self._queues[key] = _Queue(signature, self.params, on_batch)
        servable.on_unload.append(lambda: self._close(key))
      return queue

  def _close(self, key):
    with self._lock:
      queue = self._queues.pop(key, None)
    if queue is not None:
      queue.close()

  def run(self, servable, signature, arrays, output_filter):
    if not arrays or any(a.ndim == 0 for a in arrays.values()):
      return signature.run(arrays, output_filter)
    size = next(iter(arrays.values())).shape[0]
    if size > self.params.max_batch_size:
      return signature.run(arrays, output_filter)
    task = _Task(arrays, size, output_filter)
    self._queue(servable, signature).submit(task)
    task.done.wait()
    if task.error is not None:
      raise task.error
    return task.outputs

  def close(self):
    with self._lock:
      queues, self._queues = list(self._queues.values()), {}
    for queue in queues:
      queue.close()
