"""The ATCON loss: against an independent per-image reference, finite differences, edge cases."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import atcon_tf
from atcon_tf import losses
from atcon_tf import testing
from atcon_tf.losses import similarity


# --- An independent per-image reference of docs/method.md §1.2, written from the spec. -------
def _reference_forward(model, x, guided):
  """tiny_cnn's forward written out with raw TF ops and the model's weights (BN inference)."""
  w = {layer.name: layer.get_weights() for layer in model.layers}
  from atcon_tf.maps.guided_relu import guided_relu

  act = guided_relu if guided else tf.nn.relu

  def bn(t, name):
    gamma, beta, mean, var = [tf.constant(v, t.dtype) for v in w[name]]
    return (t - mean) / tf.sqrt(var + 1e-3) * gamma + beta

  k1, b1 = w["conv1"]
  h = tf.nn.conv2d(x, k1, 1, "SAME") + b1
  h = act(bn(h, "bn1"))
  k2, b2 = w["conv2"]
  h = act(tf.nn.conv2d(h, k2, 2, "SAME") + b2)
  return act(bn(h, "bn2"))


def _reference_head(model, features):
  kd, bd = model.get_layer("logits").get_weights()
  return tf.reduce_mean(features, [1, 2]) @ kd + bd


def _reference_gradcam(model, x, c):
  features = _reference_forward(model, x, guided=False)
  with tf.GradientTape() as tape:
    tape.watch(features)
    logits = _reference_head(model, features)
    zc = logits[0, c]
  grads = tape.gradient(zc, features)
  alpha = tf.reduce_mean(grads, [1, 2])
  return tf.reduce_sum(features * alpha[:, None, None, :], -1)[0].numpy(), logits.numpy()[0]


def _reference_cost(model, image, w):
  """One image at a time, numpy post-processing with torch's ddof=1, as the authors' code."""
  x = tf.constant(image[None])
  _, logits = _reference_gradcam(model, x, 0)
  c = int(np.argmax(logits))
  cam1, _ = _reference_gradcam(model, x, c)
  with tf.GradientTape() as tape:
    tape.watch(x)
    glogits = _reference_head(model, _reference_forward(model, x, guided=True))
    zc = glogits[0, c]
  from atcon_tf.maps.guided_relu import guided_backward

  with guided_backward():
    gb = tape.gradient(zc, x).numpy()[0]
  g = np.abs(gb).sum(-1)
  sigma = g.mean() + 0.5 * g.std(ddof=1)
  mask = 1.0 / (1.0 + np.exp(-w * (g - sigma)))
  cam2, _ = _reference_gradcam(model, tf.constant((image * mask[..., None])[None]), c)

  def squash(cam):
    return 1.0 / (1.0 + np.exp(-(cam - cam.mean()) / cam.std(ddof=1)))

  vx = squash(cam1) - squash(cam1).mean()
  vy = squash(cam2) - squash(cam2).mean()
  den = np.sqrt((vx**2).sum()) * np.sqrt((vy**2).sum())
  return (-(vx * vy).sum() / den if den > 0 else 0.0), mask


def _randomize_batchnorm(model, seed=0):
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      gamma, beta, mean, var = layer.get_weights()
      layer.set_weights(
        [
          rng.uniform(0.5, 1.5, gamma.shape),
          rng.normal(0, 0.1, beta.shape),
          rng.normal(0, 0.1, mean.shape),
          rng.uniform(0.5, 2.0, var.shape),
        ]
      )


def test_batched_loss_equals_per_image_reference():
  model = testing.tiny_cnn(image_size=16, classes=4, seed=11)
  _randomize_batchnorm(model)
  images = np.random.default_rng(3).normal(size=(5, 16, 16, 3)).astype(np.float32)
  w = 2000.0  # Raw GB magnitudes of a fresh tiny model are ~1e-3 (docs/method.md §8.2).
  result = losses.consistency_per_image(atcon_tf.TappedModel(model), images, mask_intensity=w)
  reference = [_reference_cost(model, image, w) for image in images]
  np.testing.assert_allclose(result.costs.numpy(), [r[0] for r in reference], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(result.mask.numpy(), np.stack([r[1] for r in reference]), atol=1e-5)
  # The mask really masks (a w where it is ~0.5 everywhere would make this test weak).
  assert np.std(result.mask.numpy()) > 0.2
  loss = losses.consistency_loss(atcon_tf.TappedModel(model), images, mask_intensity=w)
  assert float(loss) == pytest.approx(np.mean([r[0] for r in reference]), rel=1e-4, abs=1e-5)


def _float64_model():
  model = testing.tiny_cnn(image_size=8, classes=3, seed=21, dtype="float64")
  _randomize_batchnorm(model, seed=1)
  return model


def _loss_value(tapped, x, **kw):
  return losses.consistency_loss(tapped, x, **kw)


@pytest.mark.parametrize("attention", ["gb_mask", "ig_mask"])
def test_gradient_matches_float64_finite_differences(attention):
  model = _float64_model()
  tapped = atcon_tf.TappedModel(model)
  x = tf.constant(np.random.default_rng(5).normal(size=(3, 8, 8, 3)), tf.float64)
  kw = dict(attention=attention, mask_intensity=3.0)
  with tf.GradientTape() as tape:
    loss = _loss_value(tapped, x, **kw)
  variables = model.trainable_variables
  grads = [tf.zeros_like(v) if g is None else g for g, v in zip(tape.gradient(loss, variables), variables)]
  rng = np.random.default_rng(0)
  eps = 1e-6
  worst = 0.0
  for trial in range(4):
    direction = [rng.normal(size=v.shape) for v in variables]
    if trial < len(variables):  # Also probe single variables (conv kernels, BN gamma, head).
      direction = [
        d if i == [0, 2, 6, 8][trial] % len(variables) else np.zeros_like(d) for i, d in enumerate(direction)
      ]
    originals = [v.numpy() for v in variables]
    values = []
    for sign in (1.0, -1.0):
      for v, o, d in zip(variables, originals, direction):
        v.assign(o + sign * eps * d)
      values.append(float(_loss_value(tapped, x, **kw)))
    for v, o in zip(variables, originals):
      v.assign(o)
    numeric = (values[0] - values[1]) / (2 * eps)
    analytic = sum(float(tf.reduce_sum(g * d)) for g, d in zip(grads, direction))
    worst = max(worst, abs(numeric - analytic) / max(abs(numeric), 1e-8))
    assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-9)
  print(f"worst relative finite-difference error ({attention}): {worst:.2e}")


def test_second_order_mask_path_carries_gradient():
  """The gradient through M(theta) (guided backprop, second order) is real and not negligible."""
  model = _float64_model()
  tapped = atcon_tf.TappedModel(model)
  x = tf.constant(np.random.default_rng(6).normal(size=(2, 8, 8, 3)), tf.float64)
  with tf.GradientTape() as tape:
    full = losses.consistency_loss(tapped, x, mask_intensity=3.0)
  kernel = model.get_layer("logits").kernel
  g_full = tape.gradient(full, kernel)
  from atcon_tf.maps import processing

  original = processing.soft_mask

  def detached(saliency, intensity):
    mask, logits = original(tf.stop_gradient(saliency), intensity)
    return mask, logits

  processing.soft_mask = detached
  try:
    with tf.GradientTape() as tape:
      part = losses.consistency_loss(tapped, x, mask_intensity=3.0)
    g_part = tape.gradient(part, kernel)
  finally:
    processing.soft_mask = original
  assert float(full) == pytest.approx(float(part))
  assert float(tf.norm(g_full - g_part)) > 1e-3 * float(tf.norm(g_full))


@pytest.mark.parametrize("attention", losses.ATTENTIONS)
@pytest.mark.parametrize("similarity_name", sorted(losses.SIMILARITIES))
def test_every_variant_is_finite_and_trainable(attention, similarity_name):
  model = testing.tiny_cnn(image_size=16, classes=3, seed=2)
  tapped = atcon_tf.TappedModel(model)
  x = tf.random.normal([2, 16, 16, 3], seed=9)
  with tf.GradientTape() as tape:
    loss = losses.consistency_loss(
      tapped, x, attention=attention, similarity=similarity_name, smoothgrad_samples=3
    )
  grads = [g for g in tape.gradient(loss, model.trainable_variables) if g is not None]
  assert np.isfinite(float(loss))
  assert grads and all(np.isfinite(g.numpy()).all() for g in grads)
  assert max(float(tf.reduce_max(tf.abs(g))) for g in grads) > 0


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_constant_image_gives_finite_loss_and_gradients(value):
  model = testing.tiny_cnn(image_size=16, classes=3, seed=2)
  tapped = atcon_tf.TappedModel(model)
  with tf.GradientTape() as tape:
    loss = losses.consistency_loss(tapped, tf.fill([2, 16, 16, 3], value))
  assert np.isfinite(float(loss))
  for g in tape.gradient(loss, model.trainable_variables):
    assert g is None or np.isfinite(g.numpy()).all()


def test_similarity_hand_values():
  m = tf.constant([[[1.0, 2.0], [3.0, 5.0]]])
  assert float(similarity.pearson_cost(m, m)[0]) == pytest.approx(-1.0, abs=1e-6)
  assert float(similarity.pearson_cost(m, -m)[0]) == pytest.approx(1.0, abs=1e-6)
  assert float(similarity.pearson_cost(m, 3.0 * m + 7.0)[0]) == pytest.approx(-1.0, abs=1e-6)
  assert float(similarity.pearson_cost(m, tf.ones_like(m))[0]) == 0.0
  nan = tf.fill([1, 2, 2], float("nan"))
  assert float(similarity.pearson_cost(m, nan)[0]) == 0.0
  z = (np.array([1, 2, 3, 5.0]) - 2.75) / np.std([1, 2, 3, 5.0], ddof=1)
  s = 1 / (1 + np.exp(-z))
  assert float(similarity.cross_correlation_cost(m, m)[0]) == pytest.approx(-(s * s).sum(), rel=1e-6)
  assert float(similarity.ssim_cost(m, m)[0]) == pytest.approx(0.0, abs=1e-6)
  assert float(similarity.ssim_cost(m, -m)[0]) > 0.5  # Anti-correlated maps cost more.
  with pytest.raises(ValueError, match="Unknown similarity"):
    similarity.get_similarity("cosine")
  with pytest.raises(ValueError, match="Unknown attention"):
    losses.ConsistencyConfig(attention="gradcam++")


if __name__ == "__main__":
  import sys

  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
