"""The study's images as arrays: drawn once per dataset, cached, then split per seed.

Why arrays: every cell trains on a few hundred images and is evaluated on the same fixed test subset, so the
images are read from the trainer's datasets once (`trainers.data.load_splits`) and kept as uint8 arrays in
OUT/data/<dataset>.npz (not model weights; rebuilt if missing). Validation and test images are fixed per
dataset; each seed draws its labeled set and its unlabeled pool from the remaining candidates.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

VAL_SEED, TEST_SEED, CANDIDATE_SEED = 11, 12, 13


@dataclasses.dataclass
class Arrays:
  name: str
  class_names: list
  train_x: np.ndarray  # candidates (uint8, N, H, W, 3)
  train_y: np.ndarray
  val_idx: np.ndarray  # indices into train_x
  test_x: np.ndarray
  test_y: np.ndarray

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


def _take(source, indices) -> tuple:
  """uint8 images and int labels of `indices` of a split (in index order)."""
  elements = list(source.dataset(np.sort(indices)).as_numpy_iterator())
  return np.stack([e["image"] for e in elements]), np.asarray([e["label"] for e in elements], np.int64)


def load(scfg, dataset: str, out: str) -> Arrays:
  """The dataset's candidate, validation and test arrays (from OUT/data when cached)."""
  from atcon_tf.data import subsets

  path = os.path.join(out, "data", f"{dataset}_{scfg.image_size}px_{scfg.candidates}_{scfg.test_size}.npz")
  if os.path.isfile(path):
    z = np.load(path, allow_pickle=False)
    return Arrays(
      dataset, list(z["class_names"]), z["train_x"], z["train_y"], z["val_idx"], z["test_x"], z["test_y"]
    )
  from trainers import config as config_lib
  from trainers import data as data_lib

  cfg = config_lib.preset(
    "default",
    dataset=dataset,
    image_size=scfg.image_size,
    house_numbers_sizes=tuple(scfg.house_numbers_sizes),
    data_dir=scfg.data_dir or None,
  )
  splits = data_lib.load_splits(cfg)
  if splits.info.multi_label:
    raise ValueError(f"{dataset} is multi-label; the study takes single-label datasets.")
  train_labels = data_lib.split_labels(splits.train)
  cand = subsets.stratified_subset(train_labels, min(scfg.candidates, len(train_labels)), seed=CANDIDATE_SEED)
  train_x, train_y = _take(splits.train, cand)
  val_idx = subsets.stratified_subset(train_y, scfg.val_size, seed=VAL_SEED)
  test_labels = data_lib.split_labels(splits.test)
  test_idx = subsets.stratified_subset(test_labels, min(scfg.test_size, len(test_labels)), seed=TEST_SEED)
  test_x, test_y = _take(splits.test, test_idx)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  names = np.asarray([str(c) for c in splits.info.class_names])
  np.savez(
    path, class_names=names, train_x=train_x, train_y=train_y, val_idx=val_idx, test_x=test_x, test_y=test_y
  )
  return Arrays(dataset, list(names), train_x, train_y, np.asarray(val_idx), test_x, test_y)


def draw(arrays: Arrays, n_per_class: int, pool_size: int, seed: int) -> tuple:
  """(labeled indices, pool indices) into the candidates for one seed: N per class, then an unlabeled pool
  from the rest, both disjoint from validation."""
  from atcon_tf.data import subsets

  labeled = subsets.single_label_subset(
    arrays.train_y,
    n_per_class,
    seed=seed,
    exclude=arrays.val_idx,
    num_classes=arrays.num_classes,
    strict=True,
  )
  rest = np.setdiff1d(np.arange(len(arrays.train_y)), np.concatenate([labeled, arrays.val_idx]))
  pool = np.sort(np.random.default_rng(seed + 7919).permutation(rest)[:pool_size])
  return labeled, pool
