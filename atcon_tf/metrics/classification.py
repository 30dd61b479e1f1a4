"""Classification metrics exactly as the authors define them (docs/method.md §4.2, §6.1).

Why not sklearn: the authors' macro-F1 divides by the number of classes even when a class is absent or never
predicted (undefined F1 counts 0), and their multi-label F1 has an `eps` in the denominator; sklearn's
`zero_division` / `labels` handling differs in corner cases that matter on small or bootstrapped samples.
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


def macro_f1(y_true, y_pred_or_scores, num_classes: int | None = None) -> float:
  """§4.2 macro-F1: `np.nansum(per_class_F1) / num_classes` (undefined classes count 0)."""
  f1 = per_class_f1(y_true, y_pred_or_scores, num_classes)
  return float(np.nansum(f1) / f1.size)


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


def macro_f1_multilabel(y_true, probs, threshold: float = 0.5, eps: float = 1e-9) -> float:
  """§6.1 mF1: mean over classes of `per_class_f1_multilabel` (probabilities, not logits)."""
  return float(np.mean(per_class_f1_multilabel(y_true, probs, threshold, eps)))
