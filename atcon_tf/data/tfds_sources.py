"""SVHN (tfds `svhn_cropped`) and PASCAL VOC (tfds `voc`) as canonical splits, read from a prepared data_dir.

Nothing here can download on the offline machines: when tfds data is missing, `DataUnavailableError` says how
to prepare it elsewhere and copy it here.
"""

from __future__ import annotations

import contextlib
import logging
import os

import numpy as np
import tensorflow as tf

from atcon_tf.data.canonical import DatasetInfo, Source, Splits, canonical_element

SVHN_CLASSES = [str(i) for i in range(10)]
VOC_CLASSES = [
  "aeroplane",
  "bicycle",
  "bird",
  "boat",
  "bottle",
  "bus",
  "car",
  "cat",
  "chair",
  "cow",
  "diningtable",
  "dog",
  "horse",
  "motorbike",
  "person",
  "pottedplant",
  "sheep",
  "sofa",
  "train",
  "tvmonitor",
]


class DataUnavailableError(RuntimeError):
  """The dataset is not prepared locally and cannot be downloaded here."""


_TFDS_HELP = (
  "tfds dataset {name!r} is not prepared in data_dir={data_dir!r} and cannot be downloaded from this machine.\n"
  "Prepare it on a machine with internet access and copy the folder:\n"
  "  pip install tensorflow-datasets\n"
  "  tfds build {name} --data_dir=/some/dir        # or: python -c \"import tensorflow_datasets as tfds; "
  "tfds.builder('{name}', data_dir='/some/dir').download_and_prepare()\"\n"
  "  then copy /some/dir/{folder} to {data_dir}/{folder} here and pass --data_dir={data_dir}.\n"
  "tfds caches what it downloads in DATA_DIR/downloads: copying that folder from a machine that ran the build\n"
  "  (files named after their URLs, e.g. for {archives}) lets `tfds build {name} --data_dir={data_dir}` run here\n"
  "  without the network.\n"
  "Underlying error: {error}"
)
_ARCHIVES = {
  "svhn_cropped": "train_32x32.mat, test_32x32.mat, extra_32x32.mat from http://ufldl.stanford.edu/housenumbers/",
  "voc": "VOCtrainval_06-Nov-2007.tar / VOCtest_06-Nov-2007.tar, or VOCtrainval_11-May-2012.tar",
}


def _tfds_builder(name: str, data_dir: str | None, download: bool):
  import tensorflow_datasets as tfds

  builder = tfds.builder(name, data_dir=data_dir)
  if download:
    try:
      builder.download_and_prepare()
    except Exception as error:  # noqa: BLE001 - any download failure gets the same instructions
      raise _unavailable(name, builder, error) from error
  return builder


def _unavailable(name, builder, error):
  base = name.split("/")[0]
  root = builder.data_dir  # ROOT/name[/config]/version
  for _ in range(3 if "/" in name else 2):
    root = os.path.dirname(root)
  return DataUnavailableError(
    _TFDS_HELP.format(
      name=name,
      data_dir=root,
      folder=base,
      archives=_ARCHIVES.get(base, "the raw files"),
      error=f"{type(error).__name__}: {error}",
    )
  )


@contextlib.contextmanager
def _quiet_tfds_probe():
  """tfds' absl log messages below ERROR hidden: when the data is missing, its warning ("Variant folder ...
  has no dataset_info.json") would come before our own message and mislead; when it is there, its INFO lines
  add nothing. Only around our probe: downloads and other tfds calls keep their logs."""
  from absl import logging as absl_logging

  logger = absl_logging.get_absl_logger()
  level = logger.level
  logger.setLevel(max(level, logging.ERROR))
  try:
    yield
  finally:
    logger.setLevel(level)


def tfds_split(name: str, split: str, data_dir: str | None, download: bool):
  """tfds dataset of one split, deterministic order, plus its size."""
  import tensorflow_datasets as tfds

  def load():
    with _quiet_tfds_probe():
      return tfds.load(
        name, split=split, data_dir=data_dir, shuffle_files=False, with_info=True, download=False
      )

  try:
    ds, info = load()
  except Exception as error:  # noqa: BLE001
    if download:
      _tfds_builder(name, data_dir, download=True)
      ds, info = load()
    else:
      with _quiet_tfds_probe():
        builder = tfds.builder(name, data_dir=data_dir)
      raise _unavailable(name, builder, error) from error
  try:
    count = sum(info.splits[s].num_examples for s in split.split("+"))
  except Exception:  # noqa: BLE001 - mocked datasets may carry no split metadata
    count = int(ds.cardinality().numpy())
  if count <= 0:
    count = int(ds.reduce(0, lambda n, _: n + 1).numpy())
  return ds, int(count)


# ----------------------------------------------------------------------------------------------------- svhn


def _svhn_source(split, data_dir, download, image_size, need_labels):
  ds, count = tfds_split("svhn_cropped", split, data_dir, download)

  def make():
    def convert(index, e):
      return canonical_element(
        e["image"],
        tf.cast(e["label"], tf.int32),
        tf.zeros([0, 4]),
        tf.zeros([0], tf.int32),
        index,
        image_size,
      )

    return ds.enumerate().map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

  labels = None
  if need_labels:
    labels = np.fromiter((int(v) for v in ds.map(lambda e: e["label"]).as_numpy_iterator()), np.int64)
  return Source(make, count, labels)


def svhn_splits(image_size: int, data_dir: str | None, download: bool) -> Splits:
  """train = tfds `train`, test = tfds `test`; no validation split (the trainer carves it from train)."""
  info = DatasetInfo(
    "svhn_cropped",
    10,
    SVHN_CLASSES,
    multi_label=False,
    has_boxes=False,
    description="SVHN cropped digits (tfds svhn_cropped); validation carved from train",
  )
  return Splits(
    info,
    _svhn_source("train", data_dir, download, image_size, True),
    None,
    _svhn_source("test", data_dir, download, image_size, False),
  )


# ------------------------------------------------------------------------------------------------------ voc


def voc_multi_hot(object_labels, is_difficult, num_classes=20):
  """Multi-hot image label from the objects, ignoring those flagged difficult (docs/method.md §4.1)."""
  keep = tf.logical_not(tf.cast(is_difficult, tf.bool))
  kept = tf.boolean_mask(tf.cast(object_labels, tf.int32), keep)
  hot = tf.reduce_max(tf.one_hot(kept, num_classes, dtype=tf.float32), axis=0)
  return tf.reshape(tf.where(tf.size(kept) > 0, hot, tf.zeros([num_classes])), [num_classes])


def _objects(e):
  """VOC objects with every field cut to the same length (real data always has it; tfds `mock_data` draws
  each sequence length independently)."""
  o = e["objects"]
  n = tf.reduce_min(
    tf.stack([tf.shape(o["label"])[0], tf.shape(o["is_difficult"])[0], tf.shape(o["bbox"])[0]])
  )
  return o["label"][:n], o["is_difficult"][:n], o["bbox"][:n]


def _voc_source(name, split, data_dir, download, image_size, need_labels):
  ds, count = tfds_split(name, split, data_dir, download)

  def label_of(e):
    labels, difficult, _ = _objects(e)
    return voc_multi_hot(labels, difficult)

  def make():
    def convert(index, e):
      labels, difficult, bbox = _objects(e)
      return canonical_element(e["image"], voc_multi_hot(labels, difficult), bbox, labels, index, image_size)

    return ds.enumerate().map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

  labels = None
  if need_labels:
    labels = np.stack(list(ds.map(label_of).as_numpy_iterator())) if count else np.zeros((0, 20), np.float32)
  return Source(make, count, labels)


def voc_splits(year: str, image_size: int, data_dir: str | None, download: bool) -> Splits:
  """2012: train = `train`, test = `validation` (the authors' protocol); 2007: train = `train+validation`,
  test = `test`. No validation split (the trainer carves it from train)."""
  tfds_name = f"voc/{year}"
  train_split, test_split = ("train+validation", "test") if year == "2007" else ("train", "validation")
  info = DatasetInfo(
    tfds_name,
    20,
    VOC_CLASSES,
    multi_label=True,
    has_boxes=True,
    box_convention="voc",
    description=f"PASCAL VOC {year} (tfds {tfds_name}): train={train_split}, "
    f"test={test_split}; validation carved from train",
  )
  return Splits(
    info,
    _voc_source(tfds_name, train_split, data_dir, download, image_size, True),
    None,
    _voc_source(tfds_name, test_split, data_dir, download, image_size, False),
  )
