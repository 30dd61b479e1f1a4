"""TF Serving's REST API on its own port (Werkzeug's threaded WSGI server), sharing the gRPC path.

  POST /v1/models/NAME[/versions/N | /labels/L]:predict     {"signature_name", "instances" | "inputs"}
  GET  /v1/models/NAME[/versions/N | /labels/L]             version status
  GET  /v1/models/NAME[/versions/N | /labels/L]/metadata    signature_def (+ atcon_contract, this server only)
  GET  /monitoring/prometheus/metrics                       Prometheus metrics
Errors are {"error": "..."} with the HTTP status TF Serving maps each gRPC code to. Predictions go
through the same `Dispatcher` as gRPC: same validation, batching, metrics and outputs.
"""

import json
import logging
import re
import threading

import grpc
from google.protobuf import json_format
from google.protobuf import wrappers_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_pb2
from werkzeug import serving as wsgi_serving
from werkzeug.wrappers import Request, Response

from serving.server import metrics as metrics_lib
from serving.server import rest_codec
from serving.server.validation import ServingError, invalid

log = logging.getLogger("serving.server")
logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not one log line per request

# TF Serving's http_rest_api_handler / http_server status mapping.
HTTP_STATUS = {
  grpc.StatusCode.OK: 200,
  grpc.StatusCode.CANCELLED: 499,
  grpc.StatusCode.UNKNOWN: 500,
  grpc.StatusCode.INVALID_ARGUMENT: 400,
  grpc.StatusCode.DEADLINE_EXCEEDED: 504,
  grpc.StatusCode.NOT_FOUND: 404,
  grpc.StatusCode.ALREADY_EXISTS: 409,
  grpc.StatusCode.PERMISSION_DENIED: 403,
  grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
  grpc.StatusCode.FAILED_PRECONDITION: 400,
  grpc.StatusCode.ABORTED: 409,
  grpc.StatusCode.OUT_OF_RANGE: 400,
  grpc.StatusCode.UNIMPLEMENTED: 501,
  grpc.StatusCode.INTERNAL: 500,
  grpc.StatusCode.UNAVAILABLE: 503,
  grpc.StatusCode.DATA_LOSS: 500,
  grpc.StatusCode.UNAUTHENTICATED: 401,
}
_MODEL_PATH = re.compile(
  r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>-?\d+)|/labels/(?P<label>[^/:]+))?"
  r"(?:(?P<metadata>/metadata)|:(?P<verb>[a-zA-Z]+))?$"
)


def _json(body, status=200):
  return Response(json.dumps(body), status=status, mimetype="application/json")


def _error(code, message):
  return _json({"error": message}, HTTP_STATUS.get(code, 500))


def _model_spec(match, signature_name=""):
  spec = model_pb2.ModelSpec(name=match["name"], signature_name=signature_name)
  if match["version"] is not None:
    spec.version.CopyFrom(wrappers_pb2.Int64Value(value=int(match["version"])))
  elif match["label"] is not None:
    spec.version_label = match["label"]
  return spec


class RestApp:
  """The WSGI application: routes, JSON in and out, errors as {"error": ...}."""

  def __init__(self, dispatcher, metadata_fn, metrics=None, max_body_mb=64):
    self.dispatcher = dispatcher
    self.metadata_fn = metadata_fn
    self.metrics = metrics
    self.max_body = int(max_body_mb * 1024 * 1024)

  def __call__(self, environ, start_response):
    request = Request(environ)
    try:
      response = self.route(request)
    except ServingError as e:
      response = _error(e.code, e.message)
    except Exception as e:  # pylint: disable=broad-except  # never take the server down
      log.exception("Unexpected error in REST %s %s", request.method, request.path)
      response = _error(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")
    return response(environ, start_response)

  def route(self, request):
    path = request.path
    if path == metrics_lib.PATH and request.method == "GET" and self.metrics is not None:
      for model, count in self.dispatcher.manager.available_counts().items():
        self.metrics.versions.labels(model).set(count)
      body, content_type = self.metrics.exposition()
      return Response(body, mimetype=content_type.split(";")[0], content_type=content_type)
    match = _MODEL_PATH.match(path)
    if not path.startswith("/v1/"):
      return _json({"error": f"Not found: {request.method} {path}"}, 404)
    if match is None:
      raise invalid(f"Malformed request: {request.method} {path}")
    if request.method == "GET" and match["verb"] is None:
      if match["metadata"]:
        return _json(self.metadata(match))
      return _json(self.status(match))
    if request.method == "POST" and match["verb"] == "predict":
      return _json(self.predict(request, match))
    if request.method == "POST" and match["verb"] in ("classify", "regress"):
      raise ServingError(
        grpc.StatusCode.UNIMPLEMENTED,
        f":{match['verb']} is not implemented by the local server (use TF Serving).",
      )
    raise invalid(f"Malformed request: {request.method} {path}")

  def _body(self, request):
    if request.content_length is not None and request.content_length > self.max_body:
      while request.stream.read(1 << 20):  # read and drop it, so the client sees the answer, not a reset
        pass
      raise ServingError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"request body of {request.content_length} bytes exceeds the limit of {self.max_body} bytes",
      )
    data = request.get_data(cache=False)
    if len(data) > self.max_body:
      raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"request body exceeds {self.max_body} bytes")
    try:
      body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
      raise invalid(f"JSON Parse error: {e}") from None
    if not isinstance(body, dict):
      raise invalid("JSON Value: the request body must be a JSON object")
    return body

  def predict(self, request, match):
    body = self._body(request)
    signature_name = body.get("signature_name", "")
    if not isinstance(signature_name, str):
      raise invalid("'signature_name' must be a string")
    row_format = []

    def inputs(signature):
      protos, is_row = rest_codec.request_inputs(body, signature)
      row_format.append(is_row)
      return protos

    _, _, outputs = self.dispatcher.predict(_model_spec(match, signature_name), inputs, api="rest")
    return rest_codec.response_body(outputs, row_format[0])

  def status(self, match):
    response = get_model_status_pb2.GetModelStatusResponse()
    for version, (state, status) in self.dispatcher.manager.status(_model_spec(match)):
      response.model_version_status.add(version=version, state=state, status=status)
    return json_format.MessageToDict(
      response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )

  def metadata(self, match):
    response = self.metadata_fn(_model_spec(match))
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    body = {
      "model_spec": {
        "name": response.model_spec.name,
        "signature_name": "",
        "version": str(response.model_spec.version.value),
      },
      "metadata": {
        "signature_def": json_format.MessageToDict(signature_map, preserving_proto_field_name=True)
      },
    }
    if "atcon_contract" in response.metadata:  # this server only, as over gRPC
      value = wrappers_pb2.StringValue()
      response.metadata["atcon_contract"].Unpack(value)
      body["metadata"]["atcon_contract"] = json.loads(value.value)
    return body


class RestServer:
  """Werkzeug's threaded server in a background thread; `port` is the bound one (0 picks a free one)."""

  def __init__(self, app, host, port):
    try:
      self._server = wsgi_serving.make_server(host, port, app, threaded=True)
    except (OSError, SystemExit) as e:  # Werkzeug exits with a message when the port is taken
      from serving.server import startup

      raise startup.bind_error(f"{host}:{port}", "REST", e) from None
    self.host, self.port = host, self._server.server_port
    self._thread = None

  def start(self):
    self._thread = threading.Thread(target=self._server.serve_forever, name="rest", daemon=True)
    self._thread.start()

  def stop(self):
    """Stops accepting connections (requests in flight finish in their own threads)."""
    self._server.shutdown()
    self._server.server_close()
