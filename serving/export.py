"""Export an ATCON-trained (or any Keras) classifier as a SavedModel for TF Serving.

Library: `export_model(model_or_path, export_dir, name, ...)` writes
`EXPORT_DIR/NAME/VERSION/` (a SavedModel plus `assets.extra/`) and returns that path.
CLI:     python -m serving.export --model=PATH.keras|WORKDIR --export_dir=DIR --name=NAME

Signatures (all outputs per example along axis 0):
- `serving_default`:      images (B, H, W, C)            -> probabilities, class_ids, gradcam,
                                                              guided_backprop, consistency
- `explain_class`:        images, class_ids (B,) int32    -> same; class_ids -1 = top-1
- `predict`:              images                          -> probabilities, class_ids
- `predict_bytes`:        images_bytes (B,) string        -> as serving_default
- `explain_class_bytes`:  images_bytes, class_ids         -> as explain_class
SavedModel signatures cannot have optional inputs (TF Serving requires every input of a
signature), hence the separate `explain_class*` signatures for an explicit class.

`images` are raw pixels (uint8 or float32, chosen at export, values 0..255 unless
preprocessing is 'none'); the preprocessing named at export runs inside the graph. Encoded
images are decoded and resized to the model's input size inside the graph.
The export is written to a hidden temporary folder and renamed into place, so a model
server polling EXPORT_DIR/NAME never sees a half-written version.
"""
import datetime
import json
import os
import re
import shutil
import sys
import tempfile

import numpy as np

EXPORT_INFO_FILE = "atcon_serving.json"
WARMUP_FILE = "tf_serving_warmup_requests"
SIGNATURES = ("serving_default", "explain_class", "predict", "predict_bytes",
              "explain_class_bytes")
IMAGES_KEY = "images"
BYTES_KEY = "images_bytes"
CLASS_IDS_KEY = "class_ids"
INPUT_DTYPES = ("float32", "uint8")


def version_dirs(base_path):
  """{version: path} of the numeric sub-folders of `base_path` (TF Serving's layout)."""
  found = {}
  if not os.path.isdir(base_path):
    return found
  for entry in os.listdir(base_path):
    full = os.path.join(base_path, entry)
    if re.fullmatch(r"\d+", entry) and os.path.isdir(full):
      found[int(entry)] = full
  return found


def next_version(base_path):
  """1 + the largest existing version under `base_path` (1 if none)."""
  return max(version_dirs(base_path), default=0) + 1


def resolve_model_path(path):
  """A `.keras`/`.h5` file, or a trainer workdir holding `best.keras` (or a single .keras)."""
  path = os.fspath(path)
  if os.path.isdir(path):
    best = os.path.join(path, "best.keras")
    if os.path.isfile(best):
      return best
    candidates = sorted(f for f in os.listdir(path) if f.endswith(".keras"))
    if len(candidates) == 1:
      return os.path.join(path, candidates[0])
    raise FileNotFoundError(
        f"Workdir {path!r} has no best.keras" +
        (f" and several .keras files ({', '.join(candidates)}): pass one with --model."
         if candidates else " and no other .keras file."))
  if not os.path.exists(path):
    raise FileNotFoundError(f"No model file or workdir at {path!r}.")
  return path


def load_for_export(model_or_path, target_layer=None):
  """(classifier, target_layer) from a model, a .keras file or a workdir.

  An `ATCONModel` (saved by a trainer) is unwrapped to its `.classifier`, and its
  Grad-CAM layer is used unless `target_layer` is given.
  """
  import keras
  import atcon_tf  # Registers ATCONModel for deserialisation.

  model = model_or_path
  if not isinstance(model, keras.Model):
    path = resolve_model_path(model_or_path)
    model = atcon_tf.load_classifier(path)
  if isinstance(model, atcon_tf.ATCONModel):
    target_layer = target_layer or model.tapped.target_layer_path
    model = model.classifier
  return model, target_layer


def _model_geometry(model, image_size):
  shape = tuple(model.inputs[0].shape) if getattr(model, "inputs", None) else None
  if shape is None or len(shape) != 4:
    raise ValueError(f"Expected a model taking images (batch, height, width, channels), got "
                     f"input shape {shape}.")
  _, height, width, channels = shape
  if channels is None:
    raise ValueError("The model's input has an unknown number of channels.")
  if image_size is not None:
    if isinstance(image_size, int):
      image_size = (image_size, image_size)
    image_size = tuple(int(s) for s in image_size)
    if len(image_size) != 2 or min(image_size) < 1:
      raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}.")
    for got, want, what in ((height, image_size[0], "height"), (width, image_size[1], "width")):
      if got is not None and got != want:
        raise ValueError(f"image_size {image_size} does not match the model's input {what} {got}.")
  else:
    if height is None or width is None:
      raise ValueError("The model takes images of any size: pass image_size=(height, width) to "
                       "fix the size of the served signatures.")
    image_size = (int(height), int(width))
  return image_size, int(channels)


def _num_classes(model):
  shape = tuple(model.outputs[0].shape)
  if len(shape) != 2 or shape[1] is None:
    raise ValueError(f"Expected a classifier with (batch, classes) output, got {shape}.")
  return int(shape[1])


def _warmup_records(image_size, channels, input_dtype, name=""):
  """PredictionLog records (serialized) replayed by TF Serving when it loads a version."""
  import io

  from PIL import Image
  from tensorflow_serving.apis import model_pb2
  from tensorflow_serving.apis import predict_pb2
  from tensorflow_serving.apis import prediction_log_pb2

  from serving import tensors

  height, width = image_size
  rng = np.random.default_rng(0)
  pixels = rng.integers(0, 256, size=(1, height, width, channels), dtype=np.uint8)
  images = pixels.astype(input_dtype)
  buffer = io.BytesIO()
  mode = "RGB" if channels == 3 else "L"
  Image.fromarray(pixels[0] if channels == 3 else pixels[0, ..., 0], mode).save(buffer, "PNG")
  encoded = np.array([buffer.getvalue()], dtype=object)
  class_ids = np.array([-1], np.int32)
  inputs = {
      "serving_default": {IMAGES_KEY: images},
      "explain_class": {IMAGES_KEY: images, CLASS_IDS_KEY: class_ids},
      "predict": {IMAGES_KEY: images},
      "predict_bytes": {BYTES_KEY: encoded},
      "explain_class_bytes": {BYTES_KEY: encoded, CLASS_IDS_KEY: class_ids},
  }
  records = []
  for signature in SIGNATURES:
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=name, signature_name=signature))
    for key, value in inputs[signature].items():
      request.inputs[key].CopyFrom(tensors.to_tensor_proto(value))
    log = prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request))
    records.append(log.SerializeToString())
  return records


def write_warmup(version_path, image_size, channels, input_dtype, name=""):
  """Writes `assets.extra/tf_serving_warmup_requests` (TFRecord of PredictionLog).

  One batch-1 Predict request per signature: TF Serving (and `serving.server`) replays them
  when it loads the version, so the first real request does not pay for graph setup.
  """
  import tensorflow as tf

  folder = os.path.join(version_path, "assets.extra")
  os.makedirs(folder, exist_ok=True)
  path = os.path.join(folder, WARMUP_FILE)
  with tf.io.TFRecordWriter(path) as writer:
    for record in _warmup_records(image_size, channels, input_dtype, name):
      writer.write(record)
  return path


def build_archive(model, image_size, channels, preprocessing, input_dtype, target_layer,
                  mask_intensity):
  """A `keras.export.ExportArchive` with the five signatures (see module docstring)."""
  import keras
  import tensorflow as tf

  import atcon_tf
  from serving import signatures as sig

  tapped = atcon_tf.TappedModel(model, target_layer)
  num_classes = _num_classes(model)
  height, width = image_size
  dtype = tf.as_dtype(input_dtype)
  images_spec = tf.TensorSpec([None, height, width, channels], dtype, name=IMAGES_KEY)
  bytes_spec = tf.TensorSpec([None], tf.string, name=BYTES_KEY)
  class_spec = tf.TensorSpec([None], tf.int32, name=CLASS_IDS_KEY)

  def model_input(raw):
    return sig.preprocess(raw, preprocessing)

  def explain(raw, class_ids=None):
    x = model_input(raw)
    if class_ids is not None:
      class_ids = sig.check_class_ids(class_ids, tf.shape(x)[0], num_classes)
    return sig.explain(tapped, x, class_ids, mask_intensity=mask_intensity)

  def serving_default(images):
    return explain(images)

  def explain_class(images, class_ids):
    return explain(images, class_ids)

  def predict(images):
    return sig.predict(tapped, model_input(images))

  def predict_bytes(images_bytes):
    return explain(sig.decode_images(images_bytes, image_size, channels))

  def explain_class_bytes(images_bytes, class_ids):
    return explain(sig.decode_images(images_bytes, image_size, channels), class_ids)

  archive = keras.export.ExportArchive()
  archive.track(model)
  archive.add_endpoint("serving_default", serving_default, input_signature=[images_spec])
  archive.add_endpoint("explain_class", explain_class, input_signature=[images_spec, class_spec])
  archive.add_endpoint("predict", predict, input_signature=[images_spec])
  archive.add_endpoint("predict_bytes", predict_bytes, input_signature=[bytes_spec])
  archive.add_endpoint("explain_class_bytes", explain_class_bytes,
                       input_signature=[bytes_spec, class_spec])
  return archive, tapped, num_classes


def export_model(model_or_path, export_dir, name, version=None, image_size=None,
                 preprocessing="scale_0_1", target_layer=None, mask_intensity=8.0, warmup=True,
                 input_dtype="float32", source=None):
  """Exports a classifier to `export_dir/name/version/` for TF Serving; returns that path.

  Args:
    model_or_path: a keras.Model, an ATCONModel, a `.keras`/`.h5` file, or a trainer workdir
      (its `best.keras`). An ATCONModel exports its `.classifier`.
    export_dir, name: the export goes to `export_dir/name/VERSION/` (TF Serving's layout;
      serve it with model_base_path=`export_dir/name`).
    version: integer version; default: one more than the largest existing version.
    image_size: (height, width) or int; needed only if the model takes any size.
    preprocessing: raw pixels -> model input inside the graph; one of
      `serving.signatures.PREPROCESSING` ('scale_0_1', 'scale_-1_1', 'imagenet_caffe',
      'imagenet_torch', 'none'). Stored in `assets.extra/atcon_serving.json`.
    target_layer: Grad-CAM layer path (default: the ATCONModel's, else the last spatial layer).
    mask_intensity: w of the ATCON soft mask used for the `consistency` output.
    warmup: write `assets.extra/tf_serving_warmup_requests` (one request per signature).
    input_dtype: dtype of the `images` input, 'float32' or 'uint8'.
  """
  import keras
  import tensorflow as tf

  from serving import signatures as sig

  if not name or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
    raise ValueError(f"Model name {name!r} must be non-empty and use only letters, digits, "
                     "'_', '.', '-'.")
  if input_dtype not in INPUT_DTYPES:
    raise ValueError(f"input_dtype must be one of {INPUT_DTYPES}, got {input_dtype!r}.")
  if source is None and isinstance(model_or_path, (str, os.PathLike)):
    source = os.path.abspath(resolve_model_path(model_or_path))
  model, target_layer = load_for_export(model_or_path, target_layer)
  image_size, channels = _model_geometry(model, image_size)
  sig.check_preprocessing(preprocessing, channels)
  if preprocessing == "none" and input_dtype == "uint8":
    raise ValueError("preprocessing='none' feeds the input to the model as is: use "
                     "input_dtype='float32'.")
  base_path = os.path.join(os.fspath(export_dir), name)
  explicit_version = version is not None
  if explicit_version:
    version = int(version)
    if version < 0:
      raise ValueError(f"version must be >= 0, got {version}.")
    if os.path.exists(os.path.join(base_path, str(version))):
      raise FileExistsError(f"Version {version} already exists in {base_path!r}.")
  archive, tapped, num_classes = build_archive(
      model, image_size, channels, preprocessing, input_dtype, target_layer,
      float(mask_intensity))

  os.makedirs(base_path, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".export-tmp-", dir=base_path)
  try:
    staged = os.path.join(tmp, "model")
    archive.write_out(staged, verbose=False)
    info = {
        "name": name,
        "image_size": list(image_size),
        "channels": channels,
        "input_dtype": input_dtype,
        "preprocessing": preprocessing,
        "preprocessing_formula": sig.PREPROCESSING[preprocessing],
        "num_classes": num_classes,
        "output_activation": tapped.output_activation,
        "target_layer": tapped.target_layer_path,
        "mask_intensity": float(mask_intensity),
        "signatures": list(SIGNATURES),
        "source": source,
        "model_name": model.name,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
    }
    extra = os.path.join(staged, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    with open(os.path.join(extra, EXPORT_INFO_FILE), "w") as f:
      json.dump(info, f, indent=2)
    if warmup:
      write_warmup(staged, image_size, channels, input_dtype, name)
    while True:
      if not explicit_version:
        version = next_version(base_path)
      target = os.path.join(base_path, str(version))
      info["version"] = version
      with open(os.path.join(extra, EXPORT_INFO_FILE), "w") as f:
        json.dump(info, f, indent=2)
      try:
        os.rename(staged, target)  # Atomic: a poller sees all of the version or none of it.
        break
      except OSError:
        if explicit_version or not os.path.exists(target):
          raise
        # Another export took this version number meanwhile: take the next one.
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return target


def read_export_info(version_path):
  """The `assets.extra/atcon_serving.json` written by `export_model` (None if absent)."""
  path = os.path.join(version_path, "assets.extra", EXPORT_INFO_FILE)
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f)


def define_flags():
  """Defines the CLI's absl flags (call once)."""
  from absl import flags

  flags.DEFINE_string("model", None, "A .keras/.h5 model file, or a trainer workdir (best.keras).")
  flags.DEFINE_string("export_dir", None, "Root of the exports: writes EXPORT_DIR/NAME/VERSION.")
  flags.DEFINE_string("name", None, "Model name (the TF Serving MODEL_NAME).")
  flags.DEFINE_integer("version", None, "Version number (default: next free integer).")
  flags.DEFINE_enum("preprocessing", "scale_0_1",
                    ["none", "scale_0_1", "scale_-1_1", "imagenet_caffe", "imagenet_torch"],
                    "Raw pixels -> model input, applied inside the served graph.")
  flags.DEFINE_enum("input_dtype", "float32", list(INPUT_DTYPES), "dtype of the images input.")
  flags.DEFINE_list("image_size", None, "H,W (only for models that take any size).")
  flags.DEFINE_string("target_layer", None, "Grad-CAM layer path (default: automatic).")
  flags.DEFINE_float("mask_intensity", 8.0, "ATCON soft-mask intensity for `consistency`.")
  flags.DEFINE_boolean("warmup", True, "Write assets.extra/tf_serving_warmup_requests.")
  for required in ("model", "export_dir", "name"):
    flags.mark_flag_as_required(required)


def main(argv):
  from absl import flags

  if len(argv) > 1:
    raise SystemExit(f"Unexpected arguments: {argv[1:]}")
  from absl import logging as absl_logging

  absl_logging.set_verbosity(absl_logging.WARNING)  # TF's export chatter.
  f = flags.FLAGS
  image_size = None
  if f.image_size:
    image_size = [int(s) for s in f.image_size]
    image_size = image_size * 2 if len(image_size) == 1 else image_size
  path = export_model(f.model, f.export_dir, f.name, version=f.version, image_size=image_size,
                      preprocessing=f.preprocessing, target_layer=f.target_layer,
                      mask_intensity=f.mask_intensity, warmup=f.warmup,
                      input_dtype=f.input_dtype)
  print(path)
  sys.stdout.flush()


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  from absl import app

  define_flags()
  app.run(main)
