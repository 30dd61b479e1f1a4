"""The printed results table (Markdown), with notes that say what each number is and which test gave it."""

from __future__ import annotations

from trainers.evaluation.statistics import TESTS

ROWS = (
  ("accuracy", "accuracy"),
  ("top1_in_labels", "top-1 in labels"),
  ("macro_f1", "macro-F1"),
  ("wsd_iou", "WSD IoU (own correct)"),
  ("wsd_iou_both_correct", "WSD IoU (both correct)"),
  ("pointing_game", "pointing game"),
  ("energy_pointing_game", "energy pointing"),
  ("pointing_centre_baseline", "  baseline: centre"),
  ("pointing_random_baseline", "  baseline: random pt"),
  ("pointing_agnostic_baseline", "  baseline: agnostic"),
  ("deletion_gradcam", "deletion AUC Grad-CAM (low)"),
  ("insertion_gradcam", "insertion AUC Grad-CAM (high)"),
  ("deletion_guided_backprop", "deletion AUC guided BP (low)"),
  ("insertion_guided_backprop", "insertion AUC guided BP (high)"),
  ("consistency", "consistency (-L_atcon)"),
)
COMPARED = (
  ("accuracy", "accuracy"),
  ("top1_in_labels", "top-1 in labels"),
  ("macro_f1", "macro-F1"),
  ("wsd_iou", "WSD IoU"),
  ("pointing_game", "pointing game"),
  ("energy_pointing_game", "energy pointing"),
  ("deletion_gradcam", "deletion AUC Grad-CAM (low)"),
  ("insertion_gradcam", "insertion AUC Grad-CAM (high)"),
  ("deletion_guided_backprop", "deletion AUC guided BP (low)"),
  ("insertion_guided_backprop", "insertion AUC guided BP (high)"),
  ("consistency", "consistency"),
)


def _cell(m) -> str:
  if m is None or m.get("estimate") is None:
    return "-"
  if m.get("lower") is None:
    return f"{m['estimate']:.3f}"
  return f"{m['estimate']:.3f} [{m['lower']:.3f}, {m['upper']:.3f}]"


def _test_note(comparison: dict) -> str:
  """'p-values: accuracy: exact McNemar test; macro-F1, ...: paired sign-flip permutation test, N
  resamples.' A README table quoting the numbers can quote this line."""
  groups = {}
  for key, label in COMPARED:
    c = comparison.get(key)
    if c and c.get("test"):
      what = TESTS.get(c["test"], c["test"]) + (f", {c['resamples']} resamples" if c.get("resamples") else "")
      groups.setdefault(what, []).append(label)
  note = "p-values: " + "; ".join(f"{', '.join(labels)}: {what}" for what, labels in groups.items()) + "."
  if any(c.get("test") == "sign_flip" for c in comparison.values()):
    note += (
      " A sign-flip test enumerates all 2^d sign patterns instead when 2^d <= its resamples"
      " (d = images whose values differ)."
    )
  return note


def format_table(results: dict) -> str:
  """A Markdown table: one column per model (estimate [90% CI]), then difference and p-value if compared;
  notes below say the sample sizes, the loss settings of the consistency and which test gave each p-value."""
  names = list(results["models"])
  comparison = results.get("comparison", {}).get("metrics", {})
  header = ["metric"] + names + (["diff (last - first)", "p-value"] if comparison else [])
  lines = []
  for key, label in ROWS:
    cells = [results["models"][n]["metrics"].get(key) for n in names]
    if all(c is None for c in cells):
      continue
    row = [label] + [_cell(c) for c in cells]
    if comparison:
      cmp_key = "wsd_iou" if key == "wsd_iou_both_correct" else key
      c = comparison.get(cmp_key) if key != "wsd_iou" else None
      row += (
        ["-", "-"]
        if c is None
        else [
          "-" if c.get("difference") is None else f"{c['difference']:+.3f}",
          "-" if c.get("p_value") is None else f"{c['p_value']:.3f}",
        ]
      )
    lines.append(row)
  widths = [max(len(str(r[i])) for r in [header] + lines) for i in range(len(header))]
  fmt = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
  out = [fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [fmt(r) for r in lines]
  pairs = results.get("num_pointing_pairs")
  notes = [
    f"{results['dataset']}: {results['num_images']} test images"
    + (f", {pairs} (image, class) pointing pairs" if pairs else "")
    + f"; estimate [{int(results['ci'] * 100)}% bootstrap CI, "
    f"{results['bootstrap_resamples']} resamples]."
  ]
  counts = results.get("images_per_class")
  if counts:
    absent = sum(1 for n in counts.values() if n == 0)
    rule = (
      f"{absent} class(es) without a test image excluded from macro-F1 (undefined there)"
      if results.get("absent_classes", "exclude") == "exclude"
      else f"{absent} class(es) without a test image counted as F1 = 0 (the authors' rule)"
    )
    notes.append("images per class: " + ", ".join(f"{k}: {n}" for k, n in counts.items()) + f"; {rule}.")
  loss = results.get("loss")
  if loss:
    notes.append(
      f"consistency = -ATCON loss with attention={loss['attention']}, "
      f"similarity={loss['similarity']}, w={loss['mask_intensity']:g} "
      f"({loss.get('source', 'recorded')})."
    )
  faithful = results.get("faithfulness")
  if faithful:
    notes.append(
      f"deletion / insertion AUC: {faithful['steps']} steps, removed pixels replaced by a "
      + (
        f"Gaussian blur (sigma {faithful['blur_sigma']})" if faithful["baseline"] == "blur" else "mean image"
      )
      + f", score = {faithful['score']}, on the first {faithful['images']} test images."
    )
  if comparison:
    if "wsd_iou" in comparison:
      notes.append(
        f"WSD IoU difference and p-value on the {comparison['wsd_iou']['n_both_correct']} images "
        "both models classify correctly (docs/method.md §6.2)."
      )
    notes.append(_test_note(comparison))
  return "\n".join(out + notes)
