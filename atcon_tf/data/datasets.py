"""Datasets for the trainers: `load(name, image_size, ...)` -> `Splits` of canonical elements.

`Splits` holds a `DatasetInfo`, one `Source` per split (train / validation / test) and the training labels as
numpy (for `subsets.plan_splits`); the element every source yields is described in `canonical.py`.

Where each split comes from (the validation split is NEVER carved from test):
* svhn (`tfds_sources.py`): train = tfds `train`, test = tfds `test`; validation carved from train by the trainer
  (`plan_splits`). (The authors used 500 test images for validation, docs/method.md §8.5: an accident not copied
  here.)
* voc2012 (`tfds_sources.py`): train = `train`, test = `validation` (the authors' protocol: VOC12-val is their
  test set, §4.1).
* voc2007 (`tfds_sources.py`): train = `train+validation`, test = `test` (VOC2007 test has annotations).
* fashion_mnist (`fashion_mnist.py`): tfds `fashion_mnist` if prepared in data_dir, else the idx files of
  Debian's `dataset-fashion-mnist`; train = its 60,000, test = its 10,000; validation carved from train.
* house_numbers (below; scenes from `house_numbers.py`, tfds builder in `house_numbers_tfds.py`): its own train /
  validation / test splits (disjoint parts), generated offline.
* folder:PATH (`folders.py`): PATH/train, PATH/validation (or val) and PATH/test; without test/ a fixed-seed 20% of
  train is the test set; without split folders (PATH/<class>/) a fixed-seed 20% of PATH. Validation, when there
  is none, is carved from the rest. Every file is checked (decoded) when the dataset loads.

Nothing here can download: when tfds data is missing, `DataUnavailableError` says how to prepare it elsewhere.
Augmentation is in `augmentation.py`, box conventions for the metrics in `box_conventions.py`.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from atcon_tf import choices
from atcon_tf.data.canonical import DatasetInfo, Source, Splits, canonical_element
from atcon_tf.data.fashion_mnist import fashion_mnist_splits
from atcon_tf.data.folders import folder_splits
from atcon_tf.data.tfds_sources import DataUnavailableError, svhn_splits, voc_splits

__all__ = ["DataUnavailableError", "Splits", "house_numbers_builder", "load"]


# ----------------------------------------------------------------------------------------------- house_numbers


def house_numbers_builder(config: str, image_size: int, data_dir: str | None, split_sizes: dict | None):
  """The offline `HouseNumbers` tfds builder at `image_size` (generated on first use, ~1 ms per scene)."""
  from atcon_tf.data.house_numbers_tfds import HouseNumbers

  sizes = {k: int(v) for k, v in (split_sizes or {}).items() if v}
  builder = HouseNumbers(config=config, data_dir=data_dir, image_size=image_size, split_sizes=sizes or None)
  builder.download_and_prepare()
  return builder


def _house_numbers_splits(config, image_size, data_dir, split_sizes):
  """Its own train / validation / test splits; `index` is the generator index."""
  from atcon_tf.data import house_numbers as hn

  builder = house_numbers_builder(config, image_size, data_dir, split_sizes)
  multi = builder.builder_config.multi

  def source(split, need_labels):
    ds = builder.as_dataset(split=split, shuffle_files=False)
    count = builder.info.splits[split].num_examples

    def make():
      def convert(e):
        label = tf.cast(e["label"], tf.float32) if multi else tf.cast(e["label"], tf.int32)
        return canonical_element(
          e["image"], label, e["objects"]["bbox"], e["objects"]["label"], e["index"], image_size
        )

      # Records come in tfds' (fixed) storage order; `index` is the generator index, 0..count-1.
      return ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    labels = None
    if need_labels:
      pairs = list(ds.map(lambda e: (e["index"], e["label"])).as_numpy_iterator())
      pairs.sort(key=lambda p: int(p[0]))
      if [int(p[0]) for p in pairs] != list(range(count)):
        raise ValueError(f"house_numbers/{split}: generator indices are not 0..{count - 1}.")
      labels = np.stack([p[1] for p in pairs]) if pairs else np.zeros((0,), np.int64)
    return Source(make, count, labels)

  info = DatasetInfo(
    name=f"house_numbers/{builder.builder_config.name}",
    num_classes=hn.NUM_CLASSES,
    class_names=[str(i) for i in range(hn.NUM_CLASSES)],
    multi_label=multi,
    has_boxes=True,
    box_convention="edge",
    own_validation=True,
    description="SYNTHETIC house-number scenes (not SVHN), built offline from real parts.",
  )
  return Splits(info, source("train", True), source("validation", False), source("test", False))


# ----------------------------------------------------------------------------------------------------- entry


def load(
  name: str,
  image_size: int,
  data_dir: str | None = None,
  house_numbers_config: str = "single",
  house_numbers_sizes: dict | None = None,
  download: bool = False,
  skip_bad_images: bool = False,
) -> Splits:
  """The splits of dataset `name` (see the module docstring) at `image_size`.

  house_numbers_sizes: {"train": n, "validation": n, "test": n} (generated; each size set has its own folder).
  download: let tfds try to download (never works on the offline machines; the error explains what to do).
  skip_bad_images: folder datasets only (every file is checked when they load): skip the files that are not
    usable images, counted in the log, instead of raising `folders.BadImagesError` that lists them.
  """
  if name == "house_numbers":
    return _house_numbers_splits(house_numbers_config, image_size, data_dir, house_numbers_sizes)
  if name == "svhn":
    return svhn_splits(image_size, data_dir, download)
  if name == "fashion_mnist":
    return fashion_mnist_splits(image_size, data_dir)
  if name in ("voc2007", "voc2012"):
    return voc_splits(name[3:], image_size, data_dir, download)
  if name.startswith("folder:"):
    return folder_splits(
      os.path.expanduser(name[len("folder:") :]), image_size, skip_bad_images=skip_bad_images
    )
  raise ValueError(f"Unknown dataset {name!r}; choose one of {list(choices.DATASETS)}.")
