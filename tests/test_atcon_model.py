"""ATCONModel: every schedule trains, losses are what they claim, save/load round trip."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import atcon_tf
import atcon_tf.heads
from atcon_tf import losses
from atcon_tf import testing
from atcon_tf import training_data


def _data(n=8, size=16, classes=3, seed=0, multi_label=False):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, size, size, 3)).astype(np.float32)
  if multi_label:
    y = (rng.uniform(size=(n, classes)) > 0.5).astype(np.float32)
  else:
    y = rng.integers(0, classes, size=n).astype(np.int32)
  return x, y


def _model(schedule, metrics=None, **kw):
  model = atcon_tf.ATCONModel(testing.tiny_cnn(image_size=16, classes=3, seed=1), schedule=schedule,
                              **kw)
  model.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=metrics)
  return model


def _weights(model):
  return [v.numpy().copy() for v in model.classifier.weights]


def test_atcon_step_reports_the_loss_and_ignores_labels():
  x, y = _data()
  model = _model("atcon", mask_intensity=8.0)
  expected = float(losses.consistency_loss(model.tapped, x, mask_intensity=8.0))
  history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
  assert history.history["consistency_loss"][0] == pytest.approx(expected, rel=1e-5)
  with_labels = _weights(model)
  model2 = _model("atcon", mask_intensity=8.0)
  model2.fit(tf.data.Dataset.from_tensor_slices(x).batch(8), epochs=1, verbose=0)
  for a, b in zip(with_labels, _weights(model2)):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)  # lr is 1e-2: a label effect is 100x this.


def test_atcon_schedule_keeps_batchnorm_statistics_and_updates_gamma():
  x, _ = _data()
  model = _model("atcon")
  bn = model.classifier.get_layer("bn1")
  before = [v.numpy().copy() for v in (bn.moving_mean, bn.moving_variance, bn.gamma)]
  model.fit(x, batch_size=8, epochs=1, verbose=0)
  np.testing.assert_array_equal(before[0], bn.moving_mean.numpy())
  np.testing.assert_array_equal(before[1], bn.moving_variance.numpy())
  assert not np.allclose(before[2], bn.gamma.numpy())


def test_supervised_schedule_learns_and_updates_batchnorm_statistics():
  x, y = _data(n=16)
  model = _model("supervised", metrics=["accuracy"])
  bn = model.classifier.get_layer("bn1")
  mean_before = bn.moving_mean.numpy().copy()
  history = model.fit(x, y, batch_size=8, epochs=15, verbose=0)
  assert history.history["supervised_loss"][-1] < 0.6 * history.history["supervised_loss"][0]
  assert history.history["accuracy"][-1] > 0.7
  assert not np.allclose(mean_before, bn.moving_mean.numpy())


def test_atcon_training_lowers_the_consistency_loss():
  x, _ = _data(n=16, seed=4)
  model = _model("atcon", mask_intensity=200.0)
  history = model.fit(x, batch_size=16, epochs=25, verbose=0)
  losses_seen = history.history["consistency_loss"]
  assert losses_seen[-1] < losses_seen[0] - 0.02


def test_combining_loss_is_supervised_plus_alpha_consistency():
  x, y = _data()
  x_u, _ = _data(seed=5)
  model = _model("combining", alpha=0.5)
  sup = float(tf.reduce_mean(atcon_tf.heads.supervised_loss(
      y, model.tapped.logits(x, training=True), False)))
  cons = float(losses.consistency_loss(model.tapped, x_u))
  labeled = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
  unlabeled = tf.data.Dataset.from_tensor_slices(x_u).batch(8)
  history = model.fit(training_data.combining_dataset(labeled, unlabeled), epochs=1, verbose=0)
  assert history.history["loss"][0] == pytest.approx(sup + 0.5 * cons, rel=1e-4)
  assert history.history["supervised_loss"][0] == pytest.approx(sup, rel=1e-4)
  assert history.history["consistency_loss"][0] == pytest.approx(cons, rel=1e-4)


def test_alternating_draws_labelled_batches_with_probability_p():
  assert training_data.labeled_probability(8, 40, 5177) == pytest.approx(320 / 5497)
  assert training_data.alternating_steps(8, 40, 5177, 4, 4) == 1374
  x, y = _data(n=8)
  labeled = tf.data.Dataset.from_tensor_slices((x, y)).batch(2)
  unlabeled = tf.data.Dataset.from_tensor_slices(x).batch(2)
  ds = training_data.alternating_dataset(labeled, unlabeled, alpha=1.0, labeled_size=10,
                                         unlabeled_size=30, seed=3)
  flags = [bool(b["is_labeled"][0]) for b in ds.take(400)]
  assert 0.18 < np.mean(flags) < 0.32  # p = 10 / 40
  model = _model("alternating", metrics=["accuracy"])
  before = _weights(model)
  history = model.fit(ds, steps_per_epoch=6, epochs=1, verbose=0)
  assert np.isfinite(history.history["loss"][0])
  assert any(not np.allclose(a, b) for a, b in zip(before, _weights(model)))


def test_multilabel_head_trains_with_binary_cross_entropy():
  x, y = _data(multi_label=True)
  model = _model("supervised", multi_label=True)
  expected = float(tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
      y, model.tapped.logits(x, training=True))))
  history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
  assert history.history["supervised_loss"][0] == pytest.approx(expected, rel=1e-4)


def test_evaluate_reports_consistency_and_supervised_loss():
  x, y = _data()
  model = _model("atcon", metrics=["accuracy"])
  result = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
  assert result["consistency_loss"] == pytest.approx(
      float(losses.consistency_loss(model.tapped, x)), rel=1e-5)
  assert result["supervised_loss"] > 0
  assert 0 <= result["accuracy"] <= 1


def test_keras_file_round_trip(tmp_path):
  x, y = _data()
  model = _model("atcon", mask_intensity=12.0, attention="gb_mask", similarity="ssim")
  model.fit(x, batch_size=8, epochs=1, verbose=0)
  path = str(tmp_path / "atcon.keras")
  model.save(path)
  loaded = keras.saving.load_model(path)
  assert isinstance(loaded, atcon_tf.ATCONModel)
  assert loaded.consistency_config == model.consistency_config
  assert loaded.tapped.target_layer_path == "features"
  np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5)
  loaded.compile(optimizer="adam")
  loaded.fit(x, batch_size=8, epochs=1, verbose=0)


def test_softmax_classifier_is_trained_on_logits():
  classifier = testing.tiny_cnn(image_size=16, classes=3, seed=1, output_activation="softmax")
  model = atcon_tf.ATCONModel(classifier, schedule="supervised")
  x, y = _data()
  logits = model.tapped.logits(x)
  np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), classifier(x).numpy(), rtol=1e-5)
  assert classifier.get_layer("logits").activation is keras.activations.softmax


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match="Unknown schedule 'semi'"):
    atcon_tf.ATCONModel(testing.tiny_cnn(), schedule="semi")
  with pytest.raises(ValueError, match="Unknown attention"):
    atcon_tf.ATCONModel(testing.tiny_cnn(), attention="lime")


if __name__ == "__main__":
  import sys
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
