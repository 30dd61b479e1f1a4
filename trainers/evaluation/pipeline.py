"""`evaluate_models`: load the models, run them on the same images, then statistics, comparison and grid."""

from __future__ import annotations

import os

from trainers.evaluation import faithfulness as faithfulness_lib
from trainers.evaluation import grid, options as options_lib, outputs as outputs_lib, per_image, statistics
from trainers.evaluation.options import CI_LEVEL, EvalOptions


def images_per_class(labels, info) -> dict:
  """{class name: test images that have it}: what a macro-F1 and an accuracy were measured on."""
  import numpy as np

  labels = np.asarray(labels)
  counts = labels.sum(axis=0) if labels.ndim == 2 else np.bincount(labels, minlength=info.num_classes)
  return {str(name): int(n) for name, n in zip(info.class_names, counts[: info.num_classes])}


def evaluate_models(
  models: dict,
  ds,
  info,
  preprocessing: str | None = None,
  options: EvalOptions | None = None,
  grid_path=None,
  grid_positions=None,
) -> dict:
  """Evaluates `models` ({name: model, ATCONModel, model file, run folder or `loading.LoadedModel`}) on
  canonical elements `ds`.

  Each model is run with its recorded preprocessing unless `preprocessing` is given (then all use it); the
  consistency of all models uses one loss configuration (`loss_config`). With two or more models the first
  and the last are compared on the same images. `grid_positions`: which images of `ds` the PNG grid shows
  (default: the first `options.num_grid_images`; callers pass a selection across classes). Returns a
  JSON-ready dict (numpy scalars aside).
  """
  from atcon_tf import loading

  if not models:
    raise ValueError("No models to evaluate.")
  options = options or EvalOptions()
  loaded = {
    name: model if isinstance(model, loading.LoadedModel) else loading.load_model(model)
    for name, model in models.items()
  }
  config, source = options_lib.loss_config({n: m.contract for n, m in loaded.items()}, options.loss)
  used = {n: options_lib.preprocessing_for(n, m.contract, preprocessing) for n, m in loaded.items()}
  keep = options.num_grid_images if grid_path else 0
  if grid_positions is not None:
    grid_positions = list(grid_positions)[:keep]
  outs, pers = {}, {}
  for name, model in loaded.items():
    outs[name] = outputs_lib.model_outputs(
      model,
      ds,
      info,
      used[name],
      config,
      options.batch_size,
      keep,
      example_positions=grid_positions,
      options=options,
    )
    pers[name] = per_image.per_image_metrics(outs[name], info)
  names = list(models)
  results = {
    "dataset": info.name,
    "ci": CI_LEVEL,
    "bootstrap_resamples": options.bootstrap,
    "loss": {**config._asdict(), "source": source},
    "preprocessing": used[names[0]] if len(set(used.values())) == 1 else dict(used),
    "num_images": int(len(outs[names[0]]["pred"])),
    "images_per_class": images_per_class(outs[names[0]]["label"], info),
    "absent_classes": options.absent_classes,
    "num_pointing_pairs": int(len(outs[names[0]]["pair_image"])),
    "faithfulness": faithfulness_lib.settings(options, outs[names[0]]),
    "models": {
      name: {
        "path": loaded[name].path,
        "preprocessing": used[name],
        "target_layer": outs[name]["target_layer"],
        "metrics": statistics.summary_metrics(outs[name], pers[name], info, options),
      }
      for name in names
    },
  }
  if len(names) >= 2:
    a, b = names[0], names[-1]
    metrics = statistics.compare(outs[a], pers[a], outs[b], pers[b], info, options)
    results["comparison"] = {
      "a": a,
      "b": b,
      "difference": "b - a",
      "pvalue_test": options.pvalue_test,
      "tests": {k: v["test"] for k, v in metrics.items() if v.get("test")},
      "metrics": metrics,
    }
    if "wsd_iou" in pers[a]:  # each model's IoU on the images both classify correctly
      both = statistics.both_correct(pers[a], pers[b])
      for name in (a, b):
        results["models"][name]["metrics"]["wsd_iou_both_correct"] = statistics.wsd_iou_ci(
          pers[name], both, options
        )
  if keep > 0:
    results["grid"] = grid.save_examples_grid(outs, info, os.fspath(grid_path), keep)
  return results
