"""The canonical element every dataset yields, and the split containers around it.

Trainers and evaluation never look at tfds feature names: every source (`tfds_sources`, `folders`, the
house_numbers adapter in `datasets`) turns its records into

    {"image": uint8 (S, S, 3), resized to image_size (aspect not kept, as the authors' Resize((256, 256))),
     "label": int32 () class id, or float32 (C,) multi-hot (VOC: objects flagged `difficult` ignored),
     "boxes": float32 (K, 4) normalized (ymin, xmin, ymax, xmax) of ALL objects (difficult included, §6.2),
     "box_labels": int32 (K,), "size": int32 (2,) original (height, width), "index": int64 position in the split}

`index` is the position in the split's deterministic read order (tfds `shuffle_files=False`), so index-based
subsets (`subsets.py`) are reproducible. Datasets without boxes (SVHN, folders) have K = 0.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

MAX_BOXES = 64


@dataclasses.dataclass
class DatasetInfo:
  name: str
  num_classes: int
  class_names: list
  multi_label: bool
  has_boxes: bool
  # 'edge': normalized boxes are pixel-edge / size (house_numbers); 'voc': tfds voc's (pixel - 1) / size.
  box_convention: str = "edge"
  own_validation: bool = False
  description: str = ""

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


@dataclasses.dataclass
class Source:
  """One split: `dataset(indices)` -> canonical elements, in index order, optionally only `indices`."""

  make: callable  # () -> tf.data.Dataset of canonical elements (all of the split, index order)
  num_examples: int
  labels: np.ndarray | None = None  # (N,) or (N, C); filled for train (and cheap splits)

  def dataset(self, indices=None) -> tf.data.Dataset:
    ds = self.make()
    if indices is None:
      return ds
    return select(ds, indices, self.num_examples)


@dataclasses.dataclass
class Splits:
  info: DatasetInfo
  train: Source
  validation: Source | None
  test: Source


def select(ds: tf.data.Dataset, indices, num_examples: int) -> tf.data.Dataset:
  """Keeps the elements whose `index` is in `indices` (order of the split preserved)."""
  keep = np.zeros(max(int(num_examples), 1), bool)
  keep[np.asarray(indices, np.int64)] = True
  keep = tf.constant(keep)
  return ds.filter(lambda e: tf.gather(keep, e["index"]))


def _resize(image, image_size: int):
  image = tf.ensure_shape(image, [None, None, 3])
  size = tf.shape(image)[:2]
  resized = tf.image.resize(image, [image_size, image_size], antialias=True)
  resized = tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)
  return resized, tf.cast(size, tf.int32)


def canonical_element(image, label, boxes, box_labels, index, image_size):
  """One record as the canonical element, the image resized (antialiased) to `image_size`."""
  image, size = _resize(image, image_size)
  return {
    "image": image,
    "label": label,
    "boxes": tf.reshape(tf.cast(boxes, tf.float32), [-1, 4]),
    "box_labels": tf.cast(box_labels, tf.int32),
    "size": size,
    "index": tf.cast(index, tf.int64),
  }


def padded_eval_batches(ds: tf.data.Dataset, batch_size: int, num_classes: int, multi_label: bool):
  """Batches of canonical elements with boxes padded to MAX_BOXES (padding boxes have label -1)."""
  label_shape = [num_classes] if multi_label else []

  def clip(e):
    e = dict(e)
    e["boxes"], e["box_labels"] = e["boxes"][:MAX_BOXES], e["box_labels"][:MAX_BOXES]
    return e

  return ds.map(clip).padded_batch(
    batch_size,
    padded_shapes={
      "image": [None, None, 3],
      "label": label_shape,
      "boxes": [MAX_BOXES, 4],
      "box_labels": [MAX_BOXES],
      "size": [2],
      "index": [],
    },
    padding_values={
      "image": tf.constant(0, tf.uint8),
      "label": tf.constant(0, tf.float32 if multi_label else tf.int32),
      "boxes": tf.constant(0.0),
      "box_labels": tf.constant(-1, tf.int32),
      "size": tf.constant(0, tf.int32),
      "index": tf.constant(0, tf.int64),
    },
  )
