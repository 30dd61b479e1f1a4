"""Smoke test that the toolchain works: TensorFlow, Keras 3 and the atcon_tf package.

Runs under pytest (``python -m pytest -q tests``) and under Bazel (``bazel test //:smoke_test``),
where it is executed as a script and hands over to pytest.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest


def test_keras_is_version_3():
    import keras

    assert keras.__version__.startswith("3"), keras.__version__
    assert keras.backend.backend() == "tensorflow"


def test_tiny_model_trains_and_predicts():
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(shape=(8, 8, 3)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ]
    )
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype("float32")
    y = np.array([0, 1, 0, 1])
    history = model.fit(x, y, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    out = model(tf.constant(x))
    assert tuple(out.shape) == (4, 2)


def test_atcon_tf_imports():
    import atcon_tf

    assert atcon_tf.__name__ == "atcon_tf"


if __name__ == "__main__":
    print(f"python: {sys.executable} (prefix {sys.prefix})", flush=True)
    # Under Bazel this file is the py_test main; "-p no:cacheprovider" keeps pytest from
    # writing .pytest_cache into the read-only runfiles tree.
    sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
