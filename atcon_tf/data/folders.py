"""Image folders (`folder:PATH`, one sub-folder per class) as canonical splits, via Keras'
`image_dataset_from_directory`."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from atcon_tf.data.canonical import DatasetInfo, Source, Splits, select


def _folder_files(path):
  import keras

  ds = keras.utils.image_dataset_from_directory(
    path,
    labels="inferred",
    label_mode="int",
    batch_size=None,
    shuffle=False,
    image_size=(8, 8),
    verbose=False,
  )
  return ds.class_names, list(ds.file_paths)


def _folder_source(path, class_names, image_size, keep=None):
  """`image_dataset_from_directory` of one folder (fixed class list), as canonical elements."""
  import keras

  ds = keras.utils.image_dataset_from_directory(
    path,
    labels="inferred",
    label_mode="int",
    class_names=class_names,
    batch_size=None,
    shuffle=False,
    image_size=(image_size, image_size),
    interpolation="bilinear",
    verbose=False,
  )
  files = list(ds.file_paths)
  labels = np.array([class_names.index(os.path.basename(os.path.dirname(f))) for f in files], np.int64)
  base = ds.enumerate()
  if keep is not None:  # a sub-split of the folder: re-index 0..len(keep)-1
    base = (
      select(base.map(lambda i, xy: {"index": i, "xy": xy}), keep, len(files))
      .map(lambda e: e["xy"])
      .enumerate()
    )
    labels = labels[np.asarray(keep, np.int64)]

  def make():
    def convert(index, x, y):
      image = tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.uint8)
      return {
        "image": image,
        "label": tf.cast(y, tf.int32),
        "boxes": tf.zeros([0, 4]),
        "box_labels": tf.zeros([0], tf.int32),
        "size": tf.constant([image_size, image_size], tf.int32),
        "index": tf.cast(index, tf.int64),
      }

    return base.map(
      lambda i, xy: convert(i, xy[0], xy[1]), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )

  return Source(make, len(labels), labels)


def folder_splits(path, image_size, test_fraction=0.2):
  """PATH/train, PATH/validation (or val) and PATH/test if train and test exist; otherwise a fixed-seed
  `test_fraction` of PATH is the test set and validation is carved from the rest (by the trainer)."""
  if not os.path.isdir(path):
    raise FileNotFoundError(
      f"folder dataset: {path!r} is not a directory (expected one sub-folder per class)."
    )
  sub = {
    d: os.path.join(path, d)
    for d in ("train", "validation", "val", "test")
    if os.path.isdir(os.path.join(path, d))
  }
  if "train" in sub and "test" in sub:
    class_names, _ = _folder_files(sub["train"])
    val_dir = sub.get("validation") or sub.get("val")
    train = _folder_source(sub["train"], class_names, image_size)
    validation = _folder_source(val_dir, class_names, image_size) if val_dir else None
    test = _folder_source(sub["test"], class_names, image_size)
    own_validation = validation is not None
    description = f"images from {path}/{{train,test}} (one sub-folder per class)"
  else:
    class_names, files = _folder_files(path)
    n = len(files)
    perm = np.random.default_rng(20231).permutation(n)  # fixed: the test set does not move with --seed
    n_test = max(1, int(round(test_fraction * n)))
    test_idx, train_idx = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    train = _folder_source(path, class_names, image_size, keep=train_idx)
    test = _folder_source(path, class_names, image_size, keep=test_idx)
    validation, own_validation = None, False
    description = (
      f"images from {path} (one sub-folder per class); fixed-seed {test_fraction:.0%} held out as test"
    )
  info = DatasetInfo(
    name=f"folder:{path}",
    num_classes=len(class_names),
    class_names=list(class_names),
    multi_label=False,
    has_boxes=False,
    own_validation=own_validation,
    description=description,
  )
  return Splits(info, train, validation, test)
