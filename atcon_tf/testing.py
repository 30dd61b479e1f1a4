"""Tiny models for tests, demos and benchmarks (16-32 px inputs, a few thousand weights)."""
import keras


def tiny_cnn(image_size=16, channels=3, classes=4, batch_norm=True, seed=0, dtype="float32",
             output_activation=None):
  """conv-BN-ReLU x2 -> GAP -> Dense: every piece the ATCON loss touches, nothing more."""
  keras.utils.set_random_seed(seed)
  inputs = keras.Input((image_size, image_size, channels), dtype=dtype)
  x = keras.layers.Conv2D(6, 3, padding="same", dtype=dtype, name="conv1")(inputs)
  if batch_norm:
    x = keras.layers.BatchNormalization(dtype=dtype, name="bn1")(x)
  x = keras.layers.ReLU(dtype=dtype, name="relu1")(x)
  x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", dtype=dtype,
                          name="conv2")(x)
  if batch_norm:
    x = keras.layers.BatchNormalization(dtype=dtype, name="bn2")(x)
  x = keras.layers.Activation("relu", dtype=dtype, name="features")(x)
  x = keras.layers.GlobalAveragePooling2D(dtype=dtype, name="gap")(x)
  outputs = keras.layers.Dense(classes, activation=output_activation, dtype=dtype, name="logits")(x)
  return keras.Model(inputs, outputs, name="tiny_cnn")


def small_resnet(image_size=32, classes=10, width=16, blocks=(1, 1, 1), seed=0, name="small_resnet"):
  """A CIFAR-style ResNet (BN, post-residual ReLUs, GAP + Dense) that trains on a CPU.

  The last block keeps image_size/4 spatial cells (8x8 at 32 px), so Grad-CAM is meaningful.
  """
  keras.utils.set_random_seed(seed)
  inputs = keras.Input((image_size, image_size, 3))
  x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
  x = keras.layers.BatchNormalization(name="stem_bn")(x)
  x = keras.layers.ReLU(name="stem_relu")(x)
  for stage, count in enumerate(blocks):
    filters = width * 2 ** stage
    for block in range(count):
      stride = 2 if stage > 0 and block == 0 else 1
      prefix = f"stage{stage + 1}_block{block + 1}"
      shortcut = x
      y = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                              name=prefix + "_conv1")(x)
      y = keras.layers.BatchNormalization(name=prefix + "_bn1")(y)
      y = keras.layers.ReLU(name=prefix + "_relu1")(y)
      y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=prefix + "_conv2")(y)
      y = keras.layers.BatchNormalization(name=prefix + "_bn2")(y)
      if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False,
                                       name=prefix + "_proj")(shortcut)
        shortcut = keras.layers.BatchNormalization(name=prefix + "_proj_bn")(shortcut)
      x = keras.layers.Add(name=prefix + "_add")([shortcut, y])
      x = keras.layers.ReLU(name=prefix + "_out")(x)
  x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
  outputs = keras.layers.Dense(classes, name="logits")(x)
  return keras.Model(inputs, outputs, name=name)
