"""ATCONModel: every schedule trains, losses are what they claim, save/load round trip."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import atcon_tf
from atcon_tf import atcon_model
from atcon_tf import choices
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
  model = atcon_tf.ATCONModel(testing.tiny_cnn(image_size=16, classes=3, seed=1), schedule=schedule, **kw)
  model.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=metrics)
  return model


def _weights(model):
  return [v.numpy().copy() for v in model.classifier.weights]


def _hand_ce(logits, y):
  """Mean softmax cross-entropy of sparse labels, from logits, in float64 NumPy."""
  z = np.asarray(logits, np.float64)
  z = z - z.max(-1, keepdims=True)
  log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
  return float(-log_p[np.arange(len(y)), np.asarray(y)].mean())


def _hand_bce(logits, y):
  """Mean over examples and classes of the sigmoid cross-entropy of multi-hot labels, from logits."""
  z = np.asarray(logits, np.float64)
  y = np.asarray(y, np.float64)
  return float(np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))))


def _logit_twin(classifier):
  """The classifier without its output activation, same weights: its outputs are the logits."""
  twin = keras.models.clone_model(classifier)
  twin.get_layer("logits").activation = keras.activations.linear
  twin.set_weights(classifier.get_weights())
  return twin


@pytest.mark.slow
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
  sup = _hand_ce(model.tapped.logits(x, training=True), y)
  cons = float(losses.consistency_loss(model.tapped, x_u))
  labeled = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
  unlabeled = tf.data.Dataset.from_tensor_slices(x_u).batch(8)
  history = model.fit(training_data.combining_dataset(labeled, unlabeled), epochs=1, verbose=0)
  assert history.history["loss"][0] == pytest.approx(sup + 0.5 * cons, rel=1e-4)
  assert history.history["supervised_loss"][0] == pytest.approx(sup, rel=1e-4)
  assert history.history["consistency_loss"][0] == pytest.approx(cons, rel=1e-4)


def test_alternating_draws_labeled_batches_with_probability_p():
  assert training_data.labeled_probability(8, 40, 5177) == pytest.approx(320 / 5497)
  assert training_data.alternating_steps(8, 40, 5177, 4, 4) == 1374
  x, y = _data(n=8)
  labeled = tf.data.Dataset.from_tensor_slices((x, y)).batch(2)
  unlabeled = tf.data.Dataset.from_tensor_slices(x).batch(2)
  ds = training_data.alternating_dataset(
    labeled, unlabeled, alpha=1.0, labeled_size=10, unlabeled_size=30, seed=3
  )
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
  expected = _hand_bce(model.tapped.logits(x, training=True), y)
  history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
  assert history.history["supervised_loss"][0] == pytest.approx(expected, rel=1e-4)


def test_evaluate_reports_consistency_and_supervised_loss():
  x, y = _data()
  model = _model("atcon", metrics=["accuracy"])
  logits = model.classifier(x, training=False).numpy()  # Inference mode, no output activation.
  result = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
  assert result["consistency_loss"] == pytest.approx(
    float(losses.consistency_loss(model.tapped, x)), rel=1e-5
  )
  assert result["supervised_loss"] == pytest.approx(_hand_ce(logits, y), rel=1e-5)
  assert result["accuracy"] == pytest.approx(np.mean(logits.argmax(-1) == y))
  assert result["loss"] == pytest.approx(result["consistency_loss"])  # The atcon schedule's objective.


@pytest.mark.slow
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
  """A classifier ending in softmax: one SGD step moves the head by the gradient of the cross-entropy of its
  logits (computed by hand), not of its probabilities taken as logits (a softmax applied twice)."""
  classifier = testing.tiny_cnn(
    image_size=16, classes=3, seed=1, batch_norm=False, output_activation="softmax"
  )
  twin = _logit_twin(classifier)
  x, y = _data()
  logits = twin(x).numpy().astype(np.float64)
  np.testing.assert_allclose(classifier(x).numpy(), tf.nn.softmax(logits).numpy(), rtol=1e-5, atol=1e-7)
  features = keras.Model(twin.inputs[0], twin.get_layer("gap").output)(x).numpy().astype(np.float64)
  p = np.exp(logits - logits.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  delta = (p - np.eye(3)[y]) / len(y)  # d mean CE / d logits
  head = classifier.get_layer("logits")
  kernel, bias = [v.numpy().copy() for v in (head.kernel, head.bias)]
  lr = 0.5
  model = atcon_tf.ATCONModel(classifier, schedule="supervised")
  model.compile(optimizer=keras.optimizers.SGD(lr))
  history = model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
  assert history.history["supervised_loss"][0] == pytest.approx(_hand_ce(logits, y), rel=1e-5)
  assert _hand_ce(p, y) != pytest.approx(_hand_ce(logits, y), rel=1e-2)  # Softmax twice: another loss.
  np.testing.assert_allclose(head.kernel.numpy(), kernel - lr * features.T @ delta, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(head.bias.numpy(), bias - lr * delta.sum(0), rtol=1e-4, atol=1e-6)
  assert classifier.get_layer("logits").activation is keras.activations.softmax  # Restored.


def test_alternating_schedule_routes_each_loss_to_its_own_steps():
  """supervised_loss averages the labeled steps only, consistency_loss the unlabeled ones.

  Every labeled batch is the same (x, y) and every unlabeled one the same x_u; with a learning rate of 0 each
  step of a kind has the same loss, computed here by hand, so a loss tracked on the other kind's steps too
  would move the logged mean away from it. `loss` averages all steps, so it also counts the labeled ones.
  """
  x, y = _data(n=4)
  x_u, _ = _data(n=4, seed=5)
  labeled = tf.data.Dataset.from_tensors((x, y))
  unlabeled = tf.data.Dataset.from_tensors(x_u)
  ds = training_data.alternating_dataset(
    labeled, unlabeled, alpha=1.0, labeled_size=1, unlabeled_size=1, seed=3
  )
  steps = 8
  flags = [bool(b["is_labeled"][0]) for b in ds.take(steps)]
  k = sum(flags)
  assert 0 < k < steps, flags  # Both kinds of steps occur.
  classifier = testing.tiny_cnn(image_size=16, classes=3, seed=1, batch_norm=False)
  model = atcon_tf.ATCONModel(classifier, schedule="alternating", mask_intensity=200.0)
  model.compile(optimizer=keras.optimizers.SGD(0.0))
  sup = _hand_ce(classifier(x).numpy(), y)
  cons = float(losses.consistency_loss(model.tapped, x_u, mask_intensity=200.0))
  assert abs(sup - cons) > 0.1
  logs = {k_: v[0] for k_, v in model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0).history.items()}
  assert logs["supervised_loss"] == pytest.approx(sup, rel=1e-5)
  assert logs["consistency_loss"] == pytest.approx(cons, rel=1e-5, abs=1e-6)
  assert logs["loss"] == pytest.approx((k * sup + (steps - k) * cons) / steps, rel=1e-5, abs=1e-6)
  # The mask statistics average the unlabeled steps only (all the same x_u here).
  result = losses.consistency_per_image(model.tapped, x_u, mask_intensity=200.0)
  spread = float(tf.reduce_mean(tf.math.reduce_std(result.mask_logits, axis=[1, 2])))
  assert spread > 0.1
  assert logs["mask_logit_std"] == pytest.approx(spread, rel=1e-5)
  assert logs["mask_mean"] == pytest.approx(float(tf.reduce_mean(result.mask)), rel=1e-5)


TRAIN_KEYS = {
  "supervised": {"loss", "supervised_loss", "accuracy"},
  "atcon": {"loss", "consistency_loss", "mask_mean", "mask_logit_std"},
}
VAL_KEYS = {
  "val_" + k for k in ("loss", "supervised_loss", "consistency_loss", "mask_mean", "mask_logit_std")
}


@pytest.mark.parametrize("schedule", ["supervised", "atcon"])
def test_training_logs_only_what_the_schedule_updates(schedule, tmp_path):
  """No idle zeros: supervised training logs no consistency / mask metrics, atcon no supervised loss or
  accuracy; validation reports every loss for every schedule. CSVLogger keeps one column set across epochs."""
  x, y = _data(n=8)
  model = _model(schedule, metrics=["accuracy"])
  csv_path = tmp_path / "history.csv"
  history = model.fit(
    x,
    y,
    batch_size=4,
    epochs=2,
    validation_data=(x, y),
    callbacks=[keras.callbacks.CSVLogger(str(csv_path))],
    verbose=0,
  ).history
  assert set(history) == TRAIN_KEYS[schedule] | VAL_KEYS | {"val_accuracy"}
  assert all(value != 0 for key, values in history.items() if "mask" in key for value in values)
  lines = csv_path.read_text().splitlines()
  assert lines[0].split(",") == ["epoch"] + sorted(history)
  assert len(lines) == 3 and "NA" not in csv_path.read_text()
  val_sup = [float(line.split(",")[lines[0].split(",").index("val_supervised_loss")]) for line in lines[1:]]
  np.testing.assert_allclose(val_sup, history["val_supervised_loss"], rtol=1e-6)


@pytest.mark.parametrize("schedule", ["atcon", "combining"])
def test_multilabel_atcon_and_combining_train_with_binary_cross_entropy(schedule):
  """Multi-hot labels, sigmoid head: the supervised part is the BCE of the logits (by hand), the consistency
  part the ATCON loss, both before the step; a couple of steps keep the losses finite and move the weights."""
  classifier = testing.tiny_cnn(
    image_size=16, classes=3, seed=1, batch_norm=False, output_activation="sigmoid"
  )
  x, y = _data(multi_label=True)
  x_u, _ = _data(seed=5)
  logits = _logit_twin(classifier)(x).numpy()
  bce = _hand_bce(logits, y)
  assert bce != pytest.approx(_hand_bce(classifier(x).numpy(), y), rel=1e-2)  # Sigmoid twice differs.
  model = atcon_tf.ATCONModel(classifier, schedule=schedule, multi_label=True, alpha=0.5)
  model.compile(optimizer=keras.optimizers.SGD(0.5))
  if schedule == "combining":
    cons = float(losses.consistency_loss(model.tapped, x_u))
    data = training_data.combining_dataset(
      tf.data.Dataset.from_tensors((x, y)), tf.data.Dataset.from_tensors(x_u)
    )
    first = model.fit(data, epochs=1, verbose=0).history
    assert first["supervised_loss"][0] == pytest.approx(bce, rel=1e-5)
    assert first["consistency_loss"][0] == pytest.approx(cons, rel=1e-5, abs=1e-6)
    assert first["loss"][0] == pytest.approx(bce + 0.5 * cons, rel=1e-5, abs=1e-6)
  else:  # Labels are never trained on; evaluate reports their BCE next to the ATCON loss.
    cons = float(losses.consistency_loss(model.tapped, x))
    first = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    assert first["supervised_loss"] == pytest.approx(bce, rel=1e-5)
    assert first["consistency_loss"] == pytest.approx(cons, rel=1e-5, abs=1e-6)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
  before = _weights(model)
  history = model.fit(data, epochs=2, verbose=0).history
  assert all(np.isfinite(v).all() for v in history.values())
  assert any(not np.allclose(a, b) for a, b in zip(before, _weights(model)))
  probabilities = model.predict(x, verbose=0)
  np.testing.assert_allclose(probabilities, classifier(x).numpy(), rtol=1e-5, atol=1e-7)  # Sigmoids.


@pytest.mark.parametrize("attention", choices.ATTENTIONS)
def test_mask_statistics_are_logged_for_the_masked_attentions_only(attention):
  x, _ = _data(n=4)
  history = _model("atcon", attention=attention).fit(x, batch_size=4, epochs=1, verbose=0).history
  masked = attention in atcon_model.MASKED_ATTENTIONS
  assert set(history) == {"loss", "consistency_loss"} | ({"mask_mean", "mask_logit_std"} if masked else set())


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match="Unknown schedule 'semi'"):
    atcon_tf.ATCONModel(testing.tiny_cnn(), schedule="semi")
  with pytest.raises(ValueError, match="Unknown attention"):
    atcon_tf.ATCONModel(testing.tiny_cnn(), attention="lime")


if __name__ == "__main__":
  import sys

  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
