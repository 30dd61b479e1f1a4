"""`export_model`: a trained classifier and its contract -> a versioned SavedModel for TF Serving.

The export serves what the model was trained with: preprocessing, Grad-CAM layer, class names and loss
settings come from the model's recorded `ServingContract` (trainers.finetune records it in every `.keras`
it saves). An argument given explicitly wins over the record and is logged; a model that records no
preprocessing and gets none is refused (a guessed one serves wrong predictions without a word).
"""

import datetime
import logging
import os
import re

from atcon_tf import contract as contract_lib
from serving.export import layout
from serving.export import signatures
from serving.export import warmup as warmup_lib

log = logging.getLogger(__name__)


def _geometry(model, image_size):
  """((height, width), channels) of the served images: the model's input, or `image_size` if it takes any."""
  shape = tuple(model.inputs[0].shape) if getattr(model, "inputs", None) else None
  if shape is None or len(shape) != 4:
    raise ValueError(
      f"Expected a model taking images (batch, height, width, channels), got input shape {shape}."
    )
  _, height, width, channels = shape
  if channels is None:
    raise ValueError("The model's input has an unknown number of channels.")
  if image_size is not None:
    image_size = (
      (image_size, image_size) if isinstance(image_size, int) else tuple(int(s) for s in image_size)
    )
    if len(image_size) != 2 or min(image_size) < 1:
      raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}.")
    for got, want, what in ((height, image_size[0], "height"), (width, image_size[1], "width")):
      if got is not None and got != want:
        raise ValueError(f"image_size {image_size} does not match the model's input {what} {got}.")
  elif height is None or width is None:
    raise ValueError(
      "The model takes images of any size: pass image_size=(height, width) to fix the size of "
      "the served signatures."
    )
  else:
    image_size = (int(height), int(width))
  return image_size, int(channels)


def _num_classes(model):
  shape = tuple(model.outputs[0].shape)
  if len(shape) != 2 or shape[1] is None:
    raise ValueError(f"Expected a classifier with (batch, classes) output, got {shape}.")
  return int(shape[1])


def resolve_contract(model_or_path, contract=None, image_size=None, **overrides):
  """(classifier, contract, source path) with explicit arguments applied over the recorded contract."""
  from atcon_tf import loading

  loaded = loading.load_model(model_or_path)
  recorded = loaded.contract if contract is None else contract
  resolved = recorded.with_overrides(source="export argument", **overrides)
  size, channels = _geometry(loaded.classifier, image_size)
  resolved = resolved.with_overrides(image_size=size)
  what = f"Model {loaded.path!r}" if loaded.path else f"Model {loaded.classifier.name!r}"
  from atcon_tf import preprocessing

  preprocessing.check(resolved.require_preprocessing(what), channels)
  num_classes = _num_classes(loaded.classifier)
  if resolved.class_names is not None and len(resolved.class_names) != num_classes:
    raise ValueError(f"{len(resolved.class_names)} class names for a model with {num_classes} outputs.")
  return loaded, resolved, channels, num_classes


def export_model(
  model_or_path,
  export_dir,
  name,
  version=None,
  image_size=None,
  preprocessing=None,
  target_layer=None,
  mask_intensity=None,
  attention=None,
  similarity=None,
  class_names=None,
  multi_label=None,
  contract=None,
  warmup=True,
  input_dtype="float32",
  max_image_pixels=None,
):
  """Exports a classifier to `export_dir/name/version/` for TF Serving; returns that path.

  Args:
    model_or_path: a keras.Model, an ATCONModel, a `.keras`/`.h5` file, or a trainer run folder (its
      `best.keras`). An ATCONModel exports its `.classifier` with its recorded contract.
    export_dir, name: the export goes to `export_dir/name/VERSION/` (serve it with
      model_base_path=`export_dir/name`).
    version: integer version; default: one more than the largest existing version.
    image_size: (height, width) or int; needed only if the model takes any size.
    contract: an `atcon_tf.contract.ServingContract` for a model that records none (e.g. a plain Keras
      classifier in memory); replaces the recorded one.
    preprocessing, target_layer, mask_intensity, attention, similarity, class_names, multi_label: override
      the contract's fields (logged when they change a recorded value).
    warmup: write `assets.extra/tf_serving_warmup_requests` (one request per signature).
    input_dtype: dtype of the `images` input, 'float32' or 'uint8'.
    max_image_pixels: encoded images whose header declares more pixels are refused before decoding
      (InvalidArgument naming the image and its size); default `decode_limits.DEFAULT_MAX_PIXELS`.
  """
  import keras
  import tensorflow as tf

  import atcon_tf

  if not name or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
    raise ValueError(f"Model name {name!r} must be non-empty and use only letters, digits, '_', '.', '-'.")
  from serving.export import decode_limits

  if max_image_pixels is None:
    max_image_pixels = decode_limits.DEFAULT_MAX_PIXELS
  if int(max_image_pixels) < 1:
    raise ValueError(f"max_image_pixels must be a positive pixel count, got {max_image_pixels!r}.")
  max_image_pixels = int(max_image_pixels)
  if input_dtype not in signatures.INPUT_DTYPES:
    raise ValueError(f"input_dtype must be one of {signatures.INPUT_DTYPES}, got {input_dtype!r}.")
  loaded, resolved, channels, num_classes = resolve_contract(
    model_or_path,
    contract,
    image_size,
    preprocessing=preprocessing,
    target_layer=target_layer,
    mask_intensity=mask_intensity,
    attention=attention,
    similarity=similarity,
    class_names=class_names,
    multi_label=multi_label,
  )
  if resolved.preprocessing == "none" and input_dtype == "uint8":
    raise ValueError("preprocessing='none' feeds the input to the model as is: use input_dtype='float32'.")
  base_path = os.path.join(os.fspath(export_dir), name)
  if version is not None:
    version = layout.check_version(base_path, version)
  tapped = atcon_tf.TappedModel(
    loaded.classifier,
    resolved.target_layer,
    multi_label=resolved.multi_label,
    logits_layer=resolved.logits_layer,
  )
  resolved = resolved.with_overrides(target_layer=tapped.target_layer_path)
  archive = signatures.build_archive(tapped, resolved, channels, input_dtype, num_classes, max_image_pixels)
  from atcon_tf import preprocessing as preprocessing_lib

  info = {
    "name": name,
    "contract": resolved.to_json(),
    # Flat copies of the contract fields clients read most (older clients read these keys).
    "image_size": list(resolved.image_size),
    "channels": channels,
    "input_dtype": input_dtype,
    "preprocessing": resolved.preprocessing,
    "preprocessing_formula": preprocessing_lib.get(resolved.preprocessing).formula,
    "num_classes": num_classes,
    "class_names": None if resolved.class_names is None else list(resolved.class_names),
    "output_activation": tapped.output_activation,
    "target_layer": resolved.target_layer,
    "mask_intensity": resolved.mask_intensity,
    "signatures": list(signatures.SIGNATURES),
    "max_image_pixels": max_image_pixels,
    "source": loaded.path,
    "model_name": loaded.classifier.name,
    "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "tensorflow_version": tf.__version__,
    "keras_version": keras.__version__,
  }

  def write(staged):
    from absl import logging as absl_logging

    previous = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.WARNING)  # TF logs every traced function it saves at INFO
    try:
      archive.write_out(staged, verbose=False)
    finally:
      absl_logging.set_verbosity(previous)
    if warmup:
      warmup_lib.write_warmup(staged, resolved.image_size, channels, input_dtype, name)

  log.info("Exporting %s with contract %s", loaded.path or loaded.classifier.name, resolved.to_json())
  return layout.publish(base_path, write, info, version)


def load_contract(version_path):
  """The `ServingContract` recorded in an export (None for exports without one)."""
  info = layout.read_export_info(version_path)
  if not info or "contract" not in info:
    return None
  return contract_lib.ServingContract.from_json(info["contract"])
