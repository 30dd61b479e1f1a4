"""Tiny models with hand-set weights whose maps are computed by hand in the tests."""

import keras
import numpy as np

# One 2x2 single-channel image; see test_maps.py for the hand computation.
HAND_IMAGE = np.array([[[[1.0], [-1.0]], [[2.0], [0.5]]]], dtype=np.float32)


def _set_hand_weights(conv1, conv2, dense):
  conv1.set_weights([np.array([1.0, -1.0], np.float32).reshape(1, 1, 1, 2)])
  conv2.set_weights([np.array([1.0, -0.5], np.float32).reshape(1, 1, 2, 1), np.array([1.0], np.float32)])
  dense.set_weights([np.array([[1.0, -1.0]], np.float32)])


def hand_model(nested=False, activation_layer=False):
  """x -> conv1x1 [1,-1] -> ReLU -> conv1x1 [1,-0.5]+1, relu -> GAP -> Dense [1,-1].

  `nested=True` puts the convolutions in an inner functional model; `activation_layer=True`
  uses `Activation('relu')` instead of `keras.layers.ReLU`.
  """
  conv1 = keras.layers.Conv2D(2, 1, use_bias=False, name="conv1")
  relu = (
    keras.layers.Activation("relu", name="relu1") if activation_layer else keras.layers.ReLU(name="relu1")
  )
  conv2 = keras.layers.Conv2D(1, 1, activation="relu", name="features")
  dense = keras.layers.Dense(2, use_bias=False, name="logits")
  inputs = keras.Input((2, 2, 1))
  if nested:
    inner_in = keras.Input((2, 2, 1))
    inner = keras.Model(inner_in, conv2(relu(conv1(inner_in))), name="backbone")
    x = inner(inputs)
  else:
    x = conv2(relu(conv1(inputs)))
  outputs = dense(keras.layers.GlobalAveragePooling2D(name="gap")(x))
  model = keras.Model(inputs, outputs, name="hand")
  _set_hand_weights(conv1, conv2, dense)
  return model
