r"""Evaluate one model, or compare two on the same test images, from the command line (docs/method.md §6).

    python -m trainers.evaluate --workdir=/tmp/atcon_tf/finetune-...          # its best.keras, its dataset
    python -m trainers.evaluate --workdir=RUN --compare=RUN/supervised/best.keras
    python -m trainers.evaluate --model=model.keras --dataset=voc2012 --data_dir=/data/tfds --image_size=256

Metrics (bootstrap mean and 5th-95th percentile = 90% CI, `atcon_tf.metrics`):
* accuracy (single-label) / top-1-in-labels (multi-label), macro-F1 with the authors' definitions
  (single-label: nansum(per-class F1)/C from argmax; multi-label: TP/(TP + (FP+FN)/2) with p > 0.5).
* datasets with boxes (house_numbers, VOC):
  - WSD IoU (§6.2): Grad-CAM (no ReLU) of the top-1 class, nearest-upsampled to the input size,
    median-shifted, clipped at mean + 2 std, binarised at 0.5, IoU with the union of the boxes of that class.
    Averaged over the correctly classified images; when two models are compared, over the images BOTH
    classify correctly.
  - pointing game (map argmax inside a box of the class; one (image, ground-truth class) pair per class
    present) and the energy pointing game, with baselines printed beside them: image centre, a uniform
    random point (expected hit rate = box area share) and a class-agnostic map (Grad-CAM of the sum of the
    logits).
* deletion / insertion AUC (any dataset, no boxes needed; `atcon_tf.metrics.faithfulness`): how fast the
  top-1 probability falls / rises as the pixels a map ranks highest are replaced by a blurred (or mean) image
  / put back, in `--faithfulness_steps` equal steps, for Grad-CAM and guided backprop, on the first
  `--faithfulness_images` test images. Deletion: lower is better; insertion: higher is better.
* consistency = -ATCON loss per image (higher = more consistent), with the loss settings the model records.
Two models: differences and p-values on the same images (`--pvalue_test=paired`: exact McNemar for
accuracy, sign-flip permutation test for the rest; `pooled`: the authors' bstrap test).
Outputs: a JSON file, a printed table and a PNG grid (image, Grad-CAM, guided backprop, ATCON mask per model).
The work is done by the `trainers.evaluation` package; this module only reads flags and files.
"""

from __future__ import annotations

import os
import sys

from atcon_tf import quiet

quiet.tensorflow_logs()  # before TensorFlow is imported: no CUDA / oneDNN start-up noise


from trainers import data as data_lib  # noqa: E402
from trainers import evaluation  # noqa: E402
from trainers import results as results_lib  # noqa: E402


def define_flags():
  """Defines the evaluator's absl flags (call once)."""
  from absl import flags

  from atcon_tf import choices

  o = evaluation.EvalOptions()
  flags.DEFINE_string(
    "workdir",
    None,
    "A trainers.finetune workdir: evaluates its best.keras with the "
    "dataset and sizes of its config.json; writes evaluate.json / evaluate_grid.png there (the trainer's eval_grid.png stays).",
  )
  flags.DEFINE_string(
    "model", None, "A .keras model (ATCONModel or plain classifier) or run folder to evaluate."
  )
  flags.DEFINE_string(
    "compare",
    None,
    "A second model (or workdir) compared with --model on the same images "
    "(differences = compare - model, p-values).",
  )
  flags.DEFINE_string(
    "dataset",
    None,
    "house_numbers | svhn | fashion_mnist | voc2007 | voc2012 | folder:PATH (default: the workdir's).",
  )
  flags.DEFINE_enum(
    "house_numbers_config",
    None,
    list(choices.HOUSE_NUMBERS_CONFIGS),
    "house_numbers config (default: workdir's, else single).",
  )
  flags.DEFINE_list(
    "house_numbers_sizes",
    None,
    "house_numbers TRAIN,VALIDATION,TEST sizes (default: workdir's, else the builder's).",
  )
  flags.DEFINE_string("data_dir", None, "tfds data_dir (default: workdir's, else tfds' default).")
  flags.DEFINE_integer("image_size", None, "Input size (default: the model's input shape).")
  flags.DEFINE_enum(
    "preprocessing",
    None,
    list(choices.PREPROCESSING),
    "Pixels -> model input, for every model (default: each model's recorded one).",
  )
  flags.DEFINE_integer(
    "test_size",
    None,
    "Evaluate on K test images, seeded and stratified by class (default: workdir's, 0 = all).",
  )
  flags.DEFINE_integer("batch_size", o.batch_size, "Evaluation batch size.")
  flags.DEFINE_integer("bootstrap", o.bootstrap, "Bootstrap resamples for the 90% CIs.")
  flags.DEFINE_integer(
    "pvalue_resamples",
    o.pvalue_resamples,
    "Resamples of the macro-F1 p-value (mean-type "
    f"metrics use {evaluation.MEAN_PVALUE_RESAMPLES}, as the authors' mIoU).",
  )
  flags.DEFINE_enum(
    "pvalue_test",
    o.pvalue_test,
    list(evaluation.PVALUE_TESTS),
    "paired: exact McNemar "
    "(accuracy) and sign-flip permutation tests on the same images; pooled: the authors' "
    "bstrap two-sample bootstrap test.",
  )
  flags.DEFINE_enum(
    "absent_classes",
    o.absent_classes,
    list(evaluation.ABSENT_CLASS_RULES),
    "Macro-F1 and classes without a test image: exclude (undefined, left out) or zero (the authors' rule).",
  )
  flags.DEFINE_float(
    "mask_intensity",
    None,
    "w of the ATCON mask for the consistency metric (default: the last model's recorded one).",
  )
  flags.DEFINE_enum(
    "attention",
    None,
    list(choices.ATTENTIONS),
    "ATCON loss variant for the consistency metric (default: recorded).",
  )
  flags.DEFINE_enum(
    "similarity",
    None,
    list(choices.SIMILARITIES),
    "Similarity for the consistency metric (default: recorded).",
  )
  flags.DEFINE_integer(
    "faithfulness_steps", o.faithfulness_steps, "Deletion / insertion AUC: steps of the curves (0: off)."
  )
  flags.DEFINE_integer(
    "faithfulness_images", o.faithfulness_images, "Deletion / insertion AUC on the first K test images."
  )
  flags.DEFINE_enum(
    "faithfulness_baseline",
    o.faithfulness_baseline,
    list(choices.FAITHFULNESS_BASELINES),
    "What removed pixels become: blur (Gaussian, sigma = size / 8) or mean (channel means).",
  )
  flags.DEFINE_integer("num_grid_images", o.num_grid_images, "Examples in the PNG grid (0: no grid).")
  flags.DEFINE_string("output", None, "JSON output (default: WORKDIR/evaluate.json, else ./evaluate.json).")
  flags.DEFINE_string("grid", None, "PNG grid output (default: next to the JSON, *_grid.png).")
  flags.DEFINE_integer("seed", o.seed, "Bootstrap and permutation seed.")


def main(argv):
  from absl import flags

  from atcon_tf import loading
  from atcon_tf.data import datasets

  if len(argv) > 1:
    raise SystemExit(f"Unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  if not f.workdir and not f.model:
    raise SystemExit("Pass --workdir=RUN or --model=PATH.keras.")
  model_path = loading.resolve_model_path(f.model or f.workdir)
  cfg = loading.run_config(model_path).get("config", {})
  pick = lambda flag, key, default: flag if flag is not None else cfg.get(key, default)  # noqa: E731
  dataset = pick(f.dataset, "dataset", None)
  if not dataset:
    raise SystemExit("No --dataset given and no config.json found next to the model.")
  paths = {"model": model_path}
  if f.compare:
    paths["compare"] = loading.resolve_model_path(f.compare)
  loaded = loading.load_model(model_path)
  image_size = f.image_size or (loaded.contract.image_size or (None,))[0] or int(cfg.get("image_size", 224))
  sizes = pick(f.house_numbers_sizes, "house_numbers_sizes", None)
  sizes = dict(zip(("train", "validation", "test"), map(int, sizes))) if sizes else None
  splits = datasets.load(
    dataset,
    image_size,
    data_dir=pick(f.data_dir, "data_dir", None),
    house_numbers_config=pick(f.house_numbers_config, "house_numbers_config", "single"),
    house_numbers_sizes=sizes,
  )
  test_size = pick(f.test_size, "test_size", 0)
  indices = data_lib.evaluation_subset(splits.test, int(test_size or 0))
  loss = {"attention": f.attention, "similarity": f.similarity, "mask_intensity": f.mask_intensity}
  options = evaluation.EvalOptions(
    batch_size=f.batch_size,
    bootstrap=f.bootstrap,
    pvalue_resamples=f.pvalue_resamples,
    pvalue_test=f.pvalue_test,
    absent_classes=f.absent_classes,
    seed=f.seed,
    num_grid_images=f.num_grid_images,
    loss=loss,
    faithfulness_steps=f.faithfulness_steps,
    faithfulness_images=f.faithfulness_images,
    faithfulness_baseline=f.faithfulness_baseline,
  )
  # evaluate.json / evaluate_grid.png: never the trainer's metrics.json / eval_grid.png of the same run.
  output = f.output or (os.path.join(f.workdir, "evaluate.json") if f.workdir else "evaluate.json")
  grid = f.grid or os.path.splitext(output)[0] + "_grid.png"
  models = {**paths, "model": loaded}  # loaded once: its input size chose the image size
  try:
    results = evaluation.evaluate_models(
      models,
      splits.test.dataset(indices),
      splits.info,
      f.preprocessing,
      options,
      grid_path=grid,
      grid_positions=data_lib.picture_positions(splits.test, indices, options.num_grid_images),
    )
  except ValueError as error:
    raise SystemExit(str(error)) from error
  results.update(image_size=image_size, models_evaluated=paths)
  results_lib.write_json(output, results)
  print(evaluation.format_table(results))
  print(f"\nWrote {output}" + (f" and {results['grid']}" if results.get("grid") else ""), flush=True)


if __name__ == "__main__":
  from absl import app

  define_flags()
  app.run(main)
  sys.exit(0)
