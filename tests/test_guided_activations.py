"""Guided backprop on every elementwise activation: hand-computed rule, second order, report (issue 12)."""

import logging
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import atcon_tf
from atcon_tf import losses
from atcon_tf import maps
from atcon_tf import testing

# name -> (how the hidden layer is built, f as NumPy float64 for the finite-difference slope)
_SIG = lambda h: 1 / (1 + np.exp(-h))  # noqa: E731
ACTIVATIONS = {
  "relu": ("relu", lambda h: np.maximum(h, 0)),
  "silu": ("swish", lambda h: h * _SIG(h)),
  "gelu": ("gelu", lambda h: 0.5 * h * (1 + np.vectorize(math.erf)(h / np.sqrt(2)))),  # Keras: exact erf form
  "hard_silu": ("hard_swish", lambda h: h * np.clip(h + 3, 0, 6) / 6),
  "hard_sigmoid": ("hard_sigmoid", lambda h: np.clip(h + 3, 0, 6) / 6),
  "elu": ("elu", lambda h: np.where(h > 0, h, np.expm1(h))),
  "tanh": ("tanh", np.tanh),
  "softplus": ("softplus", lambda h: np.log1p(np.exp(h))),
  "leaky_relu": (keras.layers.LeakyReLU(negative_slope=0.2), lambda h: np.where(h > 0, h, 0.2 * h)),
}


def _one_by_one_model(activation, seed=0):
  """x (3x3x1) -> 1x1 conv (2 channels) -> activation -> GAP -> Dense(2), float64."""
  keras.utils.set_random_seed(seed)
  inputs = keras.Input((3, 3, 1), dtype="float64")
  h = keras.layers.Conv2D(2, 1, dtype="float64", name="pre")(inputs)
  if isinstance(activation, keras.layers.Layer):
    a = activation(h)
  else:
    a = keras.layers.Activation(activation, dtype="float64", name="act")(h)
  a = keras.layers.Identity(name="hidden")(a)
  x = keras.layers.GlobalAveragePooling2D(dtype="float64")(a)
  return keras.Model(inputs, keras.layers.Dense(2, dtype="float64", name="head")(x))


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_guided_rule_by_hand(name):
  """g_x = sum_k w1[k] relu(W2[k, c] / 9) relu(f'(h[k])), f' by central differences of f in NumPy."""
  build, f = ACTIVATIONS[name]
  model = _one_by_one_model(build)
  model.get_layer("head").set_weights([np.array([[0.7, -0.4], [-0.5, 0.9]]), np.zeros(2)])
  tapped = atcon_tf.TappedModel(model, target_layer="hidden")
  assert tapped.guided_report.counts() == {name: 1}
  x = np.random.default_rng(1).normal(scale=2.0, size=(2, 3, 3, 1))
  w1, b1 = model.get_layer("pre").get_weights()
  w2 = model.get_layer("head").get_weights()[0]
  h = x @ w1.reshape(1, 2) + b1  # (B, 3, 3, 2)
  eps = 1e-6
  slope = (f(h + eps) - f(h - eps)) / (2 * eps)
  for c in (0, 1):
    gate = np.maximum(w2[:, c] / 9.0, 0) * np.maximum(slope, 0)
    expected = (gate * w1.reshape(1, 1, 1, 2)).sum(-1, keepdims=True)
    got = maps.guided_backprop(tapped, tf.constant(x), [c, c]).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)


def test_guided_is_not_the_plain_gradient_on_swish():
  model = testing.tiny_cnn(seed=4, activation="swish", batch_norm=False)
  tapped = atcon_tf.TappedModel(model)
  x = tf.random.normal([2, 16, 16, 3], seed=3)
  guided = maps.guided_backprop(tapped, x, [0, 1]).numpy()
  with tf.GradientTape() as tape:
    tape.watch(x)
    scores = tf.gather(tapped.logits(x), [0, 1], batch_dims=1)
  plain = tape.gradient(scores, x).numpy()
  assert np.abs(guided - plain).max() > 0.1 * np.abs(plain).max()
  assert tapped.guided_report.counts() == {"silu": 3}


@pytest.mark.parametrize("activation", ["relu", "tanh", "elu", "swish", "gelu"])
def test_second_order_gradient_matches_finite_differences(activation):
  """The ATCON loss through guided smooth activations: weight gradients vs float64 central differences."""
  model = testing.tiny_cnn(image_size=8, classes=3, seed=21, dtype="float64", activation=activation)
  rng = np.random.default_rng(1)
  for bn in ("bn1", "bn2"):  # Non-trivial BatchNorm statistics (inference mode), as trained models have.
    shape = model.get_layer(bn).gamma.shape
    model.get_layer(bn).set_weights(
      [
        rng.uniform(0.5, 1.5, shape),
        rng.normal(0, 0.1, shape),
        rng.normal(0, 0.1, shape),
        rng.uniform(0.5, 2, shape),
      ]
    )
  tapped = atcon_tf.TappedModel(model)
  x = tf.constant(np.random.default_rng(5).normal(size=(3, 8, 8, 3)), tf.float64)
  with tf.GradientTape() as tape:
    loss = losses.consistency_loss(tapped, x, mask_intensity=3.0)
  variables = model.trainable_variables
  grads = [tf.zeros_like(v) if g is None else g for g, v in zip(tape.gradient(loss, variables), variables)]
  rng = np.random.default_rng(0)
  eps = 1e-6
  for trial in range(3):
    direction = [rng.normal(size=v.shape) for v in variables]
    if trial:  # One conv kernel alone, then the head alone.
      keep = {1: 0, 2: len(variables) - 2}[trial]
      direction = [d if i == keep else np.zeros_like(d) for i, d in enumerate(direction)]
    originals = [v.numpy() for v in variables]
    values = []
    for sign in (1.0, -1.0):
      for v, o, d in zip(variables, originals, direction):
        v.assign(o + sign * eps * d)
      values.append(float(losses.consistency_loss(tapped, x, mask_intensity=3.0)))
    for v, o in zip(variables, originals):
      v.assign(o)
    numeric = (values[0] - values[1]) / (2 * eps)
    analytic = sum(float(tf.reduce_sum(g * d)) for g, d in zip(grads, direction))
    assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-9)


def test_prelu_slopes_still_train():
  model = _one_by_one_model(keras.layers.PReLU(dtype="float64"))
  tapped = atcon_tf.TappedModel(model, target_layer="hidden")
  assert tapped.guided_report.counts() == {"prelu": 1}
  x = tf.constant(np.random.default_rng(2).normal(size=(2, 3, 3, 1)))
  with tf.GradientTape() as tape:
    total = tf.reduce_sum(maps.guided_backprop(tapped, x, [0, 1]) ** 2) + tf.reduce_sum(tapped.logits(x))
  grads = tape.gradient(total, model.trainable_variables)
  assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)


def test_what_cannot_be_guided_is_reported(caplog):
  keras.utils.set_random_seed(0)
  inputs = keras.Input((8, 8, 3))
  x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
  x = keras.layers.Lambda(tf.nn.gelu, name="gelu_lambda")(x)
  x = keras.ops.sigmoid(x)  # a Keras op, not a layer
  x = keras.layers.Conv2D(4, 3, activation="relu", name="conv2")(x)
  x = keras.layers.GlobalAveragePooling2D()(x)
  model = keras.Model(inputs, keras.layers.Dense(2)(x))
  with caplog.at_level(logging.WARNING):
    tapped = atcon_tf.TappedModel(model)
  report = tapped.guided_report
  assert report.counts() == {"relu": 1}
  reasons = dict(report.unguided)
  assert "Lambda" in reasons["gelu_lambda"]
  assert any("Sigmoid" in why for why in reasons.values())
  assert "2 left plain" in caplog.text and "gelu_lambda" in caplog.text


if __name__ == "__main__":
  import sys

  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
