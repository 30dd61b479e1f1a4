"""Evaluate one model, or compare two on the same test images, as the ATCON authors do (docs/method.md §6).

One job per module:
* `options`: `EvalOptions` (evaluation knobs) and how each model's recorded settings are resolved;
* `outputs`: one model's forward pass (predictions, maps, consistency) through `atcon_tf.maps`;
* `per_image`: correctness, WSD IoU, pointing games: one value per image or (image, class) pair;
* `statistics`: bootstrap CIs and the comparison with paired (default) or the authors' pooled p-values;
* `grid`: the PNG grid; `table`: the printed table; `pipeline`: `evaluate_models`, which runs them all.
`python -m trainers.evaluate` is the command line. Nothing here imports TensorFlow until a model runs.
"""

from trainers.evaluation.grid import save_examples_grid
from trainers.evaluation.options import (
  ABSENT_CLASS_RULES,
  CI_LEVEL,
  MEAN_PVALUE_RESAMPLES,
  PVALUE_TESTS,
  EvalOptions,
  loss_config,
  preprocessing_for,
)
from trainers.evaluation.outputs import model_outputs
from trainers.evaluation.per_image import per_image_metrics
from trainers.evaluation.pipeline import evaluate_models
from trainers.evaluation.statistics import TESTS, compare, summary_metrics
from trainers.evaluation.table import format_table

__all__ = [
  "ABSENT_CLASS_RULES",
  "CI_LEVEL",
  "MEAN_PVALUE_RESAMPLES",
  "PVALUE_TESTS",
  "TESTS",
  "EvalOptions",
  "compare",
  "evaluate_models",
  "format_table",
  "loss_config",
  "model_outputs",
  "per_image_metrics",
  "preprocessing_for",
  "save_examples_grid",
  "summary_metrics",
]
