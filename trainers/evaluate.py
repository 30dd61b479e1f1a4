r"""Evaluate one model, or compare two on the same test images, as the ATCON authors do (method.md §6).

    python -m trainers.evaluate --workdir=/tmp/atcon_tf/finetune-...          # its best.keras, its dataset
    python -m trainers.evaluate --workdir=RUN --compare=RUN/supervised/best.keras
    python -m trainers.evaluate --model=model.keras --dataset=voc2012 --data_dir=/data/tfds --image_size=256

Metrics (bootstrap mean and 5th-95th percentile = 90% CI, `atcon_tf.metrics`):
* accuracy (single-label) / top-1-in-labels (multi-label), macro-F1 with the authors' definitions
  (single-label: nansum(per-class F1)/C from argmax; multi-label: TP/(TP + (FP+FN)/2) with p > 0.5).
* datasets with boxes (house_numbers, VOC):
  - WSD IoU (§6.2): Grad-CAM (no ReLU) of the top-1 class, nearest-upsampled to the input size, median-shifted,
    clipped at mean + 2 std, binarised at 0.5, IoU with the union of the boxes of that class. Averaged over the
    correctly classified images; when two models are compared, over the images BOTH classify correctly.
  - pointing game (map argmax inside a box of the class; one (image, ground-truth class) pair per class present)
    and the energy pointing game, with baselines printed beside them: image centre, a uniform random point
    (expected hit rate = box area share) and a class-agnostic map (Grad-CAM of the sum of the logits).
* consistency = -ATCON loss per image (higher = more consistent), with the training loss configuration.
Two models: differences and bstrap-style bootstrap p-values (`paired_bootstrap_pvalue`, the authors' pooled test).
Outputs: a JSON file, a printed table and a PNG grid (image, Grad-CAM, guided backprop, ATCON mask per model).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

CI_LEVEL = 0.90
MEAN_PVALUE_RESAMPLES = 10000  # the authors' nbr_runs for mIoU; used for every mean-type metric


@dataclasses.dataclass
class EvalOptions:
  batch_size: int = 64
  bootstrap: int = 1000
  pvalue_resamples: int = 1000  # for macro-F1 (a metric of the whole sample, slower to resample)
  mask_intensity: float = 8.0
  attention: str = "gb_mask"
  similarity: str = "pearson"
  seed: int = 0
  num_grid_images: int = 6


# ------------------------------------------------------------------------------------------- model outputs

def load_model(model_or_path):
  """(classifier, target_layer or None, name) from a Keras model, an ATCONModel or a .keras path."""
  import keras

  import atcon_tf  # noqa: F401 - registers ATCONModel for deserialization

  model = model_or_path
  if isinstance(model_or_path, (str, os.PathLike)):
    path = os.fspath(model_or_path)
    if os.path.isdir(path):
      path = os.path.join(path, "best.keras")
    model = keras.saving.load_model(path, compile=False)
  tapped = getattr(model, "tapped", None)
  if tapped is not None:
    return model.classifier, tapped.target_layer_path
  return model, None


def model_outputs(model_or_path, ds, info, preprocessing: str, options: EvalOptions) -> dict:
  """Per-image predictions, maps and costs of one model over canonical elements `ds` (numpy dict)."""
  import tensorflow as tf

  from atcon_tf import tapped_model
  from atcon_tf.data import datasets
  from atcon_tf.losses import consistency
  from atcon_tf.maps.gradcam import gradcam

  classifier, target_layer = load_model(model_or_path)
  tapped = tapped_model.TappedModel(classifier, target_layer)
  config = consistency.ConsistencyConfig(attention=options.attention, similarity=options.similarity,
                                         mask_intensity=options.mask_intensity)
  size = classifier.input_shape[1:3]
  spec = tf.TensorSpec([None, size[0], size[1], 3], tf.float32)
  cam_from_loss = options.attention in ("gb_mask", "ig_mask", "gb_pooled")  # maps1 is the Grad-CAM then

  @tf.function(input_signature=[spec])
  def predict(x):
    result = consistency.consistency_per_image(tapped, x, config)
    cam = result.maps1 if cam_from_loss else gradcam(tapped, x, result.class_ids, relu=False).cam
    return result.logits, result.class_ids, cam, result.costs

  @tf.function(input_signature=[spec, tf.TensorSpec([None], tf.int32)])
  def class_cam(x, class_ids):
    return gradcam(tapped, x, class_ids, relu=True).cam

  @tf.function(input_signature=[spec])
  def agnostic_cam(x):
    with tf.GradientTape() as tape:
      features, logits = tapped.features_and_logits(x, tape=tape)
      target = tf.reduce_sum(logits)
    weights = tf.reduce_mean(tape.gradient(target, features), axis=[1, 2])
    return tf.nn.relu(tf.einsum("bhwk,bk->bhw", features, weights))

  out = {k: [] for k in ("logits", "pred", "cam", "cost", "label", "boxes", "box_labels", "size", "index",
                         "pair_image", "pair_class", "pair_cam", "agnostic_cam")}
  offset = 0
  batches = datasets.padded_eval_batches(ds, options.batch_size, info.num_classes, info.multi_label)
  for batch in batches.as_numpy_iterator():
    x = datasets.preprocess(batch["image"], preprocessing)
    logits, pred, cam, cost = (t.numpy() for t in predict(x))
    out["logits"].append(logits)
    out["pred"].append(pred)
    out["cam"].append(cam)
    out["cost"].append(cost)
    for key in ("label", "size", "index"):
      out[key].append(batch[key])
    n = len(pred)
    for i in range(n):
      keep = batch["box_labels"][i] >= 0
      out["boxes"].append(batch["boxes"][i][keep])
      out["box_labels"].append(batch["box_labels"][i][keep])
    if info.has_boxes:
      pair_image, pair_class = [], []
      for i in range(n):
        present = np.unique(batch["box_labels"][i][batch["box_labels"][i] >= 0])
        for c in present:
          pair_image.append(i)
          pair_class.append(int(c))
      if pair_image:
        maps = class_cam(tf.gather(x, pair_image), tf.constant(pair_class, tf.int32)).numpy()
        out["pair_cam"].extend(list(maps))
        out["pair_image"].extend([offset + i for i in pair_image])
        out["pair_class"].extend(pair_class)
      out["agnostic_cam"].extend(list(agnostic_cam(x).numpy()))
    offset += n
  if offset == 0:
    raise ValueError("The test set is empty.")
  result = {k: np.concatenate(out[k]) for k in ("logits", "pred", "cam", "cost", "label", "size", "index")}
  result["boxes"], result["box_labels"] = out["boxes"], out["box_labels"]
  result["pair_image"] = np.asarray(out["pair_image"], np.int64)
  result["pair_class"] = np.asarray(out["pair_class"], np.int64)
  result["pair_cam"] = out["pair_cam"]
  result["agnostic_cam"] = out["agnostic_cam"]
  result["input_size"] = tuple(int(s) for s in size)
  logits = result["logits"]
  result["probs"] = (1 / (1 + np.exp(-logits)) if info.multi_label
                     else np.exp(logits - logits.max(-1, keepdims=True)) /
                     np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True))
  return result


# -------------------------------------------------------------------------------------------- per-image metrics

def per_image_metrics(out: dict, info, seed: int = 20) -> dict:
  """Correctness, WSD IoU, pointing-game hits, energy and baselines, consistency: one value per image/pair."""
  from atcon_tf.data import datasets
  from atcon_tf.metrics import localization

  labels, pred = out["label"], out["pred"]
  if info.multi_label:
    correct = labels[np.arange(len(pred)), pred] > 0
  else:
    correct = pred == labels
  per = {"correct": correct.astype(np.float64), "consistency": -out["cost"].astype(np.float64)}
  if not info.has_boxes:
    return per
  rng = np.random.default_rng(seed)  # the authors' random.seed(20) for the class of misclassified images
  iou = np.full(len(pred), np.nan)
  for i in range(len(pred)):
    boxes, box_labels = out["boxes"][i], out["box_labels"][i]
    if len(boxes) == 0:
      continue
    c = int(pred[i]) if correct[i] else int(box_labels[rng.integers(len(box_labels))])
    chosen = boxes[box_labels == c]
    size = tuple(int(v) for v in out["size"][i])
    iou[i] = localization.wsd_iou(out["cam"][i], datasets.wsd_boxes(chosen, size, info.box_convention), size,
                                  map_size=out["input_size"])
  per["wsd_iou"] = iou
  hits, energy, centre, random_share, agnostic = [], [], [], [], []
  for cam, i, c in zip(out["pair_cam"], out["pair_image"], out["pair_class"]):
    size = tuple(int(v) for v in out["size"][i])
    boxes = datasets.edge_boxes(out["boxes"][i][out["box_labels"][i] == c], size, info.box_convention)
    hits.append(localization.pointing_game_hit(cam, boxes, size))
    energy.append(localization.energy_pointing_game(cam, boxes, size))
    centre.append(_centre_hit(boxes, size))
    random_share.append(localization.boxes_to_mask(boxes, size, strict=False).mean())
    agnostic.append(localization.pointing_game_hit(out["agnostic_cam"][i], boxes, size))
  per.update(pointing_game=np.asarray(hits, np.float64), energy_pointing_game=np.asarray(energy, np.float64),
             pointing_centre_baseline=np.asarray(centre, np.float64),
             pointing_random_baseline=np.asarray(random_share, np.float64),
             pointing_agnostic_baseline=np.asarray(agnostic, np.float64))
  return per


def _centre_hit(boxes, size):
  """The 'centre point' baseline: is the image centre inside a box (pixel-edge boxes, closed)?"""
  y, x = size[0] / 2.0, size[1] / 2.0
  b = np.asarray(boxes, np.float64).reshape(-1, 4)
  return bool(np.any((b[:, 0] <= y) & (y <= b[:, 2]) & (b[:, 1] <= x) & (x <= b[:, 3])))


# ------------------------------------------------------------------------------------------------ statistics

def _ci(fn, *arrays, options: EvalOptions):
  from atcon_tf.metrics import bootstrap_ci

  if len(arrays[0]) == 0:
    return {"mean": None, "lower": None, "upper": None, "estimate": None, "n": 0}
  ci = bootstrap_ci(fn, *arrays, n_resamples=options.bootstrap, ci=CI_LEVEL, seed=options.seed)
  return {"mean": ci.mean, "lower": ci.lower, "upper": ci.upper, "estimate": ci.estimate, "n": int(len(arrays[0]))}


def _nanmean(a):
  a = np.asarray(a, np.float64)
  return float(np.nanmean(a)) if np.any(np.isfinite(a)) else float("nan")


def summary_metrics(out: dict, per: dict, info, options: EvalOptions, subset=None) -> dict:
  """Bootstrap CIs of every metric. `subset`: boolean mask of images for the WSD IoU (default: correct ones)."""
  from atcon_tf.metrics import classification

  labels = out["label"]
  metrics = {}
  if info.multi_label:
    metrics["top1_in_labels"] = _ci(np.mean, per["correct"], options=options)
    metrics["macro_f1"] = _ci(lambda y, p: classification.macro_f1_multilabel(y, p), labels, out["probs"],
                              options=options)
  else:
    metrics["accuracy"] = _ci(np.mean, per["correct"], options=options)
    metrics["macro_f1"] = _ci(lambda y, p: classification.macro_f1(y, p, info.num_classes), labels, out["pred"],
                              options=options)
  if "wsd_iou" in per:
    mask = per["correct"] > 0 if subset is None else subset
    iou = per["wsd_iou"][mask]
    metrics["wsd_iou"] = _ci(_nanmean, iou[np.isfinite(iou)], options=options)
    for key in ("pointing_game", "energy_pointing_game"):
      metrics[key] = _ci(np.mean, per[key], options=options)
    for key in ("pointing_centre_baseline", "pointing_random_baseline", "pointing_agnostic_baseline"):
      metrics[key] = {"estimate": float(np.mean(per[key])) if len(per[key]) else None, "n": int(len(per[key]))}
  metrics["consistency"] = _ci(np.mean, per["consistency"], options=options)
  return metrics


def compare(out_a, per_a, out_b, per_b, info, options: EvalOptions) -> dict:
  """Differences b - a and bootstrap p-values on the same images (IoU: images both classify correctly)."""
  from atcon_tf.metrics import classification, paired_bootstrap_pvalue

  def p(fn, a, b, runs):
    if len(a[0]) == 0 or len(b[0]) == 0:
      return None
    return paired_bootstrap_pvalue(fn, a, b, n_resamples=runs, seed=options.seed)

  labels = out_a["label"]
  result = {}
  key = "top1_in_labels" if info.multi_label else "accuracy"
  result[key] = {"difference": float(per_b["correct"].mean() - per_a["correct"].mean()),
                 "p_value": p(np.mean, (per_a["correct"],), (per_b["correct"],), MEAN_PVALUE_RESAMPLES)}
  if info.multi_label:
    f1 = lambda y, s: classification.macro_f1_multilabel(y, s)  # noqa: E731
    a, b = (labels, out_a["probs"]), (labels, out_b["probs"])
  else:
    f1 = lambda y, s: classification.macro_f1(y, s, info.num_classes)  # noqa: E731
    a, b = (labels, out_a["pred"]), (labels, out_b["pred"])
  result["macro_f1"] = {"difference": f1(*b) - f1(*a), "p_value": p(f1, a, b, options.pvalue_resamples)}
  if "wsd_iou" in per_a:
    both = (per_a["correct"] > 0) & (per_b["correct"] > 0)
    ia, ib = per_a["wsd_iou"][both], per_b["wsd_iou"][both]
    finite = np.isfinite(ia) & np.isfinite(ib)
    ia, ib = ia[finite], ib[finite]
    result["wsd_iou"] = {"difference": float(ib.mean() - ia.mean()) if len(ia) else None,
                         "p_value": p(np.mean, (ia,), (ib,), MEAN_PVALUE_RESAMPLES), "n_both_correct": int(len(ia)),
                         "a_on_both_correct": float(ia.mean()) if len(ia) else None,
                         "b_on_both_correct": float(ib.mean()) if len(ib) else None}
    for key in ("pointing_game", "energy_pointing_game"):
      result[key] = {"difference": float(per_b[key].mean() - per_a[key].mean()),
                     "p_value": p(np.mean, (per_a[key],), (per_b[key],), MEAN_PVALUE_RESAMPLES)}
  result["consistency"] = {"difference": float(per_b["consistency"].mean() - per_a["consistency"].mean()),
                           "p_value": p(np.mean, (per_a["consistency"],), (per_b["consistency"],),
                                        MEAN_PVALUE_RESAMPLES)}
  return result


# -------------------------------------------------------------------------------------------------- pictures

def save_examples_grid(models: dict, ds, info, preprocessing: str, options: EvalOptions, path: str):
  """PNG: per example the image, then Grad-CAM, guided backprop and mask of each model."""
  from atcon_tf import tapped_model, visualize
  from atcon_tf.data import datasets

  examples = list(ds.take(options.num_grid_images).as_numpy_iterator())
  if not examples:
    return None
  images = np.stack([e["image"] for e in examples])
  labels = np.stack([e["label"] for e in examples])
  x = datasets.preprocess(images, preprocessing).numpy()
  rows = [[visualize.as_rgb(img)] for img in images]
  titles = ["image"]
  captions = [""] * len(images)
  for name, model in models.items():
    classifier, target_layer = load_model(model)
    panels = visualize.attention_panels(tapped_model.TappedModel(classifier, target_layer), x,
                                        mask_intensity=options.mask_intensity)
    for r, row in enumerate(visualize.panel_rows(images, panels)):
      rows[r].extend(row[1:])
    short = name.split(" (")[0][:14]
    titles += [f"{short}\nGrad-CAM", f"{short}\nguided backprop", f"{short}\nmask"]
    for r, caption in enumerate(visualize.row_titles_for(panels, None, info.class_names)):
      captions[r] += ("\n" if captions[r] else "") + caption.replace("pred", short[:10] + ":")
  truth = visualize.row_titles_for({"class_ids": np.zeros(len(images), int),
                                    "probabilities": np.ones((len(images), 1))}, labels, info.class_names)
  captions = [c + "\n" + t.split("\n")[-1] for c, t in zip(captions, truth)]
  return visualize.save_grid(path, rows, column_titles=titles, row_titles=captions,
                             title=f"{info.name}: Grad-CAM / guided backprop / ATCON mask")


# ---------------------------------------------------------------------------------------------------- driver

def evaluate_models(models: dict, ds, info, preprocessing: str, options: EvalOptions, grid_path=None) -> dict:
  """Evaluates `models` ({name: path or model}) on canonical elements `ds`; compares the first and the last."""
  names = list(models)
  outs, pers, results = {}, {}, {"dataset": info.name, "ci": CI_LEVEL, "bootstrap_resamples": options.bootstrap,
                                 "loss": {"attention": options.attention, "similarity": options.similarity,
                                          "mask_intensity": options.mask_intensity},
                                 "models": {}}
  for name in names:
    outs[name] = model_outputs(models[name], ds, info, preprocessing, options)
    pers[name] = per_image_metrics(outs[name], info)
  for name in names:
    results["models"][name] = {
        "path": models[name] if isinstance(models[name], (str, os.PathLike)) else None,
        "metrics": summary_metrics(outs[name], pers[name], info, options)}
  results["num_images"] = int(len(outs[names[0]]["pred"]))
  results["num_pointing_pairs"] = int(len(outs[names[0]]["pair_image"]))
  if len(names) >= 2:
    a, b = names[0], names[-1]
    results["comparison"] = {"a": a, "b": b, "difference": "b - a",
                             "metrics": compare(outs[a], pers[a], outs[b], pers[b], info, options)}
    if "wsd_iou" in pers[a]:  # also report each model's IoU on the images both classify correctly
      both = (pers[a]["correct"] > 0) & (pers[b]["correct"] > 0)
      for name in (a, b):
        results["models"][name]["metrics"]["wsd_iou_both_correct"] = summary_metrics(
            outs[name], pers[name], info, options, subset=both)["wsd_iou"]
  if grid_path and options.num_grid_images > 0:
    results["grid"] = save_examples_grid(models, ds, info, preprocessing, options, grid_path)
  return results


ROWS = (("accuracy", "accuracy"), ("top1_in_labels", "top-1 in labels"), ("macro_f1", "macro-F1"),
        ("wsd_iou", "WSD IoU (own correct)"), ("wsd_iou_both_correct", "WSD IoU (both correct)"),
        ("pointing_game", "pointing game"), ("energy_pointing_game", "energy pointing"),
        ("pointing_centre_baseline", "  baseline: centre"), ("pointing_random_baseline", "  baseline: random pt"),
        ("pointing_agnostic_baseline", "  baseline: agnostic"), ("consistency", "consistency (-L_atcon)"))


def _cell(m):
  if m is None or m.get("estimate") is None:
    return "-"
  if m.get("lower") is None:
    return f"{m['estimate']:.3f}"
  return f"{m['estimate']:.3f} [{m['lower']:.3f}, {m['upper']:.3f}]"


def format_table(results: dict, markdown: bool = True) -> str:
  """The printed table: one column per model (estimate [90% CI]), then difference and p-value if compared."""
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
      row += ["-", "-"] if c is None else [
          "-" if c.get("difference") is None else f"{c['difference']:+.3f}",
          "-" if c.get("p_value") is None else f"{c['p_value']:.3f}"]
    lines.append(row)
  widths = [max(len(str(r[i])) for r in [header] + lines) for i in range(len(header))]
  fmt = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
  out = [fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [fmt(r) for r in lines]
  notes = [f"{results['dataset']}: {results['num_images']} test images"
           + (f", {results['num_pointing_pairs']} (image, class) pointing pairs" if results.get(
               "num_pointing_pairs") else "")
           + f"; estimate [{int(results['ci'] * 100)}% bootstrap CI, {results['bootstrap_resamples']} resamples]."]
  if comparison and "wsd_iou" in comparison:
    notes.append(f"WSD IoU p-value on the {comparison['wsd_iou']['n_both_correct']} images both models classify "
                 "correctly (method.md §6.2); p-values: bstrap pooled bootstrap test.")
  return "\n".join(out + notes)


# ------------------------------------------------------------------------------------------------------- CLI

def define_flags():
  """Defines the evaluator's absl flags (call once)."""
  from absl import flags

  o = EvalOptions()
  flags.DEFINE_string("workdir", None, "A trainers.finetune workdir: evaluates its best.keras with the dataset, "
                      "image size and preprocessing of its config.json; writes eval.json / eval_grid.png there.")
  flags.DEFINE_string("model", None, "A .keras model (ATCONModel or plain classifier) to evaluate.")
  flags.DEFINE_string("compare", None, "A second .keras model (or workdir) compared with --model on the same "
                      "images (differences = compare - model, bootstrap p-values).")
  flags.DEFINE_string("dataset", None, "house_numbers | svhn | voc2007 | voc2012 | folder:PATH (default: the "
                      "workdir's).")
  flags.DEFINE_enum("house_numbers_config", None, ["single", "multi"], "house_numbers config (default: "
                    "workdir's, else single).")
  flags.DEFINE_list("house_numbers_sizes", None, "house_numbers TRAIN,VALIDATION,TEST sizes (default: "
                    "workdir's, else the builder's).")
  flags.DEFINE_string("data_dir", None, "tfds data_dir (default: workdir's, else tfds' default).")
  flags.DEFINE_integer("image_size", None, "Input size (default: the model's input shape).")
  flags.DEFINE_enum("preprocessing", None, ["imagenet_torch", "imagenet_caffe", "scale_-1_1", "scale_0_1",
                                            "none"], "Pixels -> model input (default: the config.json next to "
                    "the model, else imagenet_torch).")
  flags.DEFINE_integer("test_size", None, "Evaluate on the first K test images (default: workdir's, 0 = all).")
  flags.DEFINE_integer("batch_size", o.batch_size, "Evaluation batch size.")
  flags.DEFINE_integer("bootstrap", o.bootstrap, "Bootstrap resamples for the 90% CIs.")
  flags.DEFINE_integer("pvalue_resamples", o.pvalue_resamples, "Resamples of the macro-F1 p-value (mean-type "
                       f"metrics use {MEAN_PVALUE_RESAMPLES}, as the authors' mIoU).")
  flags.DEFINE_float("mask_intensity", None, "w of the ATCON mask for the consistency metric (default: "
                     "workdir's, else 8).")
  flags.DEFINE_string("attention", None, "ATCON loss variant for the consistency metric (default gb_mask).")
  flags.DEFINE_string("similarity", None, "Similarity for the consistency metric (default pearson).")
  flags.DEFINE_integer("num_grid_images", o.num_grid_images, "Examples in the PNG grid (0: no grid).")
  flags.DEFINE_string("output", None, "JSON output (default: WORKDIR/eval.json, else ./eval.json).")
  flags.DEFINE_string("grid", None, "PNG grid output (default: next to the JSON, *_grid.png).")
  flags.DEFINE_integer("seed", o.seed, "Bootstrap seed.")


def _find_run_config(path):
  """config.json of the trainer run that wrote `path` (a workdir or a model file inside one)."""
  path = os.path.abspath(os.fspath(path))
  folder = path if os.path.isdir(path) else os.path.dirname(path)
  for candidate in (folder, os.path.dirname(folder)):
    f = os.path.join(candidate, "config.json")
    if os.path.isfile(f):
      with open(f) as fh:
        return json.load(fh)
  return {}


def main(argv):
  from absl import flags

  from atcon_tf.data import datasets

  if len(argv) > 1:
    raise SystemExit(f"Unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  if not f.workdir and not f.model:
    raise SystemExit("Pass --workdir=RUN or --model=PATH.keras.")
  model_path = f.model or os.path.join(f.workdir, "best.keras")
  if os.path.isdir(model_path):
    model_path = os.path.join(model_path, "best.keras")
  run = _find_run_config(f.workdir or model_path)
  cfg = run.get("config", {})
  pick = lambda flag, key, default: flag if flag is not None else cfg.get(key, default)  # noqa: E731
  dataset = pick(f.dataset, "dataset", None)
  if not dataset:
    raise SystemExit("No --dataset given and no config.json found next to the model.")
  classifier, _ = load_model(model_path)
  image_size = f.image_size or int(classifier.input_shape[1] or cfg.get("image_size", 224))
  preprocessing = f.preprocessing or run.get("preprocessing") or "imagenet_torch"
  sizes = pick(f.house_numbers_sizes, "house_numbers_sizes", None)
  sizes = dict(zip(("train", "validation", "test"), map(int, sizes))) if sizes else None
  splits = datasets.load(dataset, image_size, data_dir=pick(f.data_dir, "data_dir", None),
                         house_numbers_config=pick(f.house_numbers_config, "house_numbers_config", "single"),
                         house_numbers_sizes=sizes)
  test_size = pick(f.test_size, "test_size", 0)
  n = splits.test.num_examples if not test_size else min(int(test_size), splits.test.num_examples)
  ds = splits.test.dataset(np.arange(n))
  options = EvalOptions(batch_size=f.batch_size, bootstrap=f.bootstrap, pvalue_resamples=f.pvalue_resamples,
                        mask_intensity=float(pick(f.mask_intensity, "mask_intensity", 8.0)),
                        attention=pick(f.attention, "attention", "gb_mask"),
                        similarity=pick(f.similarity, "similarity", "pearson"), seed=f.seed,
                        num_grid_images=f.num_grid_images)
  models = {"model": model_path}
  if f.compare:
    models = {"model": model_path, "compare": f.compare}
  output = f.output or (os.path.join(f.workdir, "eval.json") if f.workdir else "eval.json")
  grid = f.grid or os.path.splitext(output)[0] + "_grid.png"
  results = evaluate_models(models, ds, splits.info, preprocessing, options, grid_path=grid)
  results.update(image_size=image_size, preprocessing=preprocessing, models_evaluated=models)
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  with open(output, "w") as fh:
    json.dump(results, fh, indent=2, default=_json_default)
  print(format_table(results))
  print(f"\nWrote {output}" + (f" and {results['grid']}" if results.get("grid") else ""), flush=True)


def _json_default(value):
  if isinstance(value, np.integer):
    return int(value)
  if isinstance(value, np.floating):
    return float(value)
  if isinstance(value, np.ndarray):
    return value.tolist()
  return str(value)


if __name__ == "__main__":
  from absl import app

  define_flags()
  app.run(main)
  sys.exit(0)
