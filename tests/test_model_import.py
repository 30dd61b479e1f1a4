"""Importing existing Keras models: functional, Sequential, nested backbones, files."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import atcon_tf
from atcon_tf import maps
from atcon_tf import testing
from atcon_tf.maps.guided import guided_patches


def _sequential():
  keras.utils.set_random_seed(0)
  return keras.Sequential(
    [
      keras.Input((16, 16, 3)),
      keras.layers.Conv2D(4, 3, activation="relu", name="c1"),
      keras.layers.Conv2D(4, 3, activation="relu", name="c2"),
      keras.layers.GlobalAveragePooling2D(),
      keras.layers.Dense(3, activation="softmax"),
    ]
  )


def _with_backbone(backbone, classes=3):
  inputs = keras.Input(backbone.input_shape[1:])
  x = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
  return keras.Model(inputs, keras.layers.Dense(classes, name="head")(x))


def test_sequential_model_target_and_softmax_bypass():
  model = _sequential()
  tapped = atcon_tf.TappedModel(model)
  assert tapped.target_layer_path == "c2"
  assert tapped.output_activation == "softmax"
  x = tf.random.normal([2, 16, 16, 3])
  np.testing.assert_allclose(tf.nn.softmax(tapped.logits(x)).numpy(), model(x).numpy(), rtol=1e-5)
  assert maps.gradcam(tapped, x).cam.shape == (2, 12, 12)


def test_nested_mobilenet_v2_backbone():
  backbone = keras.applications.MobileNetV2(
    input_shape=(64, 64, 3), include_top=False, weights=None, alpha=0.35
  )
  model = _with_backbone(backbone)
  tapped = atcon_tf.TappedModel(model)
  assert tapped.target_layer_path == f"{backbone.name}/out_relu"
  relu6_layers = [layer for layer, attr, _ in guided_patches(model) if attr == "call"]
  assert len(relu6_layers) == sum(isinstance(l, keras.layers.ReLU) for l in backbone.layers) > 30
  x = tf.random.uniform([2, 64, 64, 3], -1, 1)
  result = maps.gradcam(tapped, x, relu=False)
  assert result.cam.shape == (2, 2, 2)
  gb = maps.guided_backprop(tapped, x, result.class_ids)
  assert gb.shape == x.shape and float(tf.reduce_max(tf.abs(gb))) > 0
  with tf.GradientTape() as tape:
    loss = atcon_tf.losses.consistency_loss(tapped, x)
  grads = tape.gradient(loss, model.trainable_variables)
  assert np.isfinite(float(loss)) and sum(g is not None for g in grads) > 10


def test_nested_resnet50_backbone_finds_conv5_block3_out():
  backbone = keras.applications.ResNet50(input_shape=(64, 64, 3), include_top=False, weights=None)
  tapped = atcon_tf.TappedModel(_with_backbone(backbone))
  assert tapped.target_layer_path == f"{backbone.name}/conv5_block3_out"
  result = maps.gradcam(tapped, tf.random.uniform([1, 64, 64, 3]), relu=False)
  assert result.cam.shape == (1, 2, 2)


def test_load_from_keras_and_h5_files(tmp_path):
  model = testing.tiny_cnn(seed=3)
  x = tf.random.normal([2, 16, 16, 3])
  expected = maps.gradcam(atcon_tf.TappedModel(model), x).cam.numpy()
  for name in ("m.keras", "m.h5"):
    path = str(tmp_path / name)
    model.save(path)
    tapped = atcon_tf.TappedModel(path)
    np.testing.assert_allclose(maps.gradcam(tapped, x).cam.numpy(), expected, rtol=1e-5, atol=1e-7)
  wrapped = atcon_tf.ATCONModel(str(tmp_path / "m.keras"), schedule="atcon")
  assert wrapped.tapped.target_layer_path == "features"


def test_explicit_target_layer_and_errors(tmp_path):
  model = testing.tiny_cnn()
  assert atcon_tf.TappedModel(model, target_layer="conv2").target_layer_path == "conv2"
  with pytest.raises(atcon_tf.TargetLayerError, match="No layer 'conv9'"):
    atcon_tf.TappedModel(model, target_layer="conv9")
  flat = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4), keras.layers.Dense(2)])
  with pytest.raises(atcon_tf.TargetLayerError, match=r"4-D \(batch, height, width, channels\)"):
    atcon_tf.TappedModel(flat)
  with pytest.raises(FileNotFoundError, match="No model file"):
    atcon_tf.load_classifier(str(tmp_path / "missing.keras"))
  (tmp_path / "weights.txt").write_text("x")
  with pytest.raises(ValueError, match="expected a .keras or .h5"):
    atcon_tf.load_classifier(str(tmp_path / "weights.txt"))
  with pytest.raises(TypeError, match="keras.Model or a path"):
    atcon_tf.load_classifier(42)


if __name__ == "__main__":
  import sys

  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
