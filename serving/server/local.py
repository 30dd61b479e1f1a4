"""`LocalServer`: the model manager, the gRPC server, and optionally the REST API, batching and metrics.

Ports are bound in the constructor (a port in use fails before any model loads); `start()` loads the
models, then listens; `stop()` stops accepting, drains the requests in flight, then unloads.
"""

import logging
import time
from concurrent import futures

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving.server import startup
from serving.server.batching import Batcher
from serving.server.dispatch import Dispatcher
from serving.server.manager import ModelManager
from serving.server.metrics import Metrics
from serving.server.services import ModelService, PredictionService, metadata_response

log = logging.getLogger("serving.server")


class LocalServer:
  """gRPC (and REST when `rest_port` is not None; 0 picks a free port) over one ModelManager."""

  def __init__(
    self,
    server_config,
    host="127.0.0.1",
    port=8500,
    poll_seconds=1.0,
    max_message_mb=64,
    threads=8,
    warmup=True,
    rest_port=None,
    batching=None,
    worker_processes=False,
  ):
    self.manager = ModelManager(
      server_config, poll_seconds=poll_seconds, warmup=warmup, worker_processes=worker_processes
    )
    self.metrics = Metrics()
    self.batcher = Batcher(batching, self.metrics) if batching is not None else None
    self.dispatcher = Dispatcher(self.manager, self.metrics, self.batcher)
    limit = int(max_message_mb * 1024 * 1024)
    self.server = grpc.server(
      futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grpc"),
      options=[
        ("grpc.max_send_message_length", limit),
        ("grpc.max_receive_message_length", limit),
        ("grpc.so_reuseport", 0),
      ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
      PredictionService(self.dispatcher), self.server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(self.manager), self.server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
      self.port = self.server.add_insecure_port(address)
    except RuntimeError as e:  # grpcio >= 1.60 raises where older versions returned 0
      raise startup.bind_error(address, "gRPC", e) from None
    if not self.port:
      raise startup.bind_error(address, "gRPC")
    self.host = host
    self.rest = None
    if rest_port is not None:
      from serving.server import rest

      app = rest.RestApp(
        self.dispatcher,
        lambda spec: metadata_response(self.manager, _metadata_request(spec), contract_if_any=True),
        self.metrics,
        max_body_mb=max_message_mb,
      )
      self.rest = rest.RestServer(app, host, rest_port)

  @property
  def target(self):
    return f"{self.host}:{self.port}"

  @property
  def rest_target(self):
    return None if self.rest is None else f"{self.rest.host}:{self.rest.port}"

  def start(self):
    self.manager.start()
    self.server.start()
    if self.rest is not None:
      self.rest.start()
    return self

  def stop(self, grace=30.0):
    """Stops accepting, lets requests in flight finish (up to `grace` s), then unloads; True if drained."""
    deadline = time.monotonic() + grace
    stopped = self.server.stop(grace)  # refuses new RPCs at once; in-flight ones get `grace`
    if self.rest is not None:
      self.rest.stop()
    drained = self.dispatcher.drain(max(0.0, deadline - time.monotonic()))
    stopped.wait(max(0.0, deadline - time.monotonic()))
    if self.batcher is not None:
      self.batcher.close()
    self.manager.stop()
    if not drained:
      log.warning("Requests still in flight after %.0f s: stopping anyway", grace)
    return drained


def _metadata_request(model_spec):
  from tensorflow_serving.apis import get_model_metadata_pb2

  return get_model_metadata_pb2.GetModelMetadataRequest(
    model_spec=model_spec, metadata_field=["signature_def"]
  )
