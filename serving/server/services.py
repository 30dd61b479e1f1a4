"""TF Serving's gRPC services over a ModelManager, and the server that hosts them.

`tensorflow.serving.PredictionService` (`Predict`, `GetModelMetadata`, `Classify`) and
`ModelService` (`GetModelStatus`, `HandleReloadConfigRequest`), with TF Serving's status codes
and messages; an unexpected error is INTERNAL, never a crash. GetModelMetadata also answers the
metadata_field "atcon_contract" (the export's `ServingContract` as JSON), which TF Serving does not.
Outputs are sent as `tensor_content` (raw bytes). The server binds 127.0.0.1 by default.
The REST API is `rest`; the server hosting both is `local.LocalServer`.
"""

import json
import logging

import grpc
import numpy as np
from google.protobuf import wrappers_pb2
from tensorflow.core.protobuf import error_codes_pb2
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.apis import status_pb2

from serving import export as export_lib
from serving import tensors
from serving.server.servable import CLASSIFY_METHOD
from serving.server.validation import ServingError, invalid

log = logging.getLogger("serving.server")

SIGNATURE_DEF_FIELD = "signature_def"
# The version's ServingContract as JSON in a StringValue: what clients need to send the right pixels and
# read the maps (preprocessing, image size, class names, Grad-CAM layer, loss settings). Real TF Serving
# only answers signature_def; its clients read assets.extra/atcon_serving.json of the export instead.
CONTRACT_FIELD = export_lib.CONTRACT_METADATA_FIELD
METADATA_FIELDS = (SIGNATURE_DEF_FIELD, CONTRACT_FIELD)


def _model_spec(name, version, signature_name=None):
  spec = model_pb2.ModelSpec(name=name, version=wrappers_pb2.Int64Value(value=version))
  if signature_name:
    spec.signature_name = signature_name
  return spec


def _contract(servable):
  """The export's recorded contract as a JSON StringValue; FAILED_PRECONDITION for exports without one."""
  contract = (servable.export_info or {}).get("contract")
  if contract is None:
    raise ServingError(
      grpc.StatusCode.FAILED_PRECONDITION,
      f"Model {servable.name} version {servable.version} records no ATCON contract "
      f"(its export has no \"contract\" in assets.extra/{export_lib.EXPORT_INFO_FILE}); "
      "re-export it with serving.export.",
    )
  return wrappers_pb2.StringValue(value=json.dumps(contract, sort_keys=True))


def _guarded(method):
  """Maps ServingError to its status; anything unexpected to INTERNAL (never crash)."""

  def wrapper(self, request, context):
    try:
      return method(self, request, context)
    except ServingError as e:
      error = e
    except Exception as e:  # pylint: disable=broad-except
      log.exception("Unexpected error in %s", method.__name__)
      error = ServingError(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")
    context.abort(error.code, error.message)

  wrapper.__name__ = method.__name__
  return wrapper


def metadata_response(manager, request, contract_if_any=False):
  """TF Serving's `signature_def` field, plus `atcon_contract` (this server only; see `_contract`).

  contract_if_any: add `atcon_contract` when the export records one (REST metadata), never an error.
  """
  fields = list(request.metadata_field)
  if not fields:
    raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
  for field in fields:
    if field not in METADATA_FIELDS:
      raise invalid(f"Metadata field {field} is not supported")
  with manager.acquire(request.model_spec) as servable:
    response = get_model_metadata_pb2.GetModelMetadataResponse(
      model_spec=_model_spec(servable.name, servable.version)
    )
    if SIGNATURE_DEF_FIELD in fields:
      signature_map = get_model_metadata_pb2.SignatureDefMap()
      for key, signature_def in servable.signature_defs.items():
        signature_map.signature_def[key].CopyFrom(signature_def)
      response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
    if CONTRACT_FIELD in fields:
      response.metadata[CONTRACT_FIELD].Pack(_contract(servable))
    elif contract_if_any and (servable.export_info or {}).get("contract") is not None:
      response.metadata[CONTRACT_FIELD].Pack(_contract(servable))
    return response


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
  def __init__(self, dispatcher):
    self.dispatcher = dispatcher
    self.manager = dispatcher.manager

  @_guarded
  def Predict(self, request, context):
    servable, signature_name, outputs = self.dispatcher.predict(
      request.model_spec, request.inputs, request.output_filter, api="grpc"
    )
    response = predict_pb2.PredictResponse(
      model_spec=_model_spec(servable.name, servable.version, signature_name)
    )
    for alias, array in outputs.items():
      response.outputs[alias].CopyFrom(tensors.to_tensor_proto(array))
    return response

  @_guarded
  def GetModelMetadata(self, request, context):
    return metadata_response(self.manager, request)

  @_guarded
  def Classify(self, request, context):
    """TF Serving's Classify: needs a signature whose method_name is .../classify."""
    with self.manager.acquire(request.model_spec) as servable:
      signature = servable.signature(request.model_spec.signature_name)
      if signature.method_name != CLASSIFY_METHOD:
        raise invalid(
          f"Expected classification signature method_name to be {CLASSIFY_METHOD}. "
          f"Was: {signature.method_name}"
        )
      kind = request.input.WhichOneof("kind")
      if kind == "example_list":
        examples = [e.SerializeToString() for e in request.input.example_list.examples]
      elif kind == "example_list_with_context":
        context_example = request.input.example_list_with_context.context
        examples = []
        for e in request.input.example_list_with_context.examples:
          merged = type(e)()
          merged.CopyFrom(context_example)
          merged.MergeFrom(e)
          examples.append(merged.SerializeToString())
      else:
        raise invalid("Input is empty")
      if not examples:
        raise invalid("Input is empty")
      if list(signature.inputs) != ["inputs"]:
        raise invalid("Classification signature must have exactly one input named 'inputs'")
      array = np.empty(len(examples), dtype=object)
      array[:] = examples
      outputs = signature.run({"inputs": array}, [k for k in ("classes", "scores") if k in signature.outputs])
      response = classification_pb2.ClassificationResponse(
        model_spec=_model_spec(servable.name, servable.version, signature.key)
      )
      scores = outputs.get("scores")
      classes = outputs.get("classes")
      rows = len(scores if scores is not None else classes)
      for i in range(rows):
        result = response.result.classifications.add()
        width = (scores if scores is not None else classes).shape[1]
        for j in range(width):
          entry = result.classes.add()
          if classes is not None:
            entry.label = classes[i, j].decode() if isinstance(classes[i, j], bytes) else str(classes[i, j])
          if scores is not None:
            entry.score = float(scores[i, j])
      return response

  @_guarded
  def Regress(self, request, context):
    raise ServingError(
      grpc.StatusCode.UNIMPLEMENTED, "Regress is not implemented by the local server (use TF Serving)."
    )

  @_guarded
  def MultiInference(self, request, context):
    raise ServingError(
      grpc.StatusCode.UNIMPLEMENTED, "MultiInference is not implemented by the local server (use TF Serving)."
    )


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
  def __init__(self, manager):
    self.manager = manager

  @_guarded
  def GetModelStatus(self, request, context):
    response = get_model_status_pb2.GetModelStatusResponse()
    for version, (state, status) in self.manager.status(request.model_spec):
      response.model_version_status.add(version=version, state=state, status=status)
    return response

  @_guarded
  def HandleReloadConfigRequest(self, request, context):
    if request.config.WhichOneof("config") != "model_config_list":
      raise invalid("ServerCore config must be a model_config_list")
    try:
      self.manager.set_config(request.config)
    except ValueError as e:
      raise invalid(str(e)) from None
    self.manager.poll()
    return model_management_pb2.ReloadConfigResponse(
      status=status_pb2.StatusProto(error_code=error_codes_pb2.OK)
    )
