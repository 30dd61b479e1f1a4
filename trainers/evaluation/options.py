"""What an evaluation can be told, and how each model's own settings are found.

Model properties (preprocessing, Grad-CAM layer, the loss settings behind the consistency metric) are
recorded with the model (`atcon_tf.contract.ServingContract`); `EvalOptions` holds only the knobs of the
evaluation itself, plus explicit overrides, so a caller cannot silently evaluate a model in a way it was not
trained for. No TensorFlow at import time.
"""

from __future__ import annotations

import dataclasses

from atcon_tf.metrics.classification import ABSENT_CLASS_RULES

CI_LEVEL = 0.90
MEAN_PVALUE_RESAMPLES = 10000  # the authors' nbr_runs for mIoU; used for every mean-type metric
PVALUE_TESTS = ("paired", "pooled")


@dataclasses.dataclass
class EvalOptions:
  """Evaluation knobs. `loss`: None (the models' recorded settings), a `losses.ConsistencyConfig` (replaces
  them) or a dict of some of its fields (replaces those only)."""

  batch_size: int = 64
  bootstrap: int = 1000  # resamples of every 90% CI
  pvalue_resamples: int = 1000  # for macro-F1 (a metric of the whole sample, slower to resample)
  pvalue_test: str = "paired"  # "paired": McNemar / sign-flip, same images; "pooled": the authors' bstrap
  seed: int = 0
  num_grid_images: int = 6
  # Macro-F1 and classes without a test image: "exclude" (undefined, left out) or "zero" (the authors' rule).
  absent_classes: str = "exclude"
  loss: object = None
  # Deletion / insertion AUC (maps without boxes): steps of the curves (0: off), on the first K test images,
  # removed pixels replaced by the baseline image (blur | mean; atcon_tf.metrics.faithfulness).
  faithfulness_steps: int = 16
  faithfulness_images: int = 500
  faithfulness_baseline: str = "blur"

  def __post_init__(self):
    if self.pvalue_test not in PVALUE_TESTS:
      raise ValueError(f"Unknown pvalue_test {self.pvalue_test!r}; choose one of {list(PVALUE_TESTS)}.")
    from atcon_tf import choices

    choices.check("faithfulness_baseline", self.faithfulness_baseline, choices.FAITHFULNESS_BASELINES)
    if self.absent_classes not in ABSENT_CLASS_RULES:
      raise ValueError(
        f"Unknown absent_classes {self.absent_classes!r}; choose one of {list(ABSENT_CLASS_RULES)}."
      )


def loss_config(contracts: dict, override=None) -> tuple:
  """(ConsistencyConfig, source): ONE loss configuration for a whole comparison, so that the consistency of
  both models is measured the same way: `override` if complete, else the last model's recorded settings
  (a model recording none has the authors' defaults) with the fields of a dict `override` replaced."""
  from atcon_tf.losses import ConsistencyConfig

  if isinstance(override, ConsistencyConfig):
    return override, "override"
  name = list(contracts)[-1] if contracts else None
  settings = contracts[name].consistency_settings() if name is not None else {}
  source = f"recorded by {name!r}" if name is not None else "defaults"
  changes = {k: v for k, v in dict(override or {}).items() if v is not None}
  if changes:
    settings.update(changes)
    source += ", overridden: " + ", ".join(f"{k}={v}" for k, v in sorted(changes.items()))
  return ConsistencyConfig(**settings), source


def preprocessing_for(name: str, contract, explicit: str | None = None) -> str:
  """The preprocessing model `name` is evaluated with: `explicit` if given, else the one it records."""
  from atcon_tf import choices

  if explicit is not None:
    choices.check("preprocessing", explicit, choices.PREPROCESSING)
    return contract.with_overrides(source="evaluation", preprocessing=explicit).preprocessing
  return contract.require_preprocessing(f"Model {name!r}")
