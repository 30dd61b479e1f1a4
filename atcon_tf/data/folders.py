"""Image folders (`folder:PATH`) as canonical splits, checked before anything else.

Layouts (class folders hold image files, .bmp .gif .jpeg .jpg .png, also in sub-folders; names starting with
'.' are ignored):
* PATH/train/<class>/ and PATH/test/<class>/, with PATH/validation/<class>/ (or PATH/val/) when present;
* PATH/train/<class>/ with or without PATH/val/: the test set is a fixed-seed 20% of train (said so in the
  description and the log);
* PATH/<class>/ (no split folders): a fixed-seed 20% of all images is the test set.
The class names are train's (or PATH's) class folders, sorted; a validation or test split may lack classes (its
labels index train's list), but a class folder with images that train lacks is an error. Validation, when there
is none, is carved from train by the trainer. The fixed seed does not move with --seed.

Every file of every split is decoded once when the dataset is loaded (`image_check.check_images`, with a progress
bar): files that cannot be used raise `BadImagesError` naming each of them, or are skipped (counted in the log and
the description) with `skip_bad_images=True`. Files are listed, sorted and resized (bilinear, aspect not kept) as
Keras' `image_dataset_from_directory` does; `index` is the position in the split.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import tensorflow as tf

from atcon_tf.data.canonical import DatasetInfo, Source, Splits
from atcon_tf.data.image_check import IMAGE_EXTENSIONS, BadImagesError, check_images, decode_rgb, describe

log = logging.getLogger(__name__)

TEST_SEED = 20231  # fixed: the carved test set does not move with --seed
SPLIT_FOLDERS = ("train", "validation", "val", "test")
SHOWN_SKIPPED = 5  # skipped files named in the log
SHOWN_CLASSES = 30  # class names in the log line


class FolderDatasetError(ValueError):
  """A folder dataset laid out in a way that cannot be read (the message says what is expected)."""


def _visible(names):
  return sorted(n for n in names if not n.startswith("."))


def _subfolders(path):
  return [d for d in _visible(os.listdir(path)) if os.path.isdir(os.path.join(path, d))]


def _direct_images(path):
  return [
    f
    for f in _visible(os.listdir(path))
    if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(path, f))
  ]


def _class_files(folder):
  """Image files under one class folder, in Keras' order (walk sorted by folder, then file names)."""
  files = []
  for root, dirs, names in sorted(os.walk(folder), key=lambda w: w[0]):
    dirs[:] = [d for d in dirs if not d.startswith(".")]
    files += [
      os.path.join(root, n) for n in sorted(names) if n.lower().endswith(IMAGE_EXTENSIONS) and n[0] != "."
    ]
  return files


def _list_split(folder):
  """{class folder name: [image files]} of one split folder."""
  return {c: _class_files(os.path.join(folder, c)) for c in _subfolders(folder)}


def _layout(path):
  """{'train': dir, 'validation': dir or None, 'test': dir or None}, or None for PATH/<class>/ (flat)."""
  train = os.path.join(path, "train")
  if not (os.path.isdir(train) and _subfolders(train)):
    return None  # no train/<class>/: flat (a class may be called 'train'; checked in folder_splits)
  if os.path.isdir(os.path.join(path, "validation")) and os.path.isdir(os.path.join(path, "val")):
    raise FolderDatasetError(
      f"folder dataset {path}: both validation/ and val/ exist; keep one of them as the validation split."
    )
  found = {s: os.path.join(path, s) for s in SPLIT_FOLDERS if os.path.isdir(os.path.join(path, s))}
  ignored = [d for d in _subfolders(path) if d not in SPLIT_FOLDERS]
  if ignored:
    log.warning(
      "folder dataset %s: folders %s are not train/, val/ (validation/) or test/: ignored", path, ignored
    )
  return {
    "train": found["train"],
    "validation": found.get("validation") or found.get("val"),
    "test": found.get("test"),
  }


def _carve_test(files, fraction):
  """(train, test) index arrays: a fixed-seed `fraction` of the files (at least one) is the test set."""
  n = len(files)
  perm = np.random.default_rng(TEST_SEED).permutation(n)
  n_test = max(1, int(round(fraction * n)))
  return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def _source(files, labels, image_size):
  """Canonical elements of `files` (in order; `index` = position) with int labels, decoded and resized."""
  files = [str(f) for f in files]
  labels = np.asarray(labels, np.int64).reshape(-1)

  def make():
    def load(index, path, label):
      image = decode_rgb(tf.io.read_file(path))
      size = tf.shape(image)[:2]
      resized = tf.image.resize(image, [image_size, image_size], method="bilinear")
      image = tf.ensure_shape(
        tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8), [image_size, image_size, 3]
      )
      return {
        "image": image,
        "label": tf.cast(label, tf.int32),
        "boxes": tf.zeros([0, 4]),
        "box_labels": tf.zeros([0], tf.int32),
        "size": tf.cast(size, tf.int32),
        "index": tf.cast(index, tf.int64),
      }

    ds = tf.data.Dataset.from_tensor_slices((tf.constant(files, tf.string), tf.constant(labels, tf.int64)))
    return ds.enumerate().map(
      lambda i, pl: load(i, pl[0], pl[1]), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )

  return Source(make, len(files), labels)


def _class_list(names):
  if len(names) <= SHOWN_CLASSES:
    return ", ".join(names)
  return ", ".join(names[:SHOWN_CLASSES]) + f", ... ({len(names) - SHOWN_CLASSES} more)"


def _read(path, layout):
  """(class_names, {split: (files, labels)}): every split listed, its layout checked (no decoding yet)."""
  if layout is None:
    listing = {"all": _list_split(path)}
    dirs = {"all": path}
  else:
    dirs = {s: d for s, d in layout.items() if d}
    listing = {s: _list_split(d) for s, d in dirs.items()}
  first = "all" if layout is None else "train"
  where = f"folder dataset {path}"
  class_names = list(listing[first])
  if not class_names:
    stray = _direct_images(dirs[first])
    raise FolderDatasetError(
      f"{where}: {dirs[first]} has no class sub-folders"
      + (f" ({len(stray)} image files lie directly in it)" if stray else "")
      + "; expected PATH/<class>/*.png, or PATH/train/<class>/*.png [+ PATH/val/<class>/, PATH/test/<class>/]."
    )
  if layout is None and set(class_names) <= set(SPLIT_FOLDERS):
    raise FolderDatasetError(
      f"{where}: found only split folders ({', '.join(c + '/' for c in class_names)}) without "
      f"{os.path.join(path, 'train')}/<class>/ folders of images; expected PATH/train/<class>/*.png "
      "[+ PATH/val/<class>/, PATH/test/<class>/], or PATH/<class>/*.png."
    )
  empty = [c for c in class_names if not listing[first][c]]
  if len(empty) == len(class_names):
    raise FolderDatasetError(
      f"{where}: no image files ({' '.join(IMAGE_EXTENSIONS)}) in the class folders of {dirs[first]} "
      f"({_class_list(class_names)})."
    )
  if empty:
    raise FolderDatasetError(
      f"{where}: class folder(s) {', '.join(os.path.join(dirs[first], c) for c in empty)} hold no image files "
      f"({' '.join(IMAGE_EXTENSIONS)}); add images or remove the folder(s)."
    )
  index = {c: i for i, c in enumerate(class_names)}
  splits = {}
  for split, classes in listing.items():
    unknown = [c for c, files in classes.items() if c not in index and files]
    if unknown:
      raise FolderDatasetError(
        f"{where}: {split} split ({dirs[split]}) has class folder(s) {', '.join(unknown)} that "
        f"{dirs['train']} lacks; a class needs training images (train's classes: {_class_list(class_names)})."
      )
    files = [f for c in class_names for f in classes.get(c, [])]
    labels = [index[c] for c in class_names for _ in classes.get(c, [])]
    if not files:
      raise FolderDatasetError(f"{where}: no image files ({' '.join(IMAGE_EXTENSIONS)}) in {dirs[split]}.")
    stray = _direct_images(dirs[split])
    if stray:
      log.warning(
        "%s: %d image files directly in %s (not in a class folder) are ignored",
        where,
        len(stray),
        dirs[split],
      )
    splits[split] = (files, np.asarray(labels, np.int64))
  return class_names, splits


def folder_splits(path, image_size, test_fraction=0.2, skip_bad_images=False, verbose=1):
  """The canonical splits of the image folders at `path` (layouts: the module docstring).

  Raises `FolderDatasetError` (a ValueError) for a layout that cannot be read and `BadImagesError` (a
  ValueError) listing the files that are not usable images, unless `skip_bad_images`.
  """
  if not os.path.isdir(path):
    raise FileNotFoundError(
      f"folder dataset: {path!r} is not a directory (expected one sub-folder per class)."
    )
  given, path = path, os.path.normpath(path)
  where = f"folder dataset {path}"
  layout = _layout(path)
  class_names, listed = _read(path, layout)

  # Every file, once: decodable, of size > 0 (before any training starts).
  all_files = [f for files, _ in listed.values() for f in files]
  bad = check_images(all_files, what=where, verbose=verbose)
  skipped = ""
  if bad:
    if not skip_bad_images:
      raise BadImagesError(where, bad, len(all_files))
    log.warning(
      "%s: skipping %d of %d image files that cannot be used (skip_bad_images):\n%s",
      where,
      len(bad),
      len(all_files),
      "\n".join("  " + line for line in describe(bad, SHOWN_SKIPPED)),
    )
    skipped = f"; {len(bad)} unusable image files skipped"
  bad_paths = {p for p, _ in bad}

  def usable(files, labels):
    keep = np.array([f not in bad_paths for f in files], bool)
    return [f for f, k in zip(files, keep) if k], labels[keep]

  def nonempty(split, files, labels):
    if not files:
      raise FolderDatasetError(
        f"{where}: the {split} split has no usable image files"
        + (f" after skipping {len(bad)} bad ones." if bad else f" ({len(all_files)} images in all).")
      )
    return files, labels

  first = "all" if layout is None else "train"
  _, first_labels = usable(*listed[first])
  lost = [c for i, c in enumerate(class_names) if not np.any(first_labels == i)]
  if lost:  # every image of these classes was skipped
    raise FolderDatasetError(
      f"{where}: class folder(s) {', '.join(lost)} hold no usable images once the bad ones are skipped."
    )

  fraction = f"fixed-seed {test_fraction:.0%}"
  validation = None
  carved = layout is None or layout["test"] is None
  files, labels = listed[first]
  if carved:  # on the listing, before skipping: fixing a bad file does not move the test set
    train_idx, test_idx = _carve_test(files, test_fraction)
    train = nonempty("train", *usable([files[i] for i in train_idx], labels[train_idx]))
    test = nonempty("test", *usable([files[i] for i in test_idx], labels[test_idx]))
  else:
    train = nonempty("train", *usable(files, labels))
    test = nonempty("test", *usable(*listed["test"]))
  parts = f"train {len(train[0])}"
  if layout is None:
    description = f"images from {path} (one sub-folder per class); {fraction} of them held out as test"
  else:
    val_name = os.path.basename(layout["validation"]) if layout["validation"] else None
    folders = ",".join(["train"] + ([val_name] if val_name else []) + ([] if carved else ["test"]))
    description = f"images from {path}/{{{folders}}} (one sub-folder per class)"
    if carved:
      description += f"; no test/ folder: {fraction} of train held out as test"
    if val_name:
      validation = nonempty("validation", *usable(*listed["validation"]))
      parts += f", validation {len(validation[0])}"
  parts += f", test {len(test[0])}" + (f" = {fraction} held out" if carved else "")
  description += skipped
  log.info("%s: %d classes: %s (%s)", where, len(class_names), _class_list(class_names), parts)
  info = DatasetInfo(
    name=f"folder:{given}",
    num_classes=len(class_names),
    class_names=list(class_names),
    multi_label=False,
    has_boxes=False,
    own_validation=validation is not None,
    description=description,
  )
  return Splits(
    info,
    _source(*train, image_size),
    _source(*validation, image_size) if validation is not None else None,
    _source(*test, image_size),
  )
