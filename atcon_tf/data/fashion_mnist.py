"""Fashion-MNIST (70,000 real 28x28 grayscale clothing photos, 10 classes, MIT) as canonical splits.

Two offline sources, tried in this order: tfds `fashion_mnist` when it is prepared in `data_dir`, else the
idx files of Debian's `dataset-fashion-mnist` package (`/usr/share/datasets/fashion-mnist`; another folder
with the same four files via `$ATCON_FASHION_MNIST_DIR`). Both give train = the 60,000 training images and
test = the 10,000 test images; validation is carved from train by the trainer. Gray is repeated over three
channels before the usual antialiased resize (`canonical_element`), so every backbone sees RGB input.
"""

from __future__ import annotations

import gzip
import os

import numpy as np
import tensorflow as tf

from atcon_tf.data.canonical import DatasetInfo, Source, Splits, canonical_element
from atcon_tf.data.tfds_sources import DataUnavailableError, tfds_split

CLASSES = [
  "t-shirt/top",
  "trouser",
  "pullover",
  "dress",
  "coat",
  "sandal",
  "shirt",
  "sneaker",
  "bag",
  "ankle boot",
]
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
DIR_ENV = "ATCON_FASHION_MNIST_DIR"
FILES = {
  "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
  "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_HELP = (
  "Fashion-MNIST is neither prepared as tfds 'fashion_mnist' in data_dir={data_dir!r} nor installed as idx "
  "files in {idx_dir}: run `apt-get install dataset-fashion-mnist` (Debian), or prepare it elsewhere with "
  "`tfds build fashion_mnist --data_dir=DIR` and copy DIR/fashion_mnist here with --data_dir."
)


def idx_dir() -> str:
  return os.environ.get(DIR_ENV) or DEBIAN_DIR


def read_idx(path: str) -> np.ndarray:
  """An idx file (gzip or plain): magic 0x0000 + dtype 0x08 (uint8) + rank, big-endian int32 dims, data."""
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    data = f.read()
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
    raise ValueError(f"{path}: not an idx file of uint8 (magic {data[:4].hex()}).")
  rank = data[3]
  dims = np.frombuffer(data, ">i4", count=rank, offset=4).astype(np.int64)
  values = np.frombuffer(data, np.uint8, offset=4 + 4 * rank)
  if values.size != int(np.prod(dims)):
    raise ValueError(f"{path}: {values.size} values for the shape {tuple(dims)} in its header.")
  return values.reshape(tuple(dims))


def _find(folder: str, stem: str) -> str | None:
  for name in (stem + ".gz", stem):
    if os.path.isfile(os.path.join(folder, name)):
      return os.path.join(folder, name)
  return None


def idx_arrays(folder: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """(images uint8 (N, 28, 28), labels int64 (N,)) of one split from the idx files in `folder`."""
  paths = [_find(folder, stem) for stem in FILES[split]]
  if None in paths:
    raise FileNotFoundError(f"{folder}: no {FILES[split][0]}[.gz] / {FILES[split][1]}[.gz].")
  images, labels = read_idx(paths[0]), read_idx(paths[1]).astype(np.int64)
  if images.ndim != 3 or labels.shape != (len(images),):
    raise ValueError(f"{folder}/{split}: {images.shape} images for {labels.shape} labels.")
  return images, labels


def _element(image, label, index, image_size):
  rgb = tf.image.grayscale_to_rgb(tf.reshape(image, [28, 28, 1]))
  return canonical_element(
    rgb, tf.cast(label, tf.int32), tf.zeros([0, 4]), tf.zeros([0], tf.int32), index, image_size
  )


def _idx_source(folder, split, image_size):
  images, labels = idx_arrays(folder, split)

  def make():
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).enumerate()
    return ds.map(
      lambda i, e: _element(e[0], e[1], i, image_size),
      num_parallel_calls=tf.data.AUTOTUNE,
      deterministic=True,
    )

  return Source(make, len(images), labels)


def _tfds_source(split, data_dir, image_size):
  ds, count = tfds_split("fashion_mnist", split, data_dir, download=False)

  def make():
    return ds.enumerate().map(
      lambda i, e: _element(e["image"], e["label"], i, image_size),
      num_parallel_calls=tf.data.AUTOTUNE,
      deterministic=True,
    )

  labels = np.fromiter((int(v) for v in ds.map(lambda e: e["label"]).as_numpy_iterator()), np.int64)
  return Source(make, count, labels)


def fashion_mnist_splits(image_size: int, data_dir: str | None = None, folder: str | None = None) -> Splits:
  """tfds `fashion_mnist` from `data_dir` if prepared there, else the idx files of `folder` (default:
  `idx_dir()`); `DataUnavailableError` in one sentence when neither is there."""
  folder = folder or idx_dir()
  try:
    train, test = (_tfds_source(s, data_dir, image_size) for s in ("train", "test"))
    origin = f"tfds fashion_mnist in {data_dir or 'the tfds default data_dir'}"
  except DataUnavailableError:
    try:
      train, test = (_idx_source(folder, s, image_size) for s in ("train", "test"))
    except FileNotFoundError:
      raise DataUnavailableError(_HELP.format(data_dir=data_dir, idx_dir=folder)) from None
    origin = f"idx files in {folder}"
  info = DatasetInfo(
    "fashion_mnist",
    len(CLASSES),
    list(CLASSES),
    multi_label=False,
    has_boxes=False,
    description=f"Fashion-MNIST ({origin}), gray repeated to RGB; validation carved from train",
  )
  return Splits(info, train, None, test)
