"""A tiny model for tests, demos and benchmarks (16-32 px inputs, a few hundred weights)."""

import keras


def tiny_cnn(
  image_size=16,
  channels=3,
  classes=4,
  batch_norm=True,
  seed=0,
  dtype="float32",
  output_activation=None,
  activation="relu",
):
  """conv-BN-ReLU x2 -> GAP -> Dense: every piece the ATCON loss touches, nothing more.

  `activation`: the hidden nonlinearity (`"relu"`: ReLU layers; any Keras activation name otherwise)."""
  keras.utils.set_random_seed(seed)
  inputs = keras.Input((image_size, image_size, channels), dtype=dtype)
  x = keras.layers.Conv2D(6, 3, padding="same", dtype=dtype, name="conv1")(inputs)
  if batch_norm:
    x = keras.layers.BatchNormalization(dtype=dtype, name="bn1")(x)
  if activation == "relu":
    x = keras.layers.ReLU(dtype=dtype, name="relu1")(x)
  else:
    x = keras.layers.Activation(activation, dtype=dtype, name="relu1")(x)
  x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation=activation, dtype=dtype, name="conv2")(
    x
  )
  if batch_norm:
    x = keras.layers.BatchNormalization(dtype=dtype, name="bn2")(x)
  x = keras.layers.Activation(activation, dtype=dtype, name="features")(x)
  x = keras.layers.GlobalAveragePooling2D(dtype=dtype, name="gap")(x)
  outputs = keras.layers.Dense(classes, activation=output_activation, dtype=dtype, name="logits")(x)
  return keras.Model(inputs, outputs, name="tiny_cnn")
