"""Raw pixels in [0, 255] -> model input: one registry for training, evaluation, pictures and serving.

A model is only right with the preprocessing it was trained with; a second copy of these formulas is how an
export ends up serving chance-level predictions. Every caller uses `apply` (TensorFlow, inside tf.data and
SavedModel graphs), `apply_numpy` (clients and tests, no TensorFlow needed) or `invert` (pictures).
The TensorFlow forms of the ImageNet modes are Keras' own `imagenet_utils.preprocess_input`, so a model from
`keras.applications` sees exactly what Keras feeds it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from atcon_tf import choices

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, of pixels / 255
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)  # BGR, of pixels in [0, 255]


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  name: str
  formula: str
  keras_mode: str | None  # mode of keras.applications.imagenet_utils.preprocess_input with the same formula
  needs_rgb: bool


REGISTRY = {
  p.name: p
  for p in (
    Preprocessing(
      "imagenet_torch", "(x / 255 - ImageNet mean) / ImageNet std (torchvision; Keras 'torch')", "torch", True
    ),
    Preprocessing(
      "imagenet_caffe", "RGB -> BGR, then minus the ImageNet BGR mean (Keras 'caffe')", "caffe", True
    ),
    Preprocessing("scale_-1_1", "x / 127.5 - 1 (Keras 'tf', MobileNetV2)", "tf", False),
    Preprocessing("scale_0_1", "x / 255", None, False),
    Preprocessing("none", "identity: the input already is what the model takes", None, False),
  )
}
assert tuple(REGISTRY) == choices.PREPROCESSING


def get(name: str) -> Preprocessing:
  choices.check("preprocessing", name, choices.PREPROCESSING)
  return REGISTRY[name]


def check(name: str, channels: int) -> Preprocessing:
  """The named preprocessing, refused for a model whose input it cannot fit."""
  spec = get(name)
  if spec.needs_rgb and channels != 3:
    raise ValueError(
      f"Preprocessing {name!r} needs 3-channel (RGB) images, the model takes {channels} channel(s)."
    )
  return spec


def apply(images, name: str):
  """TensorFlow form: pixels (any real or integer dtype, [0, 255]) -> float32 model input."""
  import tensorflow as tf

  spec = get(name)
  x = tf.cast(images, tf.float32)
  if spec.keras_mode is not None:
    from keras.applications import imagenet_utils

    return imagenet_utils.preprocess_input(x, data_format="channels_last", mode=spec.keras_mode)
  return x / 255.0 if name == "scale_0_1" else x


def apply_numpy(images, name: str) -> np.ndarray:
  """NumPy form of `apply` (same formulas, written from the constants above; no TensorFlow)."""
  get(name)
  x = np.asarray(images, np.float32)
  if name == "imagenet_torch":
    return (x / np.float32(255.0) - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(
      IMAGENET_STD, np.float32
    )
  if name == "imagenet_caffe":
    return x[..., ::-1] - np.asarray(CAFFE_BGR_MEAN, np.float32)
  if name == "scale_-1_1":
    return x / np.float32(127.5) - np.float32(1.0)
  if name == "scale_0_1":
    return x / np.float32(255.0)
  return x.copy()


def invert(x, name: str) -> np.ndarray:
  """Model input -> uint8 pixels (pictures of what the model saw, e.g. a masked image)."""
  get(name)
  x = np.asarray(x, np.float32)
  if name == "imagenet_torch":
    x = (x * np.asarray(IMAGENET_STD) + np.asarray(IMAGENET_MEAN)) * 255.0
  elif name == "imagenet_caffe":
    x = (x + np.asarray(CAFFE_BGR_MEAN))[..., ::-1]
  elif name == "scale_-1_1":
    x = (x + 1.0) * 127.5
  elif name == "scale_0_1":
    x = x * 255.0
  return np.clip(np.rint(x), 0, 255).astype(np.uint8)
