"""TF Serving's warm-up file: one batch-1 request per signature, replayed when a version loads.

So the first real request does not pay for graph set-up (TF Serving and `serving.server` both replay it).
"""

import io
import os

import numpy as np

from serving.export import signatures

WARMUP_FILE = "tf_serving_warmup_requests"


def _records(image_size, channels, input_dtype, name=""):
  """PredictionLog records (serialized), one per signature."""
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
  images_key, bytes_key, class_key = signatures.IMAGES_KEY, signatures.BYTES_KEY, signatures.CLASS_IDS_KEY
  inputs = {
    "serving_default": {images_key: images},
    "explain_class": {images_key: images, class_key: class_ids},
    "predict": {images_key: images},
    "maps": {images_key: images},
    "predict_bytes": {bytes_key: encoded},
    "explain_class_bytes": {bytes_key: encoded, class_key: class_ids},
    "predict_only_bytes": {bytes_key: encoded},
    "overlays_bytes": {bytes_key: encoded},
  }
  records = []
  for signature in signatures.SIGNATURES:
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=name, signature_name=signature))
    for key, value in inputs[signature].items():
      request.inputs[key].CopyFrom(tensors.to_tensor_proto(value))
    log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
    records.append(log.SerializeToString())
  return records


def write_warmup(version_path, image_size, channels, input_dtype, name=""):
  """Writes `assets.extra/tf_serving_warmup_requests` (TFRecord of PredictionLog); returns its path."""
  import tensorflow as tf

  folder = os.path.join(version_path, "assets.extra")
  os.makedirs(folder, exist_ok=True)
  path = os.path.join(folder, WARMUP_FILE)
  with tf.io.TFRecordWriter(path) as writer:
    for record in _records(image_size, channels, input_dtype, name):
      writer.write(record)
  return path
