"""Bootstrap CIs of each model's metrics, and the comparison of two models on the same images.

Which p-value: two models evaluated on the same test images are paired data, and a paired test removes the
between-image variance that a two-sample test counts as noise. `pvalue_test="paired"` (default) uses the
exact McNemar test for accuracy and the sign-flip permutation test for everything else;
`pvalue_test="pooled"` gives the authors' bstrap two-sample bootstrap test, to reproduce their tables.
Every p-value is stored with the name of its test. NumPy only.
"""

from __future__ import annotations

import numpy as np

from atcon_tf.metrics.classification import absent_classes
from trainers.evaluation.faithfulness import KEYS as FAITHFULNESS_KEYS
from trainers.evaluation.options import CI_LEVEL, MEAN_PVALUE_RESAMPLES, EvalOptions

TESTS = {  # name stored in the results -> how tables describe it
  "mcnemar": "exact McNemar test",
  "sign_flip": "paired sign-flip permutation test",
  "pooled_bootstrap": "the authors' pooled two-sample bootstrap test (bstrap)",
}


def _ci(fn, *arrays, options: EvalOptions) -> dict:
  from atcon_tf.metrics import bootstrap_ci

  if len(arrays[0]) == 0:
    return {"mean": None, "lower": None, "upper": None, "estimate": None, "n": 0}
  ci = bootstrap_ci(fn, *arrays, n_resamples=options.bootstrap, ci=CI_LEVEL, seed=options.seed)
  return {
    "mean": ci.mean,
    "lower": ci.lower,
    "upper": ci.upper,
    "estimate": ci.estimate,
    "n": int(len(arrays[0])),
  }


def _nanmean(a) -> float:
  a = np.asarray(a, np.float64)
  return float(np.nanmean(a)) if np.any(np.isfinite(a)) else float("nan")


def _macro_f1(info, options: EvalOptions):
  """(metric_fn(labels, model_values), the model values' key in the outputs) of the dataset's macro-F1, with
  the options' rule for classes that have no test image."""
  from atcon_tf.metrics import classification

  absent = options.absent_classes
  if info.multi_label:
    return (lambda y, p: classification.macro_f1_multilabel(y, p, absent=absent)), "probs"
  return (lambda y, p: classification.macro_f1(y, p, info.num_classes, absent=absent)), "pred"


def wsd_iou_ci(per: dict, subset, options: EvalOptions) -> dict:
  """CI of the mean WSD IoU over the images of boolean mask `subset` (NaN IoUs skipped)."""
  iou = per["wsd_iou"][subset]
  return _ci(_nanmean, iou[np.isfinite(iou)], options=options)


def summary_metrics(out: dict, per: dict, info, options: EvalOptions, subset=None) -> dict:
  """Bootstrap CIs of every metric. `subset`: boolean mask of images for the WSD IoU (default: the
  correctly classified ones)."""
  metrics = {}
  key = "top1_in_labels" if info.multi_label else "accuracy"
  metrics[key] = _ci(np.mean, per["correct"], options=options)
  f1, values = _macro_f1(info, options)
  metrics["macro_f1"] = _ci(f1, out["label"], out[values], options=options)
  metrics["macro_f1"]["absent_classes"] = absent_classes(out["label"], info.num_classes)
  metrics["macro_f1"]["absent_rule"] = options.absent_classes
  if "wsd_iou" in per:
    metrics["wsd_iou"] = wsd_iou_ci(per, per["correct"] > 0 if subset is None else subset, options)
    for key in ("pointing_game", "energy_pointing_game"):
      metrics[key] = _ci(np.mean, per[key], options=options)
    for key in ("pointing_centre_baseline", "pointing_random_baseline", "pointing_agnostic_baseline"):
      n = len(per[key])
      metrics[key] = {"estimate": float(np.mean(per[key])) if n else None, "n": int(n)}
  for key in FAITHFULNESS_KEYS:
    if key in per:
      values = per[key][np.isfinite(per[key])]
      metrics[key] = _ci(np.mean, values, options=options)
  metrics["consistency"] = _ci(np.mean, per["consistency"], options=options)
  return metrics


def both_correct(per_a: dict, per_b: dict) -> np.ndarray:
  return (per_a["correct"] > 0) & (per_b["correct"] > 0)


def _same_images(out_a: dict, out_b: dict) -> None:
  """A paired test is only valid when row i is the same image (and pair) for both models."""
  same = np.array_equal(out_a["index"], out_b["index"])
  if "pair_image" in out_a:
    same = (
      same
      and np.array_equal(out_a["pair_image"], out_b["pair_image"])
      and np.array_equal(out_a["pair_class"], out_b["pair_class"])
    )
  if not same:
    raise ValueError("The two models were not evaluated on the same images in the same order.")


def compare(out_a, per_a, out_b, per_b, info, options: EvalOptions) -> dict:
  """Per metric: difference b - a, p-value, the test that gave it ("test", a key of TESTS) and its resamples.

  Accuracy / top-1: McNemar; macro-F1 (labels shared, predictions swapped), WSD IoU (on the images both
  models classify correctly, both finite), pointing games and consistency: sign-flip permutation.
  """
  from atcon_tf.metrics import mcnemar_pvalue, paired_permutation_pvalue, pooled_bootstrap_pvalue

  _same_images(out_a, out_b)
  paired = options.pvalue_test == "paired"

  def test(fn, a, b, runs, shared=()):
    """p-value entry of metric fn(*shared, *a) vs fn(*shared, *b); a, b: tuples of per-image arrays."""
    if len(a[0]) == 0:
      return {"p_value": None, "test": None, "resamples": None}
    if paired:
      p = paired_permutation_pvalue(fn, a, b, n_resamples=runs, seed=options.seed, shared=shared)
      return {"p_value": p, "test": "sign_flip", "resamples": runs}
    p = pooled_bootstrap_pvalue(fn, shared + a, shared + b, n_resamples=runs, seed=options.seed)
    return {"p_value": p, "test": "pooled_bootstrap", "resamples": runs}

  def mean_metric(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return {
      "difference": float(b.mean() - a.mean()) if len(a) else None,
      **test(np.mean, (a,), (b,), MEAN_PVALUE_RESAMPLES),
    }

  result = {}
  ca, cb = per_a["correct"], per_b["correct"]
  key = "top1_in_labels" if info.multi_label else "accuracy"
  if paired:
    result[key] = {
      "difference": float(cb.mean() - ca.mean()),
      "p_value": mcnemar_pvalue(ca > 0, cb > 0),
      "test": "mcnemar",
      "resamples": None,
      "only_a_correct": int(np.count_nonzero((ca > 0) & ~(cb > 0))),
      "only_b_correct": int(np.count_nonzero(~(ca > 0) & (cb > 0))),
    }
  else:
    result[key] = mean_metric(ca, cb)
  f1, values = _macro_f1(info, options)
  labels = out_a["label"]
  result["macro_f1"] = {
    "difference": float(f1(labels, out_b[values]) - f1(labels, out_a[values])),
    **test(f1, (out_a[values],), (out_b[values],), options.pvalue_resamples, shared=(labels,)),
  }
  if "wsd_iou" in per_a:
    both = both_correct(per_a, per_b)
    ia, ib = per_a["wsd_iou"][both], per_b["wsd_iou"][both]
    finite = np.isfinite(ia) & np.isfinite(ib)
    ia, ib = ia[finite], ib[finite]
    result["wsd_iou"] = {
      **mean_metric(ia, ib),
      "n_both_correct": int(len(ia)),
      "a_on_both_correct": float(ia.mean()) if len(ia) else None,
      "b_on_both_correct": float(ib.mean()) if len(ib) else None,
    }
    for key in ("pointing_game", "energy_pointing_game"):
      result[key] = mean_metric(per_a[key], per_b[key])
  for key in FAITHFULNESS_KEYS:
    if key in per_a and key in per_b:
      finite = np.isfinite(per_a[key]) & np.isfinite(per_b[key])
      result[key] = {**mean_metric(per_a[key][finite], per_b[key][finite]), "n": int(finite.sum())}
  result["consistency"] = mean_metric(per_a["consistency"], per_b["consistency"])
  return result
