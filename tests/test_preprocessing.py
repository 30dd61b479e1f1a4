"""One preprocessing registry: TF, NumPy, Keras' own formulas and the exported graph agree, name by name.

A model is only right with the preprocessing it was trained with, so every form must give the same numbers:
`preprocessing.apply` (tf.data, tf.function, SavedModel graphs), `apply_numpy` (clients, tests), Keras'
`imagenet_utils.preprocess_input` (what a `keras.applications` model expects) and the served `predict`
signature.
"""

import os
import re

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from keras.applications import imagenet_utils  # noqa: E402

from atcon_tf import choices  # noqa: E402
from atcon_tf import preprocessing  # noqa: E402
from atcon_tf.testing import tiny_cnn  # noqa: E402

SIZE = 16
NAMES = choices.PREPROCESSING
# Written out from the formulas (not from the module under test): a first pixel of (0, 128, 255).
FIRST_PIXEL = {
  "imagenet_torch": [(0 / 255 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, (255 / 255 - 0.406) / 0.225],
  "imagenet_caffe": [255 - 103.939, 128 - 116.779, 0 - 123.68],  # BGR
  "scale_-1_1": [-1.0, 128 / 127.5 - 1, 1.0],
  "scale_0_1": [0.0, 128 / 255, 1.0],
  "none": [0.0, 128.0, 255.0],
}


def _pixels(batch=4, seed=0, size=SIZE):
  """uint8 pixels covering 0 and 255; the first pixel is (0, 128, 255)."""
  x = np.random.default_rng(seed).integers(0, 256, size=(batch, size, size, 3)).astype(np.uint8)
  x[0, 0, 0] = (0, 128, 255)
  x[0, 0, 1] = (255, 255, 255)
  x[0, 0, 2] = (0, 0, 0)
  return x


def _close(got, want):
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-5)


def test_registry_names_are_the_choices():
  assert tuple(preprocessing.REGISTRY) == NAMES
  assert set(FIRST_PIXEL) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_numpy_form_matches_the_formula(name):
  x = _pixels()
  out = preprocessing.apply_numpy(x, name)
  assert out.dtype == np.float32 and out.shape == x.shape
  _close(out[0, 0, 0], FIRST_PIXEL[name])
  assert not np.shares_memory(out, x)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_tf_form_equals_numpy_form_eager_in_tf_data_and_in_tf_function(name, dtype):
  x = _pixels().astype(dtype)
  want = preprocessing.apply_numpy(x, name)
  eager = preprocessing.apply(tf.constant(x), name)
  assert eager.dtype == tf.float32
  _close(eager, want)
  batches = tf.data.Dataset.from_tensor_slices(x).batch(3).map(lambda b: preprocessing.apply(b, name))
  _close(np.concatenate(list(batches.as_numpy_iterator())), want)
  graph = tf.function(lambda t: preprocessing.apply(t, name))
  _close(graph(tf.constant(x)), want)


@pytest.mark.parametrize("name", [n for n in NAMES if preprocessing.get(n).keras_mode is not None])
def test_keras_modes_equal_keras_preprocess_input(name):
  x = _pixels().astype(np.float32)
  mode = preprocessing.get(name).keras_mode
  keras_numpy = imagenet_utils.preprocess_input(x.copy(), data_format="channels_last", mode=mode)
  _close(preprocessing.apply_numpy(x, name), keras_numpy)
  _close(preprocessing.apply(tf.constant(x), name), keras_numpy)


def test_keras_modes_are_the_documented_ones():
  modes = {n: preprocessing.get(n).keras_mode for n in NAMES}
  assert modes == {
    "imagenet_torch": "torch",
    "imagenet_caffe": "caffe",
    "scale_-1_1": "tf",
    "scale_0_1": None,
    "none": None,
  }


@pytest.mark.parametrize("name", NAMES)
def test_invert_recovers_uint8_pixels(name):
  x = _pixels(seed=1)
  back = preprocessing.invert(preprocessing.apply_numpy(x, name), name)
  assert back.dtype == np.uint8
  np.testing.assert_array_equal(back, x)


def test_bad_name_raises_naming_the_allowed_ones():
  allowed = re.escape(str(list(NAMES)))
  images = np.zeros([1, 2, 2, 3], np.float32)
  for call in (
    lambda: preprocessing.get("zscore"),
    lambda: preprocessing.apply(tf.constant(images), "zscore"),
    lambda: preprocessing.apply_numpy(images, "zscore"),
    lambda: preprocessing.invert(images, "zscore"),
  ):
    with pytest.raises(ValueError, match=f"Unknown preprocessing 'zscore'; choose one of {allowed}"):
      call()
  with pytest.raises(ValueError, match="needs 3-channel"):
    preprocessing.check("imagenet_torch", 1)
  assert preprocessing.check("scale_0_1", 1).name == "scale_0_1"


def _model_for(name, seed):
  """tiny_cnn with its first kernel scaled to the input range, so that no preprocessing saturates the softmax
  (saturated probabilities would hide a wrong preprocessing)."""
  model = tiny_cnn(SIZE, classes=4, seed=seed)
  conv = model.get_layer("conv1")
  kernel, bias = conv.get_weights()
  scale = float(np.abs(preprocessing.apply_numpy(_pixels(), name)).max())
  conv.set_weights([kernel / scale, bias])
  return model


@pytest.mark.parametrize("name", NAMES)
def test_exported_graph_applies_the_same_preprocessing(name, tmp_path):
  """The `predict` signature on raw pixels == the Keras model on `apply_numpy(pixels)`."""
  from serving import export as export_lib

  model = _model_for(name, seed=NAMES.index(name))
  # Raw pixels as uint8 (the cast inside the graph) where the export allows it; 'none' feeds the input as is,
  # so its export takes float32 (export_model refuses uint8 for it).
  input_dtype = "float32" if name == "none" else "uint8"
  path = export_lib.export_model(
    model, tmp_path, "m", preprocessing=name, input_dtype=input_dtype, warmup=False
  )
  x = _pixels(seed=2)
  served = tf.saved_model.load(path).signatures["predict"](images=tf.constant(x.astype(input_dtype)))
  want = tf.nn.softmax(model(preprocessing.apply_numpy(x, name))).numpy()
  assert want.max() < 0.99, "saturated probabilities would not show a wrong preprocessing"
  np.testing.assert_allclose(served["probabilities"].numpy(), want, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(served["class_ids"].numpy(), want.argmax(-1))
  other = NAMES[(NAMES.index(name) + 1) % len(NAMES)]
  wrong = tf.nn.softmax(model(preprocessing.apply_numpy(x, other))).numpy()
  assert not np.allclose(served["probabilities"].numpy(), wrong, atol=1e-4)


if __name__ == "__main__":
  import sys

  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
