"""The client's REST mode (`RestClient`, `--rest`), predictions only on image files, and errors that name
the file: against conftest's `serving_rest` server (gRPC and REST in one process).
"""

import io
import os
import subprocess
import sys

import grpc
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from PIL import Image  # noqa: E402

from serving.client import RestClient, ServingError  # noqa: E402
from tests.conftest import CLASS_NAMES, EXPLAIN_KEYS, REPO, SIZE, pixels, png  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  folder = tmp_path_factory.mktemp("images")
  paths = {}
  for i, (name, fmt, size) in enumerate([("a.png", "PNG", (SIZE, SIZE)), ("b.jpg", "JPEG", (30, 40))]):
    image = np.random.default_rng(i).integers(0, 256, size=(*size, 3), dtype=np.uint8)
    paths[name] = folder / name
    paths[name].write_bytes(png(image, fmt))
  buffer = io.BytesIO()
  Image.new("RGB", (8192, 8192)).save(buffer, "PNG", optimize=True)
  paths["bomb.png"] = folder / "bomb.png"
  paths["bomb.png"].write_bytes(buffer.getvalue())
  paths["notes.txt"] = folder / "notes.txt"
  paths["notes.txt"].write_text("not an image")
  return {k: str(v) for k, v in paths.items()}


def test_rest_client_equals_grpc_client(serving_rest, files):
  grpc_client = serving_rest["grpc"]
  with RestClient(serving_rest["rest"], timeout=60) as rest:
    x = pixels(2, seed=21)
    for kwargs in ({}, {"class_ids": [3, -1]}, {"signature": "predict"}):
      got, want = rest.predict(x, "tiny", **kwargs), grpc_client.predict(x, "tiny", **kwargs)
      assert got.signature == want.signature and set(got) == set(want)
      for key in want:
        assert got[key].dtype == want[key].dtype
        np.testing.assert_array_equal(got[key], want[key], key)
    images = [files["a.png"], files["b.jpg"]]
    got, want = rest.predict(images, "tiny"), grpc_client.predict(images, "tiny")
    assert got.signature == "predict_bytes" and got.version == 1 and got.class_names == CLASS_NAMES
    for key in EXPLAIN_KEYS:
      np.testing.assert_array_equal(got[key], want[key], key)
    assert rest.metadata("tiny") == grpc_client.metadata("tiny")
    assert rest.status("tiny") == grpc_client.status("tiny")
    assert rest.contract("tiny") == grpc_client.contract("tiny")


def test_predictions_only_on_image_files(serving_rest, files):
  images = [files["a.png"], files["b.jpg"]]
  full = serving_rest["grpc"].predict(images, "tiny")
  with RestClient(serving_rest["rest"], timeout=60) as rest:
    for client in (serving_rest["grpc"], rest):
      only = client.predict(images, "tiny", signature="predict")
      assert only.signature == "predict_only_bytes" and set(only) == {"probabilities", "class_ids"}
      np.testing.assert_allclose(only["probabilities"], full["probabilities"], atol=1e-6)


def test_errors_name_the_file(serving_rest, files):
  images = [files["a.png"], files["bomb.png"]]
  with RestClient(serving_rest["rest"], timeout=60) as rest:
    for client in (serving_rest["grpc"], rest):
      with pytest.raises(ServingError) as info:
        client.predict(images, "tiny")
      assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT and info.value.path == files["bomb.png"]
      assert f"images_bytes[1] ({files['bomb.png']}) is 8192x8192 pixels" in str(info.value)
    assert info.value.http_status == 400
    with pytest.raises(ValueError, match="notes.txt: not a JPEG, PNG, GIF or BMP image"):
      rest.predict([files["notes.txt"]], "tiny")
    with pytest.raises(ServingError) as info:
      rest.predict(pixels(1), "nope")
    assert info.value.code == grpc.StatusCode.NOT_FOUND and info.value.http_status == 404


@pytest.mark.slow
def test_cli_rest_predictions_only_with_bad_files_named(serving_rest, files, tmp_path):
  rest_target = serving_rest["rest"].split("://", 1)[1]
  args = [files["a.png"], files["notes.txt"], files["bomb.png"], str(tmp_path / "gone.png"), files["b.jpg"]]
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "serving.client",
      "--rest",
      f"--server={rest_target}",
      "--model=tiny",
      "--nomaps",
      "--out_dir=",
      *args,
    ],
    cwd=REPO,
    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 1, result.stderr[-3000:]
  assert "signature predict_only_bytes" in result.stdout
  answered = [line.split(":")[0] for line in result.stdout.splitlines() if line.startswith(("/", "."))]
  assert answered == [files["a.png"], files["b.jpg"]], result.stdout
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 3, result.stderr
  assert any(line.startswith(f"error: {files['notes.txt']}: ") and "not a JPEG" in line for line in errors)
  assert any(line.startswith(f"error: {files['bomb.png']}: ") and "8192x8192" in line for line in errors)
  assert any("gone.png" in line and "No image file" in line for line in errors)


if __name__ == "__main__":
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
