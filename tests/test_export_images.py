"""Encoded images in the export: size limits read from headers before decoding (PNG, JPEG, GIF, BMP),
the predict-only and overlay-PNG bytes signatures, and complete declared shapes of every map output.
"""

import io
import os
import sys

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

import atcon_tf  # noqa: E402
from atcon_tf.testing import tiny_cnn  # noqa: E402
from serving import export as export_lib  # noqa: E402
from serving.client import overlays as client_overlays  # noqa: E402
from serving.export import decode_limits  # noqa: E402
from tests.conftest import reference_outputs, reference_predict  # noqa: E402

SIZE = 16
LIMIT = 1000  # pixels: 40x30 = 1200 is over, 30x30 = 900 is under


def _encode(pixels, fmt):
  buffer = io.BytesIO()
  Image.fromarray(np.asarray(pixels, np.uint8)).save(buffer, fmt)
  return buffer.getvalue()


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
  model = tiny_cnn(SIZE, classes=4)
  root = str(tmp_path_factory.mktemp("exports"))
  path = export_lib.export_model(model, root, "small", preprocessing="scale_0_1", max_image_pixels=LIMIT)
  return atcon_tf.TappedModel(model), path, tf.saved_model.load(path)


def test_limit_is_recorded_and_the_default_is_set(limited):
  assert export_lib.read_export_info(limited[1])["max_image_pixels"] == LIMIT
  assert decode_limits.DEFAULT_MAX_PIXELS == 4096 * 4096


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP"])
def test_header_size_over_the_limit_is_refused_by_the_graph(limited, fmt):
  _, _, loaded = limited
  rng = np.random.default_rng(0)
  under = _encode(rng.integers(0, 256, (30, 30, 3)), fmt)
  wide = _encode(rng.integers(0, 256, (30, 40, 3)), fmt)  # width 40, height 30
  for signature in ("predict_bytes", "predict_only_bytes", "overlays_bytes"):
    function = loaded.signatures[signature]
    assert function(images_bytes=tf.constant([under]))["probabilities"].shape == (1, 4)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
      function(images_bytes=tf.constant([under, wide]))
    assert "images_bytes[1] is 40x30 pixels" in info.value.message, info.value.message
    assert "limit of 1000 pixels" in info.value.message


def test_header_sizes_read_without_decoding():
  """Top-down BMP (negative height) and a truncated PNG header; the reader alone, eagerly."""
  bmp = bytearray(_encode(np.zeros((3, 7, 3)), "BMP"))
  bmp[22:26] = (-3).to_bytes(4, "little", signed=True)
  assert [int(v) for v in decode_limits.image_size(tf.constant(bytes(bmp)))] == [3, 7]
  assert [int(v) for v in decode_limits.image_size(tf.constant(b"\x89PNG\r\n\x1a\n"))] == [0, 0]
  assert [int(v) for v in decode_limits.image_size(tf.constant(b"plain text"))] == [0, 0]


def test_predict_only_bytes_equals_predict(limited):
  tapped, _, loaded = limited
  x = np.random.default_rng(1).integers(0, 256, (2, SIZE, SIZE, 3)).astype(np.float32)
  got = loaded.signatures["predict_only_bytes"](images_bytes=tf.constant([_encode(p, "PNG") for p in x]))
  assert set(got) == {"probabilities", "class_ids"}
  want = reference_predict(tapped, x, "scale_0_1")
  np.testing.assert_allclose(got["probabilities"].numpy(), want["probabilities"], atol=1e-5)
  np.testing.assert_array_equal(got["class_ids"].numpy(), want["class_ids"])


def test_overlays_bytes_are_pngs_of_the_maps_at_the_original_size(limited):
  tapped, _, loaded = limited
  x = np.random.default_rng(2).integers(0, 256, (1, SIZE, SIZE, 3)).astype(np.float32)
  got = loaded.signatures["overlays_bytes"](images_bytes=tf.constant([_encode(x[0], "PNG")]))
  assert set(got) == {"probabilities", "class_ids", "consistency", "gradcam_bytes", "guided_backprop_bytes"}
  want = reference_outputs(tapped, x, "scale_0_1")
  np.testing.assert_allclose(got["consistency"].numpy(), want["consistency"], atol=1e-5)
  image = x[0].astype(np.uint8)
  for key, alpha, weighted in (("gradcam", 0.5, False), ("guided_backprop", 0.9, True)):
    picture = np.asarray(Image.open(io.BytesIO(got[f"{key}_bytes"].numpy()[0])))
    assert picture.shape == (SIZE, SIZE, 3)
    # At the model's size no resize happens: the client's NumPy drawing of the reference map matches.
    drawn = client_overlays.overlay(image, want[key][0], alpha=alpha, weighted=weighted)
    assert np.abs(picture.astype(int) - drawn.astype(int)).max() <= 1, key
  # Another size: the overlay keeps the sent image's size (width 24, height 20).
  other = _encode(np.random.default_rng(3).integers(0, 256, (20, 24, 3)), "JPEG")
  got = loaded.signatures["overlays_bytes"](images_bytes=tf.constant([other]))
  assert Image.open(io.BytesIO(got["gradcam_bytes"].numpy()[0])).size == (24, 20)


def test_every_map_output_declares_its_full_shape(limited):
  """gradcam used to be declared (-1, -1, -1); every map output is (-1, H, W) in the SignatureDefs."""
  from tensorflow.core.protobuf import saved_model_pb2

  saved = saved_model_pb2.SavedModel()
  with open(os.path.join(limited[1], "saved_model.pb"), "rb") as f:
    saved.ParseFromString(f.read())
  signature_defs = saved.meta_graphs[0].signature_def
  checked = 0
  for name in export_lib.SIGNATURES:
    for key in ("gradcam", "guided_backprop"):
      if key in signature_defs[name].outputs:
        dims = [d.size for d in signature_defs[name].outputs[key].tensor_shape.dim]
        assert dims == [-1, SIZE, SIZE], (name, key, dims)
        checked += 1
  assert checked == 10  # five explaining signatures (maps included) x two maps


if __name__ == "__main__":
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
