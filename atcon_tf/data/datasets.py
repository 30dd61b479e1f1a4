"""Datasets for the trainers: SVHN (tfds `svhn_cropped`), PASCAL VOC (tfds `voc`), `house_numbers`, folders.

`load(name, image_size, ...)` returns a `Splits`: a `DatasetInfo`, one `Source` per split (train / validation /
test) and the training labels as numpy (for `subsets.plan_splits`). `Source.dataset(indices)` yields the
*canonical element* of every dataset, so trainers and evaluation never look at tfds feature names:

    {"image": uint8 (S, S, 3), resized to image_size (aspect not kept, as the authors' Resize((256, 256))),
     "label": int32 () class id, or float32 (C,) multi-hot (VOC: objects flagged `difficult` ignored),
     "boxes": float32 (K, 4) normalized (ymin, xmin, ymax, xmax) of ALL objects (difficult included, §6.2),
     "box_labels": int32 (K,), "size": int32 (2,) original (height, width), "index": int64 position in the split}

`index` is the position in the split's deterministic read order (tfds `shuffle_files=False`), so index-based
subsets (`subsets.py`) are reproducible. Datasets without boxes (SVHN, folders) have K = 0.

Where each split comes from (the validation split is NEVER carved from test):
* svhn: train = tfds `train`, test = tfds `test`; validation carved from train by the trainer (`plan_splits`).
  (The authors used 500 test images for validation, docs/method.md §8.5: an accident not copied here.)
* voc2012: train = `train`, test = `validation` (the authors' protocol: VOC12-val is their test set, §4.1).
* voc2007: train = `train+validation`, test = `test` (VOC2007 test has annotations).
* house_numbers: its own train / validation / test splits (disjoint parts), generated offline.
* folder:PATH: PATH/train, PATH/validation (or val) and PATH/test if they exist; otherwise a fixed-seed 20% of
  PATH is the test set and validation is carved from the rest.

Nothing here can download: when tfds data is missing the error says how to prepare it elsewhere.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf

from atcon_tf import choices

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
MAX_BOXES = 64


class DataUnavailableError(RuntimeError):
  """The dataset is not prepared locally and cannot be downloaded here."""


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


# ---------------------------------------------------------------------------------------------- augmentation


def augment(image, policy: str, seed=None):
  """Label-preserving training augmentation on uint8 (S, S, 3) -> uint8.

  none; digits: colour inversion and channel permutation (digit colour / polarity are random in house numbers
  and SVHN) and a random translation of up to 1/8 of the size (edge pixels repeated); flip: the authors' SVHN /
  older PASCAL flips (horizontal and vertical, p=0.5 each); voc: random resized crop (scale 0.5-1) + horizontal
  flip (the authors' pascal_voc HEAD, without colour jitter).
  """
  if policy == "none":
    return image
  x = tf.cast(image, tf.float32)
  size = tf.shape(x)[:2]
  if policy == "digits":
    x = tf.where(tf.random.uniform([]) < 0.5, 255.0 - x, x)
    x = tf.gather(x, tf.random.shuffle(tf.range(3)), axis=-1)
    pad = tf.maximum(size // 8, 1)
    padded = tf.pad(x, [[pad[0], pad[0]], [pad[1], pad[1]], [0, 0]], mode="SYMMETRIC")
    x = tf.image.random_crop(padded, tf.concat([size, [3]], 0))
  elif policy == "flip":
    x = tf.image.random_flip_left_right(x)
    x = tf.image.random_flip_up_down(x)
  elif policy == "voc":
    begin, crop, _ = tf.image.sample_distorted_bounding_box(
      image_size=tf.concat([size, [3]], 0),
      bounding_boxes=tf.zeros([1, 0, 4]),
      min_object_covered=0.0,
      aspect_ratio_range=(3 / 4, 4 / 3),
      area_range=(0.5, 1.0),
      use_image_if_no_bounding_boxes=True,
    )
    x = tf.image.resize(tf.slice(x, begin, crop), size)
    x = tf.image.random_flip_left_right(x)
  else:
    choices.check("augmentation", policy, choices.AUGMENTATIONS)
  return tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.uint8)


# ---------------------------------------------------------------------------------------------------- boxes


def edge_boxes(bbox_normalized, size, convention: str) -> np.ndarray:
  """Normalized boxes -> pixel-edge boxes in original-image pixels (box covers rows ymin..ymax-1).

  Used by the pointing games (`atcon_tf.metrics.localization`, pixel-edge convention)."""
  h, w = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
  b = np.asarray(bbox_normalized, np.float64).reshape(-1, 4) * np.array([h, w, h, w])
  if convention == "voc":  # tfds voc: (first_pixel - 1)/size ... (last_pixel - 1)/size, 1-based VOC pixels
    b = np.rint(b) + np.array([0.0, 0.0, 1.0, 1.0])
  return b


def wsd_boxes(bbox_normalized, size, convention: str) -> np.ndarray:
  """Boxes for `metrics.wsd_iou` (the §6.2 strict rule `ymin < i < ymax`).

  voc: the original 1-based VOC integers (`voc_pixel_boxes`): exact parity with the authors' evaluation.
  edge: (ymin - 1, xmin - 1, ymax, xmax), so the strict rule covers exactly the box's pixels.
  """
  if convention == "voc":
    from atcon_tf.metrics.localization import voc_pixel_boxes

    return voc_pixel_boxes(bbox_normalized, size)
  return edge_boxes(bbox_normalized, size, "edge") - np.array([1.0, 1.0, 0.0, 0.0])


# --------------------------------------------------------------------------------------------------------- tfds

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


def _tfds_split(name: str, split: str, data_dir: str | None, download: bool):
  """tfds dataset of one split, deterministic order, plus its size."""
  import tensorflow_datasets as tfds

  try:
    ds, info = tfds.load(
      name, split=split, data_dir=data_dir, shuffle_files=False, with_info=True, download=False
    )
  except Exception as error:  # noqa: BLE001
    if download:
      _tfds_builder(name, data_dir, download=True)
      ds, info = tfds.load(
        name, split=split, data_dir=data_dir, shuffle_files=False, with_info=True, download=False
      )
    else:
      builder = tfds.builder(name, data_dir=data_dir)
      raise _unavailable(name, builder, error) from error
  try:
    count = sum(info.splits[s].num_examples for s in split.split("+"))
  except Exception:  # noqa: BLE001 - mocked datasets may carry no split metadata
    count = int(ds.cardinality().numpy())
  if count <= 0:
    count = int(ds.reduce(0, lambda n, _: n + 1).numpy())
  return ds, int(count)


def _resize(image, image_size: int):
  image = tf.ensure_shape(image, [None, None, 3])
  size = tf.shape(image)[:2]
  resized = tf.image.resize(image, [image_size, image_size], antialias=True)
  resized = tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)
  return resized, tf.cast(size, tf.int32)


def _canonical(image, label, boxes, box_labels, index, image_size):
  image, size = _resize(image, image_size)
  return {
    "image": image,
    "label": label,
    "boxes": tf.reshape(tf.cast(boxes, tf.float32), [-1, 4]),
    "box_labels": tf.cast(box_labels, tf.int32),
    "size": size,
    "index": tf.cast(index, tf.int64),
  }


def _svhn_source(split, data_dir, download, image_size, need_labels):
  ds, count = _tfds_split("svhn_cropped", split, data_dir, download)

  def make():
    def convert(index, e):
      return _canonical(
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
  ds, count = _tfds_split(name, split, data_dir, download)

  def label_of(e):
    labels, difficult, _ = _objects(e)
    return voc_multi_hot(labels, difficult)

  def make():
    def convert(index, e):
      labels, difficult, bbox = _objects(e)
      return _canonical(e["image"], voc_multi_hot(labels, difficult), bbox, labels, index, image_size)

    return ds.enumerate().map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

  labels = None
  if need_labels:
    labels = np.stack(list(ds.map(label_of).as_numpy_iterator())) if count else np.zeros((0, 20), np.float32)
  return Source(make, count, labels)


# ----------------------------------------------------------------------------------------------- house_numbers


def house_numbers_builder(config: str, image_size: int, data_dir: str | None, split_sizes: dict | None):
  """The offline `HouseNumbers` tfds builder at `image_size` (generated on first use, ~1 ms per scene)."""
  from atcon_tf.data import house_numbers as hn

  sizes = {k: int(v) for k, v in (split_sizes or {}).items() if v}
  builder = hn.HouseNumbers(
    config=config, data_dir=data_dir, image_size=image_size, split_sizes=sizes or None
  )
  builder.download_and_prepare()
  return builder


def _house_numbers_splits(config, image_size, data_dir, split_sizes):
  from atcon_tf.data import house_numbers as hn

  builder = house_numbers_builder(config, image_size, data_dir, split_sizes)
  multi = builder.builder_config.multi

  def source(split, need_labels):
    ds = builder.as_dataset(split=split, shuffle_files=False)
    count = builder.info.splits[split].num_examples

    def make():
      def convert(e):
        label = tf.cast(e["label"], tf.float32) if multi else tf.cast(e["label"], tf.int32)
        return _canonical(
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


# ------------------------------------------------------------------------------------------------------ folders


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


def _folder_splits(path, image_size, test_fraction=0.2):
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


# ----------------------------------------------------------------------------------------------------- entry


def load(
  name: str,
  image_size: int,
  data_dir: str | None = None,
  house_numbers_config: str = "single",
  house_numbers_sizes: dict | None = None,
  download: bool = False,
) -> Splits:
  """The splits of dataset `name` (see the module docstring) at `image_size`.

  house_numbers_sizes: {"train": n, "validation": n, "test": n} (generated; each size set has its own folder).
  download: let tfds try to download (never works on the offline machines; the error explains what to do).
  """
  if name == "house_numbers":
    return _house_numbers_splits(house_numbers_config, image_size, data_dir, house_numbers_sizes)
  if name == "svhn":
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
  if name in ("voc2007", "voc2012"):
    year = name[3:]
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
  if name.startswith("folder:"):
    return _folder_splits(os.path.expanduser(name[len("folder:") :]), image_size)
  raise ValueError(f"Unknown dataset {name!r}; choose one of {list(choices.DATASETS)}.")


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
