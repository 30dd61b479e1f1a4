"""Bazel smoke test: the interpreter Bazel runs is the pinned one, and atcon_tf trains under it.

Bazel's autodetected Python is the `python3` first on PATH (.bazelrc); a wrong PATH silently gives another
TensorFlow. Runs under pytest (``python -m pytest -q tests``) and under Bazel (``bazel test //:smoke_test``),
where it is executed as a script and hands over to pytest.
"""

import importlib.metadata
import os
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PINNED = ("tensorflow", "keras", "numpy", "protobuf", "tensorflow-serving-api")


def _pins():
  pins = {}
  with open(os.path.join(ROOT, "requirements.txt")) as f:
    for line in f:
      match = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line.split("#")[0].strip())
      if match:
        pins[match.group(1).lower()] = match.group(2)
  return pins


def test_interpreter_has_the_pinned_packages():
  pins = _pins()
  found = {name: importlib.metadata.version(name) for name in PINNED}
  assert found == {name: pins[name] for name in PINNED}, f"{sys.executable}: {found}"
  import keras

  assert keras.backend.backend() == "tensorflow"


def test_one_atcon_step_moves_the_weights_by_the_loss_gradient():
  """One SGD step of ATCONModel: the reported loss is the ATCON loss before the step, and the weights
  move by -lr * its gradient (so the whole training path runs under this interpreter)."""
  import keras
  import tensorflow as tf

  import atcon_tf
  from atcon_tf import losses
  from atcon_tf import testing

  classifier = testing.tiny_cnn(image_size=16, classes=3, seed=1, batch_norm=False)
  model = atcon_tf.ATCONModel(classifier, schedule="atcon", mask_intensity=50.0)
  lr = 0.5
  model.compile(optimizer=keras.optimizers.SGD(lr))
  x = np.random.default_rng(0).normal(size=(4, 16, 16, 3)).astype(np.float32)
  kernel = classifier.get_layer("logits").kernel
  with tf.GradientTape() as tape:
    loss = losses.consistency_loss(model.tapped, x, mask_intensity=50.0)
  grad = tape.gradient(loss, kernel).numpy()
  before = kernel.numpy().copy()
  history = model.fit(x, batch_size=4, epochs=1, verbose=0)
  assert np.abs(grad).max() > 0
  assert history.history["consistency_loss"][0] == pytest.approx(float(loss), rel=1e-5)
  np.testing.assert_allclose(kernel.numpy(), before - lr * grad, rtol=1e-4, atol=1e-6)


if __name__ == "__main__":
  print(f"python: {sys.executable} (prefix {sys.prefix})", flush=True)
  # Under Bazel this file is the py_test main; "-p no:cacheprovider" keeps pytest from
  # writing .pytest_cache into the read-only runfiles tree.
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
