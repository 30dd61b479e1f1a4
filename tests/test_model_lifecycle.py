"""ATCONModel as a Keras user drives it: compiled metrics on every schedule, the README's Library example,
save / reload / resume with the optimizer state, checked target layers (issue 12)."""

import pathlib
import re
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import atcon_tf
from atcon_tf import model_import
from atcon_tf import testing
from atcon_tf import training_data

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _batches(n=8, size=16, classes=4, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.uniform(-1, 1, (n, size, size, 3)).astype("float32")
  y = np.arange(n) % classes
  labeled = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
  return x, y, labeled, tf.data.Dataset.from_tensor_slices(x).batch(4)


def _schedule_data(schedule):
  _, _, labeled, unlabeled = _batches()
  if schedule == "supervised":
    return labeled, None
  if schedule == "atcon":
    return unlabeled, None
  if schedule == "combining":
    return training_data.combining_dataset(labeled, unlabeled), None
  data = training_data.alternating_dataset(labeled, unlabeled, 1.0, 8, 8, seed=0)
  return data, 4


@pytest.mark.parametrize("schedule", ["supervised", "atcon", "alternating", "combining"])
def test_fit_with_compiled_metrics_on_every_schedule(schedule):
  model = atcon_tf.ATCONModel(testing.tiny_cnn(seed=1), schedule=schedule)
  model.compile(
    optimizer=keras.optimizers.Adam(1e-3),
    metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2")],
  )
  data, steps = _schedule_data(schedule)
  history = model.fit(data, validation_data=_batches(seed=1)[2], epochs=2, steps_per_epoch=steps, verbose=0)
  logs = history.history
  assert {"val_accuracy", "val_top2", "val_loss", "val_consistency_loss"} <= set(logs)
  assert all(0.0 <= a <= 1.0 for a in logs["val_accuracy"])
  has_labels = schedule != "atcon"
  assert ("accuracy" in logs) == has_labels  # no metric of labels an unlabeled step never sees


def _readme_library_example():
  text = README.read_text()
  section = text[text.index("## Library") :]
  return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_readme_library_example_runs_as_written(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  classifier = testing.tiny_cnn(image_size=32, classes=2, seed=3, output_activation="softmax")
  classifier.save("my_classifier.keras")
  rng = np.random.default_rng(0)
  namespace = {
    "raw_uint8_images": rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8),
    "val_uint8_images": rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8),
    "val_labels": np.arange(8) % 2,
  }
  exec(compile(_readme_library_example(), "README.md (Library)", "exec"), namespace)
  history = namespace["model"].history.history
  assert len(history["consistency_loss"]) == 10 and "val_accuracy" in history
  info = (tmp_path / "exports" / "pets" / "1" / "assets.extra" / "atcon_serving.json").read_text()
  assert '"imagenet_caffe"' in info and '"dog"' in info


def _fit(model, data, epochs, initial_epoch=0):
  model.fit(data, epochs=epochs, initial_epoch=initial_epoch, verbose=0, shuffle=False)


def test_save_reload_keeps_the_optimizer_and_resumes_identically(tmp_path):
  _, _, _, unlabeled = _batches(seed=4)

  def fresh():
    model = atcon_tf.ATCONModel(
      testing.tiny_cnn(seed=5, batch_norm=False), schedule="atcon", preprocessing="scale_-1_1"
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=["accuracy"])
    return model

  straight = fresh()
  _fit(straight, unlabeled, 3)
  resumed = fresh()
  _fit(resumed, unlabeled, 2)
  path = str(tmp_path / "m.keras")
  with warnings.catch_warnings():
    warnings.simplefilter(
      "error", UserWarning
    )  # no "model has not yet been built", no "skipping optimizer variables"
    resumed.save(path)
    reloaded = keras.saving.load_model(path)
  assert int(reloaded.optimizer.iterations) == int(resumed.optimizer.iterations) == 4
  for saved, loaded in zip(resumed.optimizer.variables, reloaded.optimizer.variables):
    np.testing.assert_array_equal(np.asarray(saved), np.asarray(loaded))
  _fit(reloaded, unlabeled, 3, initial_epoch=2)
  for a, b in zip(straight.classifier.get_weights(), reloaded.classifier.get_weights()):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  assert reloaded.contract == straight.contract


def _cnn_with_flatten():
  keras.utils.set_random_seed(0)
  inputs = keras.Input((16, 16, 3))
  x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
  x = keras.layers.Conv2D(4, 14, name="one_by_one")(x)  # 1x1 output
  x = keras.layers.Flatten(name="flatten")(x)
  return keras.Model(inputs, keras.layers.Dense(3)(x))


@pytest.mark.parametrize(
  "layer, message",
  [
    ("one_by_one", r"'one_by_one' has output shape \(None, 1, 1, 4\).*height\*width > 1"),
    ("flatten", r"'flatten' has output shape \(None, 4\).*4-D"),
    ("nope", r"No layer 'nope'"),
  ],
)
def test_explicit_target_layer_is_checked_at_construction(layer, message):
  with pytest.raises(model_import.TargetLayerError, match=message):
    atcon_tf.ATCONModel(_cnn_with_flatten(), target_layer=layer)
  assert atcon_tf.TappedModel(_cnn_with_flatten()).target_layer_path == "conv"
