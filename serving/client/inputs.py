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


IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")


class ImageFileError(ValueError):
  """An image file that cannot be sent: missing, empty, or not a JPEG/PNG/GIF/BMP. `.path` names it."""

  def __init__(self, path, message):
    super().__init__(message)
    self.path = path


def read_image_file(path):
  """The bytes of one image file; ImageFileError (or FileNotFoundError) naming the file otherwise."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"No image file at {path!r}.")
  with open(path, "rb") as f:
    data = f.read()
  if not data:
    raise ImageFileError(path, f"{path}: the file is empty.")
  if not data.startswith(IMAGE_MAGIC):
    raise ImageFileError(path, f"{path}: not a JPEG, PNG, GIF or BMP image (starts with {data[:8]!r}).")
  return data


def read_encoded(images):
  """Paths and/or encoded bytes -> list of bytes (errors name the file: missing, empty, not an image)."""
  if isinstance(images, (str, bytes, os.PathLike)):
    images = [images]
  return [bytes(item) if isinstance(item, (bytes, bytearray)) else read_image_file(item) for item in images]


def file_names(images):
  """The file name of each encoded input (None for raw bytes), to name files in server errors."""
  if isinstance(images, (str, bytes, os.PathLike)):
    images = [images]
  return [None if isinstance(item, (bytes, bytearray)) else os.fspath(item) for item in images]


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
