"""Malformed requests: each answered with TF Serving's status code (INVALID_ARGUMENT, NOT_FOUND,
FAILED_PRECONDITION, RESOURCE_EXHAUSTED, UNIMPLEMENTED) and a clear message, and the server keeps serving.

The server and its tiny export are conftest's session fixtures `serving_setup` and `serving_stubs`.
"""

import os
import sys

import grpc
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from google.protobuf import wrappers_pb2  # noqa: E402
from tensorflow_serving.apis import classification_pb2  # noqa: E402
from tensorflow_serving.apis import get_model_metadata_pb2  # noqa: E402
from tensorflow_serving.apis import get_model_status_pb2  # noqa: E402
from tensorflow_serving.apis import model_pb2  # noqa: E402
from tensorflow_serving.apis import predict_pb2  # noqa: E402
from tensorflow_serving.apis import regression_pb2  # noqa: E402

from serving import tensors  # noqa: E402
from tests.conftest import CLASSES, MAX_MESSAGE_MB, SIZE, assert_serving, pixels, png  # noqa: E402


def _request(
  inputs, model="tiny", signature="serving_default", version=None, output_filter=(), version_label=None
):
  spec = model_pb2.ModelSpec(name=model, signature_name=signature)
  if version is not None:
    spec.version.CopyFrom(wrappers_pb2.Int64Value(value=version))
  if version_label is not None:
    spec.version_label = version_label
  request = predict_pb2.PredictRequest(model_spec=spec, output_filter=list(output_filter))
  for key, value in inputs.items():
    request.inputs[key].CopyFrom(
      value if isinstance(value, tensors.tensor_pb2.TensorProto) else tensors.to_tensor_proto(value)
    )
  return request


def _truncated_tensor():
  proto = tensors.to_tensor_proto(pixels(2))
  proto.tensor_content = proto.tensor_content[:-4]
  return proto


_GOOD = pixels(2)
_PNG = png(_GOOD[0])
_CASES = {
  # name: (request builder, expected code, substring of the details)
  "wrong_dtype_uint8": (
    lambda: _request({"images": _GOOD.astype(np.uint8)}),
    grpc.StatusCode.INVALID_ARGUMENT,
    "dtype uint8",
  ),
  "wrong_dtype_string": (
    lambda: _request({"images": [b"abc", b"def"]}),
    grpc.StatusCode.INVALID_ARGUMENT,
    "dtype string",
  ),
  "wrong_dtype_class_ids_int64": (
    lambda: _request({"images": _GOOD, "class_ids": np.array([0, 1], np.int64)}, signature="explain_class"),
    grpc.StatusCode.INVALID_ARGUMENT,
    "dtype int64",
  ),
  "wrong_rank_3d": (lambda: _request({"images": _GOOD[0]}), grpc.StatusCode.INVALID_ARGUMENT, "rank 3"),
  "wrong_rank_5d": (lambda: _request({"images": _GOOD[None]}), grpc.StatusCode.INVALID_ARGUMENT, "rank 5"),
  "wrong_rank_bytes_2d": (
    lambda: _request({"images_bytes": np.array([[_PNG]], object)}, signature="predict_bytes"),
    grpc.StatusCode.INVALID_ARGUMENT,
    "rank 2",
  ),
  "wrong_height_width": (
    lambda: _request({"images": pixels(2, size=SIZE + 1)}),
    grpc.StatusCode.INVALID_ARGUMENT,
    "dimension 1 must be 16",
  ),
  "wrong_channels": (
    lambda: _request({"images": pixels(2, channels=1)}),
    grpc.StatusCode.INVALID_ARGUMENT,
    "dimension 3 must be 3",
  ),
  "missing_input": (
    lambda: _request({"images": _GOOD}, signature="explain_class"),
    grpc.StatusCode.INVALID_ARGUMENT,
    "Missing but required: {class_ids}",
  ),
  "no_inputs": (
    lambda: _request({}),
    grpc.StatusCode.INVALID_ARGUMENT,
    "input size does not match signature",
  ),
  "unknown_input_name": (
    lambda: _request({"pixels": _GOOD}),
    grpc.StatusCode.INVALID_ARGUMENT,
    "input tensor alias not found in signature: pixels",
  ),
  "extra_input": (
    lambda: _request({"images": _GOOD, "class_ids": np.zeros(2, np.int32)}),
    grpc.StatusCode.INVALID_ARGUMENT,
    "Sent extra: {class_ids}",
  ),
  "undecodable_bytes": (
    lambda: _request({"images_bytes": [b"definitely not an image"]}, signature="predict_bytes"),
    grpc.StatusCode.INVALID_ARGUMENT,
    "not a JPEG, PNG",
  ),
  "truncated_png": (
    lambda: _request({"images_bytes": [_PNG[:60]]}, signature="predict_bytes"),
    grpc.StatusCode.INVALID_ARGUMENT,
    "PNG",
  ),
  "truncated_jpeg": (
    lambda: _request({"images_bytes": [png(_GOOD[0], "JPEG")[:40]]}, signature="predict_bytes"),
    grpc.StatusCode.INVALID_ARGUMENT,
    "JPEG",
  ),
  "empty_bytes": (
    lambda: _request({"images_bytes": [b""]}, signature="predict_bytes"),
    grpc.StatusCode.INVALID_ARGUMENT,
    "is empty",
  ),
  "unknown_model": (
    lambda: _request({"images": _GOOD}, model="nope"),
    grpc.StatusCode.NOT_FOUND,
    "Servable not found for request: Latest(nope)",
  ),
  "unknown_version": (
    lambda: _request({"images": _GOOD}, version=7),
    grpc.StatusCode.NOT_FOUND,
    "Specific(tiny, 7)",
  ),
  "unknown_version_label": (
    lambda: _request({"images": _GOOD}, version_label="canary"),
    grpc.StatusCode.INVALID_ARGUMENT,
    "version label: canary",
  ),
  "missing_model_name": (
    lambda: _request({"images": _GOOD}, model=""),
    grpc.StatusCode.INVALID_ARGUMENT,
    "Missing ModelSpec name",
  ),
  # TF Serving answers FAILED_PRECONDITION here (predict_util.cc), and so does this server.
  "unknown_signature": (
    lambda: _request({"images": _GOOD}, signature="explain_everything"),
    grpc.StatusCode.FAILED_PRECONDITION,
    'Serving signature key "explain_everything" not found',
  ),
  "bad_output_filter": (
    lambda: _request({"images": _GOOD}, output_filter=["heatmap"]),
    grpc.StatusCode.INVALID_ARGUMENT,
    "output tensor alias not found",
  ),
  "duplicate_output_filter": (
    lambda: _request({"images": _GOOD}, output_filter=["gradcam", "gradcam"]),
    grpc.StatusCode.INVALID_ARGUMENT,
    "duplicate output tensor alias",
  ),
  "empty_batch": (
    lambda: _request({"images": np.zeros((0, SIZE, SIZE, 3), np.float32)}),
    grpc.StatusCode.INVALID_ARGUMENT,
    "empty batch",
  ),
  "empty_bytes_batch": (
    lambda: _request({"images_bytes": np.zeros((0,), object)}, signature="predict_bytes"),
    grpc.StatusCode.INVALID_ARGUMENT,
    "empty batch",
  ),
  "batch_size_mismatch": (
    lambda: _request({"images": _GOOD, "class_ids": np.zeros(3, np.int32)}, signature="explain_class"),
    grpc.StatusCode.INVALID_ARGUMENT,
    "different batch sizes",
  ),
  "class_id_too_large": (
    lambda: _request(
      {"images": _GOOD, "class_ids": np.array([0, CLASSES], np.int32)}, signature="explain_class"
    ),
    grpc.StatusCode.INVALID_ARGUMENT,
    "out of range",
  ),
  "class_id_negative": (
    lambda: _request({"images": _GOOD, "class_ids": np.array([-2, 0], np.int32)}, signature="explain_class"),
    grpc.StatusCode.INVALID_ARGUMENT,
    "out of range",
  ),
  "malformed_tensor_content": (
    lambda: _request({"images": _truncated_tensor()}),
    grpc.StatusCode.INVALID_ARGUMENT,
    "tensor parsing error",
  ),
  "message_too_large": (
    lambda: _request(
      {"images": pixels(int(MAX_MESSAGE_MB * 1.2 * 2**20 // (SIZE * SIZE * 12)))}, signature="predict"
    ),
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    "",
  ),
}


@pytest.mark.parametrize("case", sorted(_CASES))
def test_malformed_predict_is_rejected_and_server_keeps_serving(serving_setup, serving_stubs, case):
  build, code, details = _CASES[case]
  with pytest.raises(grpc.RpcError) as info:
    serving_stubs[0].Predict(build(), timeout=60)
  assert info.value.code() == code, info.value.details()
  assert details in info.value.details()
  assert_serving(serving_setup)


def test_malformed_metadata_status_and_classify(serving_setup, serving_stubs):
  predictions, models = serving_stubs
  cases = [
    (
      lambda: predictions.GetModelMetadata(
        get_model_metadata_pb2.GetModelMetadataRequest(model_spec=model_pb2.ModelSpec(name="tiny")),
        timeout=30,
      ),
      grpc.StatusCode.INVALID_ARGUMENT,
      "metadata_field",
    ),
    (
      lambda: predictions.GetModelMetadata(
        get_model_metadata_pb2.GetModelMetadataRequest(
          model_spec=model_pb2.ModelSpec(name="tiny"), metadata_field=["weights"]
        ),
        timeout=30,
      ),
      grpc.StatusCode.INVALID_ARGUMENT,
      "not supported",
    ),
    (
      lambda: predictions.GetModelMetadata(
        get_model_metadata_pb2.GetModelMetadataRequest(
          model_spec=model_pb2.ModelSpec(name="nope"), metadata_field=["signature_def"]
        ),
        timeout=30,
      ),
      grpc.StatusCode.NOT_FOUND,
      "nope",
    ),
    (
      lambda: models.GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec=model_pb2.ModelSpec(name="nope")), timeout=30
      ),
      grpc.StatusCode.NOT_FOUND,
      "Could not find any versions of model nope",
    ),
    (
      lambda: models.GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(
          model_spec=model_pb2.ModelSpec(name="tiny", version=wrappers_pb2.Int64Value(value=9))
        ),
        timeout=30,
      ),
      grpc.StatusCode.NOT_FOUND,
      "Could not find version 9 of model tiny",
    ),
    # Classify needs a classification signature; the exports have predict signatures only.
    (
      lambda: predictions.Classify(
        classification_pb2.ClassificationRequest(model_spec=model_pb2.ModelSpec(name="tiny")), timeout=30
      ),
      grpc.StatusCode.INVALID_ARGUMENT,
      "Expected classification signature",
    ),
    (
      lambda: predictions.Regress(
        regression_pb2.RegressionRequest(model_spec=model_pb2.ModelSpec(name="tiny")), timeout=30
      ),
      grpc.StatusCode.UNIMPLEMENTED,
      "Regress",
    ),
  ]
  for call, code, details in cases:
    with pytest.raises(grpc.RpcError) as info:
      call()
    assert info.value.code() == code, info.value.details()
    assert details in info.value.details()
  assert_serving(serving_setup)


if __name__ == "__main__":
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
