"""TF Serving's REST API of the local server, called with a real HTTP client (requests): the same outputs
as gRPC from the same process, TF Serving's JSON formats and HTTP statuses, malformed requests answered
with {"error": ...} while the server keeps serving, concurrency, a hot swap, and the Prometheus metrics.

The server is conftest's `serving_rest` (gRPC + REST + dynamic batching over the tiny export).
"""

import base64
import io
import os
import sys
import threading
import time

import numpy as np
import pytest
import requests

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from PIL import Image  # noqa: E402

import atcon_tf  # noqa: E402
from atcon_tf.testing import tiny_cnn  # noqa: E402
from serving import export as export_lib  # noqa: E402
from tests.conftest import CLASSES, EXPLAIN_KEYS, SIZE, assert_close, pixels, png, reference_outputs  # noqa: E402


def _post(rest, path, body, **kwargs):
  return requests.post(f"{rest}{path}", json=body, timeout=60, **kwargs)


def _b64(data):
  return {"b64": base64.b64encode(data).decode("ascii")}


def _alive(setup):
  assert setup["server"].alive(), setup["server"].log()[-3000:]
  answer = _post(
    setup["rest"], "/v1/models/tiny:predict", {"signature_name": "predict", "inputs": pixels(1).tolist()}
  )
  assert answer.status_code == 200, answer.text


def test_rest_outputs_equal_grpc_outputs(serving_rest, serving_setup):
  rest, grpc_client = serving_rest["rest"], serving_rest["grpc"]
  x = pixels(3, seed=11)
  want = reference_outputs(serving_setup["tapped"], x, "scale_0_1")
  via_grpc = grpc_client.predict(x, "tiny")
  assert_close(via_grpc, want)
  # Row format: one object per instance.
  answer = _post(rest, "/v1/models/tiny:predict", {"instances": x.tolist()})
  assert answer.status_code == 200, answer.text
  rows = answer.json()["predictions"]
  assert len(rows) == 3 and set(rows[0]) == set(EXPLAIN_KEYS)
  for key in EXPLAIN_KEYS:  # JSON floats round-trip float32 exactly
    np.testing.assert_array_equal(np.array([r[key] for r in rows], via_grpc[key].dtype), via_grpc[key], key)
  # Columnar format, a version in the path, and explain_class with named inputs per instance.
  answer = _post(rest, "/v1/models/tiny/versions/1:predict", {"inputs": {"images": x.tolist()}})
  outputs = answer.json()["outputs"]
  for key in EXPLAIN_KEYS:
    np.testing.assert_array_equal(np.array(outputs[key], via_grpc[key].dtype), via_grpc[key], key)
  ids = [2, -1, 0]
  body = {
    "signature_name": "explain_class",
    "instances": [{"images": x[i].tolist(), "class_ids": ids[i]} for i in range(3)],
  }
  rows = _post(rest, "/v1/models/tiny:predict", body).json()["predictions"]
  explained = grpc_client.predict(x, "tiny", class_ids=ids)
  np.testing.assert_array_equal([r["class_ids"] for r in rows], explained["class_ids"])
  np.testing.assert_array_equal(np.array([r["gradcam"] for r in rows], np.float32), explained["gradcam"])
  # One output only: predictions are bare values (TF Serving's rule).
  one = _post(rest, "/v1/models/tiny:predict", {"signature_name": "predict", "instances": x[:1].tolist()})
  assert "predictions" in one.json()


def test_rest_bytes_in_and_pictures_out(serving_rest):
  rest, grpc_client = serving_rest["rest"], serving_rest["grpc"]
  x = pixels(2, seed=12)
  encoded = [png(p) for p in x]
  via_grpc = grpc_client.predict(encoded, "tiny", signature="overlays_bytes")
  answer = _post(
    rest,
    "/v1/models/tiny:predict",
    {"signature_name": "overlays_bytes", "instances": [_b64(e) for e in encoded]},
  )
  assert answer.status_code == 200, answer.text
  rows = answer.json()["predictions"]
  for i, row in enumerate(rows):
    for key in ("gradcam_bytes", "guided_backprop_bytes"):  # *_bytes outputs come base64-encoded
      picture = base64.b64decode(row[key]["b64"])
      assert picture == via_grpc[key][i]
      assert Image.open(io.BytesIO(picture)).size == (SIZE, SIZE)
    np.testing.assert_array_equal(np.float32(row["consistency"]), via_grpc["consistency"][i])
  columnar = _post(
    rest,
    "/v1/models/tiny:predict",
    {"signature_name": "predict_only_bytes", "inputs": {"images_bytes": [_b64(e) for e in encoded]}},
  )
  np.testing.assert_array_equal(
    np.array(columnar.json()["outputs"]["probabilities"], np.float32),
    grpc_client.predict(encoded, "tiny", signature="predict_only_bytes")["probabilities"],
  )


def test_rest_status_and_metadata(serving_rest):
  rest = serving_rest["rest"]
  status = requests.get(f"{rest}/v1/models/tiny", timeout=30)
  assert status.status_code == 200
  assert status.json() == {
    "model_version_status": [
      {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]
  }
  assert requests.get(f"{rest}/v1/models/tiny/versions/1", timeout=30).json() == status.json()
  metadata = requests.get(f"{rest}/v1/models/tiny/metadata", timeout=30).json()
  assert metadata["model_spec"] == {"name": "tiny", "signature_name": "", "version": "1"}
  signature_defs = metadata["metadata"]["signature_def"]["signature_def"]
  assert set(export_lib.SIGNATURES) <= set(signature_defs)
  gradcam = signature_defs["serving_default"]["outputs"]["gradcam"]
  assert [d["size"] for d in gradcam["tensor_shape"]["dim"]] == ["-1", str(SIZE), str(SIZE)]
  assert metadata["metadata"]["atcon_contract"]["preprocessing"] == "scale_0_1"
  missing = requests.get(f"{rest}/v1/models/tiny/versions/9", timeout=30)
  assert missing.status_code == 404 and "Could not find version 9" in missing.json()["error"]


_X = pixels(2).tolist()
_MALFORMED = {
  # name: (method, path, body (dict -> JSON; bytes -> raw), HTTP status, substring of the error)
  "invalid_json": ("POST", "/v1/models/tiny:predict", b"{not json", 400, "JSON Parse error"),
  "not_an_object": ("POST", "/v1/models/tiny:predict", b"[1, 2]", 400, "must be a JSON object"),
  "no_instances_or_inputs": (
    "POST",
    "/v1/models/tiny:predict",
    {"x": 1},
    400,
    "Missing 'inputs' or 'instances'",
  ),
  "both_formats": ("POST", "/v1/models/tiny:predict", {"instances": _X, "inputs": _X}, 400, "only one of"),
  "empty_instances": ("POST", "/v1/models/tiny:predict", {"instances": []}, 400, "non-empty list"),
  "ragged": ("POST", "/v1/models/tiny:predict", {"instances": [[1, 2], [3]]}, 400, "different lengths"),
  "strings_for_floats": (
    "POST",
    "/v1/models/tiny:predict",
    {"instances": [["a"]]},
    400,
    "expects float32 numbers",
  ),
  "wrong_rank": ("POST", "/v1/models/tiny:predict", {"instances": [1.0, 2.0]}, 400, "has rank 1"),
  "wrong_shape": (
    "POST",
    "/v1/models/tiny:predict",
    {"inputs": pixels(1, size=8).tolist()},
    400,
    "dimension 1 must be 16",
  ),
  "unknown_input": (
    "POST",
    "/v1/models/tiny:predict",
    {"inputs": {"pixels": _X}},
    400,
    "input tensor alias not found",
  ),
  "missing_class_ids": (
    "POST",
    "/v1/models/tiny:predict",
    {"signature_name": "explain_class", "inputs": {"images": _X}},
    400,
    "Missing but required: {class_ids}",
  ),
  "fractional_class_ids": (
    "POST",
    "/v1/models/tiny:predict",
    {"signature_name": "explain_class", "inputs": {"images": _X, "class_ids": [0.5, 1]}},
    400,
    "got fractions",
  ),
  "class_id_out_of_range": (
    "POST",
    "/v1/models/tiny:predict",
    {"signature_name": "explain_class", "inputs": {"images": _X, "class_ids": [0, CLASSES]}},
    400,
    "out of range",
  ),
  "mixed_instances": (
    "POST",
    "/v1/models/tiny:predict",
    {"instances": [{"images": _X[0]}, _X[1]]},
    400,
    "mixes named inputs",
  ),
  "bad_base64": (
    "POST",
    "/v1/models/tiny:predict",
    {"signature_name": "predict_bytes", "instances": [{"b64": "@@@"}]},
    400,
    "not valid base64",
  ),
  "b64_not_an_image": (
    "POST",
    "/v1/models/tiny:predict",
    {"signature_name": "predict_bytes", "instances": [_b64(b"hello")]},
    400,
    "is not a JPEG, PNG, GIF or BMP",
  ),
  "number_for_bytes": (
    "POST",
    "/v1/models/tiny:predict",
    {"signature_name": "predict_bytes", "instances": [3]},
    400,
    "is a string tensor",
  ),
  "unknown_signature": (
    "POST",
    "/v1/models/tiny:predict",
    {"signature_name": "nope", "inputs": _X},
    400,
    "Serving signature key \"nope\" not found",
  ),
  "unknown_model": (
    "POST",
    "/v1/models/nope:predict",
    {"inputs": _X},
    404,
    "Servable not found for request: Latest(nope)",
  ),
  "unknown_version": ("POST", "/v1/models/tiny/versions/7:predict", {"inputs": _X}, 404, "Specific(tiny, 7)"),
  "unknown_label": (
    "POST",
    "/v1/models/tiny/labels/gold:predict",
    {"inputs": _X},
    400,
    "Unrecognized servable version label: gold",
  ),
  "get_on_predict": (
    "GET",
    "/v1/models/tiny:predict",
    None,
    400,
    "Malformed request: GET /v1/models/tiny:predict",
  ),
  "unknown_verb": ("POST", "/v1/models/tiny:explode", {"inputs": _X}, 400, "Malformed request"),
  "classify": ("POST", "/v1/models/tiny:classify", {"examples": []}, 501, "not implemented"),
  "outside_v1": ("GET", "/v2/models/tiny", None, 404, "Not found"),
  "too_large": (
    "POST",
    "/v1/models/tiny:predict",
    b"[" + b"0," * (3 << 20) + b"0]",
    429,
    "exceeds the limit",
  ),
}


@pytest.mark.parametrize("case", sorted(_MALFORMED))
def test_malformed_rest_requests_get_tf_serving_statuses(serving_rest, case):
  method, path, body, status, expected = _MALFORMED[case]
  url = serving_rest["rest"] + path
  if isinstance(body, bytes):
    answer = requests.request(
      method, url, data=body, timeout=60, headers={"Content-Type": "application/json"}
    )
  else:
    answer = requests.request(method, url, json=body, timeout=60)
  assert answer.status_code == status, (answer.status_code, answer.text)
  assert set(answer.json()) == {"error"}
  assert expected in answer.json()["error"], answer.json()["error"]


def test_a_bomb_over_rest_is_refused_and_the_server_keeps_serving(serving_rest):
  buffer = io.BytesIO()
  Image.new("RGB", (8192, 8192)).save(buffer, "PNG", optimize=True)
  body = {"signature_name": "predict_bytes", "instances": [_b64(png(pixels(1)[0])), _b64(buffer.getvalue())]}
  answer = _post(serving_rest["rest"], "/v1/models/tiny:predict", body)
  assert answer.status_code == 400 and "images_bytes[1] is 8192x8192 pixels" in answer.json()["error"]
  _alive(serving_rest)


def test_rest_and_grpc_clients_at_once(serving_rest, serving_setup):
  rest, grpc_client = serving_rest["rest"], serving_rest["grpc"]
  inputs = [pixels(2, seed=200 + i) for i in range(8)]
  expected = [reference_outputs(serving_setup["tapped"], x, "scale_0_1") for x in inputs]
  failures, done = [], []

  def worker(i):
    with requests.Session() as session:
      for j in range(4):
        try:
          if (i + j) % 2:
            result = grpc_client.predict(inputs[i], "tiny")
          else:
            answer = session.post(
              f"{rest}/v1/models/tiny:predict", json={"inputs": inputs[i].tolist()}, timeout=60
            )
            assert answer.status_code == 200, answer.text
            result = {k: np.asarray(v) for k, v in answer.json()["outputs"].items()}
          assert_close(result, expected[i])
          done.append(1)
        except Exception as e:  # pylint: disable=broad-except
          failures.append(f"client {i} request {j}: {e!r}")

  threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(timeout=300)
  assert not failures, failures[:5]
  assert len(done) == 32
  _alive(serving_rest)


@pytest.mark.slow
def test_hot_swap_over_rest_has_no_failures(serving_rest, serving_setup):
  rest = serving_rest["rest"]
  new_model = tiny_cnn(SIZE, classes=CLASSES, seed=3)
  x = pixels(2, seed=13)
  want = {
    1: reference_outputs(serving_setup["tapped"], x, "scale_0_1"),
    2: reference_outputs(atcon_tf.TappedModel(new_model), x, "scale_0_1"),
  }
  stop, failures, seen = threading.Event(), [], []

  def worker():
    with requests.Session() as session:
      while not stop.is_set():
        try:
          answer = session.post(
            f"{rest}/v1/models/swap_rest:predict", json={"inputs": x.tolist()}, timeout=60
          )
          assert answer.status_code == 200, answer.text
          probabilities = np.asarray(answer.json()["outputs"]["probabilities"])
          version = 1 if np.allclose(probabilities, want[1]["probabilities"], atol=1e-5) else 2
          assert_close({k: np.asarray(v) for k, v in answer.json()["outputs"].items()}, want[version])
          seen.append(version)
        except Exception as e:  # pylint: disable=broad-except
          failures.append(repr(e))

  threads = [threading.Thread(target=worker) for _ in range(4)]
  for t in threads:
    t.start()
  try:
    time.sleep(0.5)
    export_lib.export_model(new_model, serving_setup["export_dir"], "swap_rest", preprocessing="scale_0_1")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
      status = requests.get(f"{rest}/v1/models/swap_rest", timeout=30).json()["model_version_status"]
      states = {s["version"]: s["state"] for s in status}
      if states == {"2": "AVAILABLE", "1": "END"} and seen[-8:] == [2] * 8:
        break
      time.sleep(0.1)
  finally:
    stop.set()
    for t in threads:
      t.join(timeout=120)
  assert not failures, failures[:5]
  assert 1 in seen and seen[-8:] == [2] * 8
  assert states == {"2": "AVAILABLE", "1": "END"}, states


def test_prometheus_metrics_count_both_apis_and_batches(serving_rest):
  rest, grpc_client = serving_rest["rest"], serving_rest["grpc"]
  grpc_client.predict(pixels(1), "tiny", signature="predict")
  _post(rest, "/v1/models/tiny:predict", {"signature_name": "predict", "inputs": pixels(1).tolist()})
  _post(rest, "/v1/models/nope:predict", {"inputs": _X})
  answer = requests.get(f"{rest}/monitoring/prometheus/metrics", timeout=30)
  assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/plain")
  text = answer.text
  for api in ("grpc", "rest"):
    assert (
      f'atcon_serving_requests_total{{api="{api}",model="tiny",signature="predict",status="OK",version="1"}}'
      in text
    )
    assert (
      f'atcon_serving_request_latency_seconds_count{{api="{api}",model="tiny",signature="predict"}}' in text
    )
  assert 'model="nope",signature="serving_default",status="NOT_FOUND"' in text
  assert 'atcon_serving_loaded_versions{model="tiny"} 1.0' in text
  # Batch sizes are padded to the allowed sizes of the batching file (4, 8): a lone request runs as 4.
  assert 'atcon_serving_batch_size_bucket{le="4.0",model="tiny",signature="predict"}' in text
  assert 'atcon_serving_batch_size_bucket{le="2.0",model="tiny",signature="predict"} 0.0' in text


if __name__ == "__main__":
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
