"""Images as the served signatures take them: encoded files or bytes, or pixel arrays checked before sending.

TF Serving does not check input shapes, and a wrong-rank input can abort a TensorFlow process in oneDNN, so
arrays are cast to the signature's dtype and their shape is checked here, on the client.
"""

import os

import numpy as np


def _is_encoded_input(images):
  if isinstance(images, (str, bytes, os.PathLike)):
    return True
  if isinstance(images, (list, tuple)) and images:
    return all(isinstance(i, (str, bytes, bytearray, os.PathLike)) for i in images)
  return False


def read_encoded(images):
  """Paths and/or encoded bytes -> list of bytes (FileNotFoundError names the missing file)."""
  if isinstance(images, (str, bytes, os.PathLike)):
    images = [images]
  encoded = []
  for item in images:
    if isinstance(item, (bytes, bytearray)):
      encoded.append(bytes(item))
      continue
    path = os.fspath(item)
    if not os.path.isfile(path):
      raise FileNotFoundError(f"No image file at {path!r}.")
    with open(path, "rb") as f:
      encoded.append(f.read())
  return encoded


def _check_shape(shape, expected, signature):
  fixed = "[" + ", ".join("?" if d is None else str(d) for d in expected) + "]"
  if len(shape) != len(expected) or any(
    want is not None and got != want for got, want in zip(shape, expected)
  ):
    raise ValueError(
      f"Images of shape {list(shape)} do not fit signature {signature!r}, which "
      f"takes {fixed} (a batch of images: add a batch axis for one image)."
    )
  if shape and shape[0] == 0:
    raise ValueError("No images to send (empty batch).")


def _cast_pixels(values, dtype):
  if dtype == "uint8" and values.dtype != np.uint8:
    if values.size and (values.min() < 0 or values.max() > 255 or not np.all(np.equal(np.mod(values, 1), 0))):
      raise ValueError(
        f"The model takes uint8 raw pixels (0..255); got {values.dtype} values in "
        f"[{values.min()}, {values.max()}]. Send integer pixel values."
      )
    return values.astype(np.uint8)
  if dtype == "float32" and values.dtype != np.float32:
    return values.astype(np.float32)
  return values
