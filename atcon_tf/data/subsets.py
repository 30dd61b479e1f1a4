"""Deterministic labeled / unlabeled / validation splits for few-label experiments (docs/method.md §4).

Everything here works on *indices* into one split (numpy only), so the same plan can be applied to any
`tf.data` pipeline (`canonical.select`) and rebuilt bit for bit from `(labels, n_per_class, seed)`.

* Single-label (`single_label_subset`): the first N images of each class in a seeded order (SVHN rule,
  §4.2, with the order made explicit: `seed=None` keeps the split's own order, as the authors' SVHN loader).
* Multi-label (`balanced_multilabel_subset`): the authors' greedy `balancedMiniDataset` (§4.1): scan the
  images in order and add an image when every class count stays <= N; `fully_balanced=True` (their
  `FULLY_BALANCED`) only takes images with exactly one label, so each class gets exactly N (if available).
  Images without any (non-difficult) label are never taken (they carry no supervision).
* `plan_splits`: validation carved from the training split (never from test), then the labeled subset,
  then the unlabeled pool = the rest; the three are disjoint by construction and checked.
* `stratified_subset`: K images of a split for evaluation or model selection, drawn with a seed and spread
  over the classes as evenly as they allow. "The first K" of a split sorted by class would hold only its
  first classes (and macro-F1 would count the others as failures).
"""

from __future__ import annotations

import dataclasses

import numpy as np

UNLABELED_MODES = ("pool", "labeled")


def seeded_order(n: int, seed: int | None) -> np.ndarray:
  """0..n-1 in a permutation fixed by `seed` (identity for `seed=None`)."""
  if seed is None:
    return np.arange(n, dtype=np.int64)
  return np.random.default_rng(seed).permutation(n).astype(np.int64)


def _candidates(n: int, order, exclude) -> np.ndarray:
  order = np.arange(n, dtype=np.int64) if order is None else np.asarray(order, np.int64)
  if exclude is not None and len(exclude):
    order = order[~np.isin(order, np.asarray(exclude, np.int64))]
  return order


def single_label_subset(
  labels,
  n_per_class: int,
  seed: int | None = 0,
  exclude=None,
  num_classes: int | None = None,
  strict: bool = False,
) -> np.ndarray:
  """Indices of the first `n_per_class` images of each class, scanning in the `seed` order.

  Returns the chosen indices sorted ascending. `exclude`: indices never taken (e.g. validation).
  `strict=True` raises if a class has fewer than `n_per_class` images available.
  """
  labels = np.asarray(labels).astype(np.int64).reshape(-1)
  if n_per_class < 0:
    raise ValueError(f"n_per_class must be >= 0, got {n_per_class}.")
  num_classes = int(labels.max()) + 1 if num_classes is None and labels.size else (num_classes or 0)
  order = _candidates(len(labels), seeded_order(len(labels), seed), exclude)
  chosen = []
  for c in range(num_classes):
    members = order[labels[order] == c][:n_per_class]
    if strict and len(members) < n_per_class:
      raise ValueError(f"Class {c} has only {len(members)} images available, {n_per_class} requested.")
    chosen.append(members)
  return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def balanced_multilabel_subset(
  label_matrix, n_per_class: int, fully_balanced: bool = True, seed: int | None = 0, exclude=None
) -> np.ndarray:
  """The authors' greedy balanced rule (`balancedMiniDataset`, docs/method.md §4.1), indices sorted ascending.

  Scan the images in the `seed` order (`None`: the split's own order, as the `pascal_voc` branch, which
  starts after the validation images); add image i if `counts + y_i <= N` for every class, and, when
  `fully_balanced`, only if y_i has exactly one positive label. Stops once every class has N.
  """
  y = (np.asarray(label_matrix) > 0).astype(np.int64)
  if y.ndim != 2:
    raise ValueError(f"label_matrix must be (images, classes), got shape {y.shape}.")
  if n_per_class < 0:
    raise ValueError(f"n_per_class must be >= 0, got {n_per_class}.")
  counts = np.zeros(y.shape[1], np.int64)
  chosen = []
  for i in _candidates(len(y), seeded_order(len(y), seed), exclude):
    if np.all(counts >= n_per_class):
      break
    k = int(y[i].sum())
    if k == 0 or (fully_balanced and k != 1):
      continue
    if np.all(counts + y[i] <= n_per_class):
      counts += y[i]
      chosen.append(int(i))
  return np.sort(np.asarray(chosen, np.int64))


def stratified_subset(labels, size: int, seed: int = 0, exclude=None) -> np.ndarray:
  """`size` indices (sorted) drawn with `seed`, spread as evenly as possible over the classes.

  Classes take turns, each taking its next image in a seeded order, until `size` images are chosen; a class
  with fewer images than its share gives its turns to the others. Multi-label (labels (N, C)): a turn of
  class c takes the next unchosen image that has c, so every class present is represented; images without
  any label take the last turn of each round. `size >= N` (after `exclude`) returns every index.
  """
  labels = np.asarray(labels)
  n = len(labels)
  order = _candidates(n, seeded_order(n, seed), exclude)
  if size >= len(order):
    return np.sort(order)
  if labels.ndim == 1:
    queues = [order[labels[order] == c] for c in np.unique(labels[order])]
  else:
    has = labels[order] > 0
    queues = [order[has[:, c]] for c in range(labels.shape[1]) if has[:, c].any()]
    queues.append(order[~has.any(axis=1)])
  chosen, taken, heads = [], np.zeros(n, bool), [0] * len(queues)
  while len(chosen) < size:
    progressed = False
    for q, queue in enumerate(queues):
      while heads[q] < len(queue) and taken[queue[heads[q]]]:
        heads[q] += 1
      if heads[q] < len(queue) and len(chosen) < size:
        taken[queue[heads[q]]] = True
        chosen.append(queue[heads[q]])
        progressed = True
    if not progressed:
      break
  return np.sort(np.asarray(chosen, np.int64))


def carve_validation(labels, size: int, seed: int | None = 0, exclude=None) -> np.ndarray:
  """`size` training indices for model selection: seeded and stratified by class; sorted ascending."""
  available = len(_candidates(len(labels), None, exclude))
  if size > available:
    raise ValueError(f"Cannot carve a validation set of {size} from {available} training images.")
  return stratified_subset(labels, size, 7919 if seed is None else seed + 7919, exclude)


@dataclasses.dataclass
class SplitPlan:
  """Indices into the *training* split. `unlabeled` is `labeled` itself when unlabeled_mode='labeled'."""

  labeled: np.ndarray
  unlabeled: np.ndarray
  validation: np.ndarray  # empty when the dataset has its own validation split
  unlabeled_mode: str = "pool"

  def check(self) -> "SplitPlan":
    """Raises if labeled, unlabeled pool and validation overlap (the pool may equal `labeled`)."""
    lab, unl, val = (set(np.asarray(a).tolist()) for a in (self.labeled, self.unlabeled, self.validation))
    if lab & val:
      raise AssertionError(f"{len(lab & val)} labeled images are also validation images.")
    if unl & val:
      raise AssertionError(f"{len(unl & val)} unlabeled images are also validation images.")
    if self.unlabeled_mode == "pool" and lab & unl:
      raise AssertionError(f"{len(lab & unl)} labeled images are also in the unlabeled pool.")
    if self.unlabeled_mode == "labeled" and lab != unl:
      raise AssertionError("unlabeled_mode='labeled' but the unlabeled set is not the labeled set.")
    return self

  def summary(self) -> dict:
    return {
      "labeled": int(len(self.labeled)),
      "unlabeled": int(len(self.unlabeled)),
      "validation_carved_from_train": int(len(self.validation)),
      "unlabeled_mode": self.unlabeled_mode,
    }


def plan_splits(
  labels,
  n_per_class: int | None,
  seed: int = 0,
  multi_label: bool = False,
  fully_balanced: bool = True,
  validation_size: int = 0,
  unlabeled_mode: str = "pool",
  unlabeled_limit: int | None = None,
  num_classes: int | None = None,
) -> SplitPlan:
  """Labeled subset, unlabeled pool and (optionally) a validation set carved from the training split.

  labels: (N,) class ids, or (N, C) multi-hot when `multi_label`.
  n_per_class: None or <= 0 -> every image (after validation) is labeled and the pool is empty.
  validation_size: > 0 carves a seeded validation set from train first (for datasets without their own).
  unlabeled_mode: 'pool' (the rest of train, the authors' USE_NEW_UNSUPERVISED=True) or 'labeled'
    (ATCON on the labeled images only, their fine-tuning scripts).
  unlabeled_limit: keep only the first K pool images of a seeded order (a smaller pool, same seed).
  """
  if unlabeled_mode not in UNLABELED_MODES:
    raise ValueError(f"unlabeled_mode must be one of {UNLABELED_MODES}, got {unlabeled_mode!r}.")
  labels = np.asarray(labels)
  n = len(labels)
  validation = carve_validation(labels, validation_size, seed) if validation_size else np.zeros(0, np.int64)
  if n_per_class is None or n_per_class <= 0:
    labeled = np.setdiff1d(np.arange(n, dtype=np.int64), validation)
  elif multi_label:
    labeled = balanced_multilabel_subset(labels, n_per_class, fully_balanced, seed, exclude=validation)
  else:
    labeled = single_label_subset(labels, n_per_class, seed, exclude=validation, num_classes=num_classes)
  if unlabeled_mode == "labeled":
    unlabeled = labeled.copy()
  else:
    pool = _candidates(n, seeded_order(n, seed + 104729), np.concatenate([validation, labeled]))
    if unlabeled_limit is not None and unlabeled_limit >= 0:
      pool = pool[:unlabeled_limit]
    unlabeled = np.sort(pool)
  return SplitPlan(labeled, unlabeled, validation, unlabeled_mode).check()
