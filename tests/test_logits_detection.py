"""Logits are found by what the last layers do, not by how the softmax is spelled (issue 12)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import atcon_tf
from atcon_tf import heads
from atcon_tf import testing

CLASSES = 4


def _features_model(seed=0):
  keras.utils.set_random_seed(seed)
  inputs = keras.Input((16, 16, 3))
  x = keras.layers.Conv2D(6, 3, activation="relu", name="conv")(inputs)
  return inputs, keras.layers.GlobalAveragePooling2D(name="gap")(x)


def _head(spelling):
  """A classifier whose output activation is written as `spelling`; returns (model, expected name)."""
  inputs, features = _features_model()
  dense = lambda activation=None: keras.layers.Dense(CLASSES, activation=activation, name="dense")  # noqa: E731
  heads_by_spelling = {
    "tf.nn.softmax": (lambda f: dense(tf.nn.softmax)(f), "softmax"),
    "keras.ops.softmax": (lambda f: dense(keras.ops.softmax)(f), "softmax"),
    "Lambda(softmax)": (lambda f: keras.layers.Lambda(lambda z: tf.nn.softmax(z))(dense()(f)), "softmax"),
    "softmax+Dropout": (lambda f: keras.layers.Dropout(0.3)(dense("softmax")(f)), "softmax"),
    "Activation(softmax)": (lambda f: keras.layers.Activation("softmax")(dense()(f)), "softmax"),
    "Softmax layer": (lambda f: keras.layers.Softmax()(dense()(f)), "softmax"),
    "log_softmax": (lambda f: keras.layers.Lambda(tf.nn.log_softmax)(dense()(f)), "log_softmax"),
    "tf.sigmoid": (lambda f: dense(tf.sigmoid)(f), "sigmoid"),
    "logits": (lambda f: dense()(f), None),
  }
  build, expected = heads_by_spelling[spelling]
  return keras.Model(inputs, build(features)), expected


def _expected_logits(model, x):
  """features @ W + b, from the Dense layer's own weights: independent of any bypass."""
  features = keras.Model(model.inputs, model.get_layer("gap").output)(x)
  kernel, bias = model.get_layer("dense").get_weights()
  return features.numpy() @ kernel + bias


@pytest.mark.parametrize(
  "spelling",
  [
    "tf.nn.softmax",
    "keras.ops.softmax",
    "Lambda(softmax)",
    "softmax+Dropout",
    "Activation(softmax)",
    "Softmax layer",
    "log_softmax",
    "tf.sigmoid",
    "logits",
  ],
)
def test_output_activation_found_by_what_it_does(spelling):
  model, expected = _head(spelling)
  tapped = atcon_tf.TappedModel(model)
  assert tapped.output_activation == expected
  x = tf.random.uniform([3, 16, 16, 3])
  logits = tapped.logits(x).numpy()
  np.testing.assert_allclose(logits, _expected_logits(model, x), rtol=1e-5, atol=1e-6)
  # Served probabilities: the head applied once, equal to the model's own probabilities.
  served = tapped.probabilities(tf.constant(logits)).numpy()
  own = {"log_softmax": np.exp, None: lambda z: tf.nn.softmax(z).numpy()}.get(expected, np.asarray)(model(x))
  np.testing.assert_allclose(served, own, rtol=1e-5, atol=1e-6)
  assert tapped.multi_label == (expected == "sigmoid")


def test_supervised_loss_and_maps_use_the_logits():
  model, _ = _head("tf.nn.softmax")
  tapped = atcon_tf.TappedModel(model)
  x = tf.random.uniform([2, 16, 16, 3])
  y = tf.constant([1, 3])
  expected = tf.keras.losses.sparse_categorical_crossentropy(y, _expected_logits(model, x), from_logits=True)
  loss = heads.supervised_loss(y, tapped.logits(x), multi_label=False)
  np.testing.assert_allclose(loss.numpy(), expected.numpy(), rtol=1e-5)
  # Grad-CAM of the logit, not of the probability: equals Grad-CAM of the same network without softmax.
  plain = keras.Model(model.inputs, model.get_layer("gap").output)
  twin = keras.Model(plain.inputs, keras.layers.Dense(CLASSES, name="dense2")(plain.output))
  twin.get_layer("dense2").set_weights(model.get_layer("dense").get_weights())
  cam = atcon_tf.maps.gradcam(tapped, x, [1, 3]).cam.numpy()
  twin_cam = atcon_tf.maps.gradcam(atcon_tf.TappedModel(twin), x, [1, 3]).cam.numpy()
  np.testing.assert_allclose(cam, twin_cam, rtol=1e-5, atol=1e-7)


def test_unresolvable_probabilities_ask_for_logits_layer():
  inputs, features = _features_model()
  logits = keras.layers.Dense(CLASSES, name="dense")(features)
  # Label smoothing written into the model: rows sum to 1, but no single bypass recovers logits.
  smoothed = keras.layers.Lambda(lambda z: 0.9 * tf.nn.softmax(z) + 0.1 / CLASSES)(logits)
  model = keras.Model(inputs, smoothed)
  with pytest.raises(atcon_tf.LogitsError, match="logits_layer="):
    atcon_tf.TappedModel(model)
  tapped = atcon_tf.TappedModel(model, logits_layer="dense")
  x = tf.random.uniform([2, 16, 16, 3])
  np.testing.assert_allclose(tapped.logits(x).numpy(), _expected_logits(model, x), rtol=1e-5, atol=1e-6)
  assert atcon_tf.ATCONModel(model, logits_layer="dense").contract.logits_layer == "dense"


def test_logit_models_are_left_alone():
  model = testing.tiny_cnn(seed=2)
  tapped = atcon_tf.TappedModel(model)
  assert tapped.output_activation is None and tapped.logit_patches == []
  x = tf.random.uniform([2, 16, 16, 3])
  np.testing.assert_array_equal(tapped.logits(x).numpy(), model(x).numpy())


@pytest.mark.slow
def test_export_serves_the_probabilities_once(tmp_path):
  """A model ending in Dense(activation=tf.nn.softmax): the SavedModel returns the model's own softmax,
  not softmax(softmax)."""
  from serving.export import export_model

  model, _ = _head("tf.nn.softmax")
  path = export_model(model, tmp_path, "m", preprocessing="scale_0_1", warmup=False)
  loaded = tf.saved_model.load(path)
  pixels = np.random.default_rng(3).uniform(0, 255, (3, 16, 16, 3)).astype(np.float32)
  served = loaded.signatures["predict"](images=tf.constant(pixels))["probabilities"].numpy()
  np.testing.assert_allclose(served, model(pixels / 255.0).numpy(), rtol=1e-5, atol=1e-6)
  twice = tf.nn.softmax(model(pixels / 255.0)).numpy()
  assert np.abs(served - twice).max() > 1e-3  # what serving softmax again would have returned


def test_a_model_taking_uint8_pixels_is_probed_with_pixels():
  inputs = keras.Input((16, 16, 3), dtype="uint8")
  x = keras.layers.Rescaling(1 / 255.0)(inputs)
  x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu", name="conv")(x))
  model = keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax", name="dense")(x))
  tapped = atcon_tf.TappedModel(model)
  assert tapped.output_activation == "softmax"
  pixels = tf.constant(np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3)), tf.uint8)
  np.testing.assert_allclose(tf.nn.softmax(tapped.logits(pixels)).numpy(), model(pixels).numpy(), rtol=1e-5)


if __name__ == "__main__":
  import sys

  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
