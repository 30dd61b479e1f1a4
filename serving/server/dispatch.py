"""The one path every Predict takes, from gRPC or REST: version lookup, validation, batching, metrics.

So both APIs answer the same request with the same outputs and the same errors, and a drain (SIGTERM)
can wait for every request in flight, whichever API it came from.
"""

import threading
import time

import grpc

from serving.server.validation import ServingError


class Dispatcher:
  """Runs validated requests on the served versions, alone or through the dynamic batcher."""

  def __init__(self, manager, metrics=None, batcher=None):
    self.manager = manager
    self.metrics = metrics
    self.batcher = batcher
    self._in_flight = 0
    self._idle = threading.Condition()
    self._draining = False

  def predict(self, model_spec, inputs, output_filter=(), api="grpc"):
    """(servable, signature key, outputs) for a ModelSpec and its inputs (TensorProtos or a function).

    Raises ServingError with TF Serving's status code; UNAVAILABLE once the server is draining.
    """
    start = time.perf_counter()
    status, version, signature_key = "OK", None, model_spec.signature_name or "serving_default"
    with self._idle:
      if self._draining:
        raise ServingError(grpc.StatusCode.UNAVAILABLE, "The server is shutting down.")
      self._in_flight += 1
    try:
      with self.manager.acquire(model_spec) as servable:
        version = servable.version
        signature, arrays, output_filter = servable.prepare(model_spec.signature_name, inputs, output_filter)
        signature_key = signature.key
        if self.batcher is not None:
          outputs = self.batcher.run(servable, signature, arrays, output_filter)
        else:
          outputs = signature.run(arrays, output_filter)
        return servable, signature.key, outputs
    except ServingError as e:
      status = e.code.name
      raise
    except Exception:
      status = "INTERNAL"
      raise
    finally:
      with self._idle:
        self._in_flight -= 1
        self._idle.notify_all()
      if self.metrics is not None:
        self.metrics.observe(
          model_spec.name, version, signature_key, api, status, time.perf_counter() - start
        )

  def drain(self, timeout):
    """Refuses new requests and waits up to `timeout` s for those in flight; True if none is left."""
    with self._idle:
      self._draining = True
      return self._idle.wait_for(lambda: self._in_flight == 0, timeout=timeout)
