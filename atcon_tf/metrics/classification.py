"""Classification metrics exactly as the authors define them (docs/method.md §4.2, §6.1).

Why not sklearn: the authors' macro-F1 divides by the number of classes even when a class is absent or never
predicted (undefined F1 counts 0), and their multi-label F1 has an `eps` in the denominator; sklearn's
`zero_division` / `labels` handling differs in corner cases that matter on small or bootstrapped samples.

Classes with no test image: F1 is undefined there, and counting it as 0 (the authors' convention) makes a
subset that misses classes look like a bad model. `absent="exclude"` (default) averages over the classes the
test images contain; `absent="zero"` is the authors' rule. `absent_classes` says how many were left out.
"""

from __future__ import annotations

import numpy as np


def _as_pred(y_pred_or_scores) -> np.ndarray:
  a = np.asarray(y_pred_or_scores)
  return a.argmax(axis=-1) if a.ndim == 2 else a.astype(np.int64)


def accuracy(y_true, y_pred_or_scores) -> float:
  """Share of correct top-1 predictions; `y_pred_or_scores` is (N,) class ids or (N, C) scores (argmax)."""
  y_true = np.asarray(y_true).astype(np.int64)
  return float(np.mean(_as_pred(y_pred_or_scores) == y_true)) if y_true.size else float("nan")


def per_class_f1(y_true, y_pred_or_scores, num_classes: int | None = None) -> np.ndarray:
  """Single-label per-class F1 = 2PR/(P+R) from argmax; NaN where undefined (0/0), as `SupervisedMetrics`."""
  y_true = np.asarray(y_true).astype(np.int64)
  scores = np.asarray(y_pred_or_scores)
  y_pred = _as_pred(scores)
  if num_classes is None:
    num_classes = scores.shape[1] if scores.ndim == 2 else int(max(y_true.max(), y_pred.max())) + 1
  classes = np.arange(num_classes)[:, None]
  t, p = y_true[None, :] == classes, y_pred[None, :] == classes
  tp = np.sum(t & p, axis=1).astype(np.float64)
  fp = np.sum(~t & p, axis=1)
  fn = np.sum(t & ~p, axis=1)
  with np.errstate(divide="ignore", invalid="ignore"):
    precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    return 2 * precision * recall / (precision + recall)


ABSENT_CLASS_RULES = ("exclude", "zero")


def _present(y_true, num_classes: int) -> np.ndarray:
  """Which classes have at least one test image (single-label ids or multi-hot rows)."""
  y = np.asarray(y_true)
  if y.ndim == 2:
    return y.sum(axis=0) > 0
  return np.bincount(y.astype(np.int64), minlength=num_classes)[:num_classes] > 0


def absent_classes(y_true, num_classes: int) -> int:
  """How many of the `num_classes` classes have no test image."""
  return int(num_classes - np.count_nonzero(_present(y_true, num_classes)))


def _macro(f1: np.ndarray, y_true, absent: str) -> float:
  if absent not in ABSENT_CLASS_RULES:
    raise ValueError(f"Unknown absent-class rule {absent!r}; choose one of {list(ABSENT_CLASS_RULES)}.")
  if absent == "zero":
    return float(np.nansum(f1) / f1.size)
  present = _present(y_true, f1.size)
  # A present class with no correct prediction has F1 0 (its 0/0 precision is not an undefined F1).
  return float(np.mean(np.nan_to_num(f1[present]))) if present.any() else float("nan")


def macro_f1(y_true, y_pred_or_scores, num_classes: int | None = None, absent: str = "exclude") -> float:
  """§4.2 macro-F1 over the classes with test images (`absent="zero"`: the authors' `nansum(F1) / C`)."""
  f1 = per_class_f1(y_true, y_pred_or_scores, num_classes)
  return _macro(f1, y_true, absent)


def per_class_f1_multilabel(y_true, probs, threshold: float = 0.5, eps: float = 1e-9) -> np.ndarray:
  """§6.1 per-class `TP / (TP + 0.5(FP+FN) + eps)` with prediction `p > threshold` (strict).

  `eps` of the authors' postproc is unconfirmed; it only matters for classes with TP = 0 (F1 = 0 either way).
  """
  t = np.asarray(y_true).astype(bool)
  p = np.asarray(probs) > threshold
  tp = np.sum(t & p, axis=0).astype(np.float64)
  fp = np.sum(~t & p, axis=0)
  fn = np.sum(t & ~p, axis=0)
  return tp / (tp + 0.5 * (fp + fn) + eps)


def macro_f1_multilabel(
  y_true, probs, threshold: float = 0.5, eps: float = 1e-9, absent: str = "exclude"
) -> float:
  """§6.1 mF1 over the classes with positive test images (`absent="zero"`: the authors' mean over all)."""
  return _macro(per_class_f1_multilabel(y_true, probs, threshold, eps), y_true, absent)
