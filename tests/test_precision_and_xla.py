"""ATCON under keras.mixed_precision and XLA (issue 11): finite steps, maps close to float32, XLA == plain."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import atcon_tf
from atcon_tf import backbones
from atcon_tf import maps
from atcon_tf import testing

# Measured tolerances (small_resnet, 32 px, random init): Grad-CAM as displayed (ReLU, resized, min-max to
# [0, 1]) within 0.05 everywhere; |guided backprop| correlated > 0.95 with float32 (reduced-precision
# gradients flip a few ReLU gates near 0); consistency and probabilities within 0.01.
CAM_ATOL, GB_MIN_CORRELATION, VALUE_ATOL = 0.05, 0.95, 0.01


@pytest.fixture(params=["mixed_bfloat16", "mixed_float16"])
def policy(request):
  yield request.param
  keras.mixed_precision.set_global_policy("float32")


def _models(policy):
  reference = backbones.small_resnet(image_size=32, classes=10, seed=0)
  keras.mixed_precision.set_global_policy(policy)
  reduced = backbones.small_resnet(image_size=32, classes=10, seed=0)
  reduced.set_weights(reference.get_weights())
  return reference, reduced


def test_maps_are_close_to_float32(policy):
  reference, reduced = _models(policy)
  assert reduced.layers[1].compute_dtype != "float32"
  x = tf.random.stateless_normal([8, 32, 32, 3], seed=[7, 8])
  full, low = maps.explain(atcon_tf.TappedModel(reference), x), maps.explain(atcon_tf.TappedModel(reduced), x)
  assert low.gradcam.dtype == low.guided_backprop.dtype == low.consistency.dtype == tf.float32
  np.testing.assert_array_equal(low.class_ids.numpy(), full.class_ids.numpy())
  cam_full, gb_full = maps.displayed(full, (32, 32))
  cam_low, gb_low = maps.displayed(low, (32, 32))
  np.testing.assert_allclose(cam_low.numpy(), cam_full.numpy(), atol=CAM_ATOL)
  for a, b in zip(gb_low.numpy(), gb_full.numpy()):
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > GB_MIN_CORRELATION
  np.testing.assert_allclose(low.consistency.numpy(), full.consistency.numpy(), atol=VALUE_ATOL)
  np.testing.assert_allclose(low.probabilities.numpy(), full.probabilities.numpy(), atol=VALUE_ATOL)


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["atcon", "combining"])
def test_training_steps_are_finite_and_scaled(policy, schedule):
  _, reduced = _models(policy)
  model = atcon_tf.ATCONModel(reduced, schedule=schedule)
  model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
  assert (type(model.optimizer).__name__ == "LossScaleOptimizer") == (policy == "mixed_float16")
  x = tf.random.stateless_normal([8, 32, 32, 3], seed=[1, 2])
  images = tf.data.Dataset.from_tensor_slices(x).batch(4)
  labeled = tf.data.Dataset.from_tensor_slices((x, tf.range(8) % 10)).batch(4)
  data = images if schedule == "atcon" else atcon_tf.training_data.combining_dataset(labeled, images)
  before = [w.copy() for w in reduced.get_weights()]
  logs = model.fit(data, epochs=2, verbose=0).history
  assert all(np.isfinite(v).all() for v in logs.values())
  after = reduced.get_weights()
  assert all(np.isfinite(w).all() for w in after)
  assert any(not np.array_equal(a, b) for a, b in zip(before, after))


@pytest.mark.slow
def test_trainer_options_reach_the_model_and_an_xla_step_runs():
  from trainers import config as config_lib
  from trainers import models

  cfg = config_lib.Config(jit_compile=True, image_size=16)
  choice = models.ModelChoice(testing.tiny_cnn(seed=1), "scale_-1_1", None)
  info = type("Info", (), {"multi_label": False, "class_names": None})()
  model = models.make_atcon_model(choice, cfg, "atcon", info, 1e-3)
  assert model.jit_compile is True
  x = tf.random.stateless_normal([4, 16, 16, 3], seed=[3, 3])
  expected = atcon_tf.ATCONModel(testing.tiny_cnn(seed=1), schedule="atcon")
  expected.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=cfg.adam_epsilon))
  xla_logs = model.fit(tf.data.Dataset.from_tensors(x), epochs=1, verbose=0).history
  plain_logs = expected.fit(tf.data.Dataset.from_tensors(x), epochs=1, verbose=0).history
  assert xla_logs["consistency_loss"][0] == pytest.approx(plain_logs["consistency_loss"][0], abs=1e-5)
  # One Adam step moves each weight by ~lr = 1e-3 whatever its gradient's size: a wrong XLA gradient (sign or
  # scale) shows as a ~1e-3 difference, float rounding of near-zero gradients as < 1e-4.
  for a, b in zip(model.classifier.get_weights(), expected.classifier.get_weights()):
    np.testing.assert_allclose(a, b, atol=1e-4)
