"""The fused ATCON step (one forward of x, the GAP -> Dense CAM shortcut) equals the pass-by-pass one (issue 11)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import atcon_tf
from atcon_tf import backbones
from atcon_tf import maps
from atcon_tf.losses import consistency


def _nested_mobilenet():
  backbone = keras.applications.MobileNetV2(
    input_shape=(64, 64, 3), include_top=False, weights=None, alpha=0.35
  )
  inputs = keras.Input((64, 64, 3))
  x = keras.layers.Dropout(0.2)(keras.layers.GlobalAveragePooling2D()(backbone(inputs)))
  return keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="head")(x))


def _mlp_head():
  """conv -> swish -> Flatten -> Dense(relu) -> Dense: no shortcut, and guided activations after the layer."""
  keras.utils.set_random_seed(2)
  inputs = keras.Input((16, 16, 3))
  x = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="swish", name="conv")(inputs)
  x = keras.layers.Conv2D(6, 3, padding="same", name="features")(x)
  x = keras.layers.Dense(8, activation="relu")(keras.layers.Flatten()(x))
  return keras.Model(inputs, keras.layers.Dense(3)(x))


MODELS = {
  "small_resnet": (lambda: backbones.small_resnet(image_size=32, classes=5, seed=0), 32, "logits"),
  "nested_mobilenet_v2": (_nested_mobilenet, 64, "head"),
  "flatten_mlp_head": (_mlp_head, 16, None),
}


@pytest.fixture
def float64():
  """Models built in float64, so 'equal' means equal up to the order of float operations (~1e-12)."""
  keras.config.set_floatx("float64")
  keras.mixed_precision.set_global_policy("float64")  # the policy, once read, no longer follows floatx
  yield
  keras.config.set_floatx("float32")
  keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("attention", ["gb_mask", "gb_pooled"])
def test_fused_loss_and_gradients_equal_the_unfused_ones(name, attention, float64):
  build, size, head = MODELS[name]
  model = build()
  assert model.trainable_variables[0].dtype == "float64"
  tapped = atcon_tf.TappedModel(model)
  assert (tapped.linear_head.name if tapped.linear_head else None) == head
  x = tf.random.stateless_normal([4, size, size, 3], seed=[3, 4], dtype=tf.float64)
  results = []
  for fused in (True, False):
    with tf.GradientTape() as tape:
      result = consistency.consistency_per_image(
        tapped, x, attention=attention, mask_intensity=8.0, fused=fused
      )
      loss = tf.reduce_mean(result.costs)
    results.append((result, tape.gradient(loss, model.trainable_variables)))
  (fused, fused_grads), (plain, plain_grads) = results
  np.testing.assert_allclose(fused.costs.numpy(), plain.costs.numpy(), rtol=1e-5, atol=1e-9)
  np.testing.assert_allclose(fused.maps1.numpy(), plain.maps1.numpy(), rtol=1e-5, atol=1e-9)
  scale = max(float(tf.reduce_max(tf.abs(g))) for g in plain_grads if g is not None)
  for variable, a, b in zip(model.trainable_variables, fused_grads, plain_grads):
    a, b = [np.zeros(variable.shape) if g is None else g.numpy() for g in (a, b)]  # None: no path, zero
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9 * scale, err_msg=variable.path)


@pytest.mark.parametrize("target", [maps.ClassTarget([2, 0, 1]), maps.SumOfLogits()])
def test_cam_shortcut_equals_autodiff_gradcam(target):
  model = backbones.small_resnet(image_size=32, classes=5, seed=1)
  tapped = atcon_tf.TappedModel(model)
  x = tf.random.stateless_normal([3, 32, 32, 3], seed=[5, 6])
  with tf.GradientTape(persistent=True) as tape:
    short = maps.gradcam(tapped, x, target=target, relu=False).cam
    plain = maps.gradcam(tapped, x, target=target, relu=False, shortcut=False).cam
    short_total, plain_total = tf.reduce_sum(short**2), tf.reduce_sum(plain**2)
  np.testing.assert_allclose(short.numpy(), plain.numpy(), rtol=1e-5, atol=1e-6)
  for v in model.trainable_variables:
    a, b = tape.gradient(short_total, v), tape.gradient(plain_total, v)
    assert (a is None) == (b is None)
    if a is not None:
      np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)


def test_no_shortcut_for_a_head_that_is_not_gap_dense():
  keras.utils.set_random_seed(0)
  inputs = keras.Input((16, 16, 3))
  features = keras.layers.Conv2D(4, 3, name="features")(inputs)
  pooled = keras.layers.GlobalMaxPooling2D()(features)  # max, not average: the gradient is not uniform
  tapped = atcon_tf.TappedModel(keras.Model(inputs, keras.layers.Dense(3)(pooled)))
  assert tapped.linear_head is None
  gap = keras.layers.GlobalAveragePooling2D()(features)
  hidden = keras.layers.Dense(3, activation="relu")(gap)  # a nonlinear Dense
  assert atcon_tf.TappedModel(keras.Model(inputs, hidden)).linear_head is None
  explicit = atcon_tf.TappedModel(keras.Model(inputs, keras.layers.Dense(3, name="z")(gap)), logits_layer="z")
  assert explicit.linear_head is None  # the user named the logits: no structural guess


if __name__ == "__main__":
  import sys

  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
