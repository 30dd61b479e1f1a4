"""What the server answers to good requests: Predict, GetModelMetadata, GetModelStatus and the
ATCON contract, equal to the in-process model, also under eight concurrent clients.

The server and its tiny export are conftest's session fixtures `serving_setup` and `serving_stubs`.
"""

import json
import os
import sys
import threading
import types

import grpc
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from google.protobuf import wrappers_pb2  # noqa: E402
from tensorflow_serving.apis import get_model_metadata_pb2  # noqa: E402
from tensorflow_serving.apis import model_pb2  # noqa: E402

from atcon_tf.contract import ServingContract  # noqa: E402
from serving import export as export_lib  # noqa: E402
from serving.client import ServingClient  # noqa: E402
from tests.conftest import (  # noqa: E402
  CLASS_NAMES,
  EXPLAIN_KEYS,
  SIZE,
  assert_close,
  assert_serving,
  pixels,
  png,
  reference_outputs,
  reference_predict,
)


def test_maps_over_grpc_equal_in_process_model(serving_setup):
  client, tapped = serving_setup["client"], serving_setup["tapped"]
  x = pixels(3, seed=1)
  want = reference_outputs(tapped, x, "scale_0_1")
  result = client.predict(x, "tiny")
  assert (result.model, result.version, result.signature) == ("tiny", 1, "serving_default")
  assert_close(result, want)
  assert_close(
    client.predict(x, "tiny", signature="predict"),
    reference_predict(tapped, x, "scale_0_1"),
    keys=("probabilities", "class_ids"),
  )
  class_ids = np.array([2, -1, 0], np.int32)
  explained = client.predict(x, "tiny", class_ids=class_ids)
  assert explained.signature == "explain_class"
  assert_close(explained, reference_outputs(tapped, x, "scale_0_1", class_ids=class_ids))
  # Encoded images (bytes and a path) -> predict_bytes, decoded in the graph.
  path = serving_setup["root"] / "one.png"
  path.write_bytes(png(x[1]))
  encoded = client.predict([png(x[0]), str(path)], "tiny")
  assert encoded.signature == "predict_bytes"
  assert_close(encoded, {k: v[:2] for k, v in want.items()})
  # uint8 arrays are cast to the signature's dtype (float32) by the client.
  assert_close(client.predict(x.astype(np.uint8), "tiny", version=1), want)
  filtered = client.predict(x, "tiny", output_filter=["gradcam", "consistency"])
  assert set(filtered) == {"gradcam", "consistency"}
  assert_close(filtered, want, keys=("gradcam", "consistency"))


def test_metadata_and_status(serving_setup, serving_stubs):
  client = serving_setup["client"]
  metadata = client.metadata("tiny")
  assert metadata["model"] == "tiny" and metadata["version"] == 1
  signatures = metadata["signatures"]
  assert {"serving_default", "predict", "predict_bytes", "explain_class", "explain_class_bytes"} <= set(
    signatures
  )
  assert signatures["serving_default"]["inputs"] == {
    "images": {"dtype": "float32", "shape": [None, SIZE, SIZE, 3]}
  }
  assert signatures["predict_bytes"]["inputs"] == {"images_bytes": {"dtype": "string", "shape": [None]}}
  assert set(signatures["serving_default"]["outputs"]) == set(EXPLAIN_KEYS)
  assert set(signatures["predict"]["outputs"]) == {"probabilities", "class_ids"}
  assert signatures["explain_class"]["inputs"]["class_ids"] == {"dtype": "int32", "shape": [None]}
  assert signatures["serving_default"]["method"] == "tensorflow/serving/predict"
  assert client.status("tiny") == [{"version": 1, "state": "AVAILABLE", "error_code": 0, "error_message": ""}]
  assert client.status("tiny", version=1)[0]["state"] == "AVAILABLE"
  # The raw response is TF Serving's: an Any holding a SignatureDefMap.
  response = serving_stubs[0].GetModelMetadata(
    get_model_metadata_pb2.GetModelMetadataRequest(
      model_spec=model_pb2.ModelSpec(name="tiny"), metadata_field=["signature_def"]
    ),
    timeout=30,
  )
  signature_map = get_model_metadata_pb2.SignatureDefMap()
  assert response.metadata["signature_def"].Unpack(signature_map)
  assert "predict_bytes" in signature_map.signature_def


def test_contract_over_grpc_is_the_exported_one(serving_setup, serving_stubs):
  """GetModelMetadata's "atcon_contract": what the export recorded, without reading its files."""
  contract = serving_setup["client"].contract("tiny")
  assert contract["preprocessing"] == "scale_0_1"
  assert contract["target_layer"] == "features"  # tiny_cnn's last spatial layer
  assert contract["image_size"] == [SIZE, SIZE]
  assert contract["class_names"] == CLASS_NAMES
  assert contract["multi_label"] is False
  assert ServingContract.from_json(contract) == export_lib.load_contract(serving_setup["path"])
  assert serving_setup["client"].contract("tiny", version=1) == contract
  # Raw: both fields in one request, the contract a JSON StringValue inside the Any.
  response = serving_stubs[0].GetModelMetadata(
    get_model_metadata_pb2.GetModelMetadataRequest(
      model_spec=model_pb2.ModelSpec(name="tiny"), metadata_field=["signature_def", "atcon_contract"]
    ),
    timeout=30,
  )
  value = wrappers_pb2.StringValue()
  assert response.metadata["atcon_contract"].Unpack(value)
  assert json.loads(value.value) == contract
  assert response.metadata["signature_def"].Unpack(get_model_metadata_pb2.SignatureDefMap())
  # signature_def alone answers signature_def alone, as TF Serving does.
  response = serving_stubs[0].GetModelMetadata(
    get_model_metadata_pb2.GetModelMetadataRequest(
      model_spec=model_pb2.ModelSpec(name="tiny"), metadata_field=["signature_def"]
    ),
    timeout=30,
  )
  assert set(response.metadata) == {"signature_def"}


def test_server_refuses_the_contract_of_an_export_without_one():
  from serving.server import services

  servable = types.SimpleNamespace(name="old", version=3, export_info={"num_classes": 4})
  with pytest.raises(services.ServingError) as info:
    services._contract(servable)  # pylint: disable=protected-access
  assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
  assert "Model old version 3 records no ATCON contract" in info.value.message
  assert "assets.extra/atcon_serving.json" in info.value.message


def test_eight_concurrent_clients(serving_setup):
  target, tapped = serving_setup["server"].target, serving_setup["tapped"]
  inputs = [pixels(2, seed=100 + i) for i in range(8)]
  expected = [reference_outputs(tapped, x, "scale_0_1") for x in inputs]
  failures, done = [], []

  def worker(i):
    with ServingClient(target, timeout=60) as client:
      for j in range(6):
        signature = ("serving_default", "predict", "predict_bytes")[j % 3]
        try:
          if signature == "predict_bytes":
            result = client.predict([png(p) for p in inputs[i]], "tiny")
          else:
            result = client.predict(inputs[i], "tiny", signature=signature)
          keys = ("probabilities", "class_ids") if signature == "predict" else EXPLAIN_KEYS
          assert_close(result, expected[i], keys=keys)
          done.append(1)
        except Exception as e:  # pylint: disable=broad-except
          failures.append(f"client {i} request {j}: {e!r}")

  threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(timeout=300)
  assert not failures, failures[:5]
  assert len(done) == 48
  assert_serving(serving_setup)


if __name__ == "__main__":
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
