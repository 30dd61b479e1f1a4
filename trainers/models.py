"""The model side of a run: which classifier to train, its preprocessing, and the ATCONModel that trains it.

The ATCONModel records the run's contract (preprocessing, class names, Grad-CAM layer, loss settings), so
every `.keras` file the trainer saves can be evaluated and exported without being told them again.
"""

from __future__ import annotations

import dataclasses
import logging

from atcon_tf import choices
from trainers.config import Config

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ModelChoice:
  """The classifier to train and what it needs: resolved once, at the start of a run."""

  classifier: object  # keras.Model, logits out
  preprocessing: str
  target_layer: str | None


def _imported(cfg: Config, num_classes: int):
  from atcon_tf import loading

  loaded = loading.load_model(cfg.model)
  outputs = loaded.classifier.output_shape[-1]
  if outputs != num_classes:
    raise ValueError(f"--model has {outputs} outputs but the dataset has {num_classes} classes.")
  preprocessing = cfg.preprocessing
  if preprocessing == "auto":
    preprocessing = loaded.contract.require_preprocessing(f"--model={cfg.model}")
  elif loaded.contract.preprocessing not in (None, preprocessing):
    log.warning(
      "--preprocessing=%s overrides the imported model's recorded %s.",
      preprocessing,
      loaded.contract.preprocessing,
    )
  return ModelChoice(loaded.classifier, preprocessing, cfg.target_layer or loaded.contract.target_layer)


def choose_model(cfg: Config, num_classes: int) -> ModelChoice:
  """An imported model (--model), or a new backbone, with the preprocessing it expects."""
  if cfg.model:
    return _imported(cfg, num_classes)
  from atcon_tf import backbones

  classifier = backbones.build(
    cfg.backbone,
    cfg.image_size,
    num_classes,
    weights=cfg.weights,
    seed=cfg.seed,
    resnet_width=cfg.resnet_width,
    resnet_blocks=cfg.resnet_blocks,
  )
  preprocessing = resolve_preprocessing(cfg)
  target_layer = cfg.target_layer or choices.BACKBONE_TARGET_LAYER.get(cfg.backbone)
  return ModelChoice(classifier, preprocessing, target_layer)


def resolve_preprocessing(cfg: Config) -> str:
  """--preprocessing, or the backbone's own for a new model."""
  if cfg.preprocessing != "auto":
    return cfg.preprocessing
  return choices.BACKBONE_PREPROCESSING[cfg.backbone]


def make_atcon_model(choice: ModelChoice, cfg: Config, schedule: str, info, lr: float):
  """Wraps the classifier (weights shared) in an ATCONModel for one schedule, recording the contract."""
  import keras
  import numpy as np

  import atcon_tf

  model = atcon_tf.ATCONModel(
    choice.classifier,
    target_layer=choice.target_layer,
    schedule=schedule,
    alpha=cfg.alpha,
    multi_label=info.multi_label,
    attention=cfg.attention,
    similarity=cfg.similarity,
    mask_intensity=cfg.mask_intensity,
    preprocessing=choice.preprocessing,
    class_names=info.class_names,
  )
  tapped = model.tapped
  print(
    f"[{schedule}] Grad-CAM layer {tapped.target_layer_path}, logits from "
    f"{tapped.logits_source.where or 'the model output'}; {tapped.guided_report.summary()}.",
    flush=True,
  )
  metrics = None
  if (
    schedule != "atcon"
  ):  # the atcon stage's history stays free of label metrics (validation is scored apart)
    metrics = [
      keras.metrics.BinaryAccuracy(name="accuracy")
      if info.multi_label
      else keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    ]
  model.compile(
    optimizer=keras.optimizers.Adam(lr, epsilon=cfg.adam_epsilon),
    metrics=metrics,
    jit_compile=cfg.jit_compile,
  )
  model(np.zeros((1, cfg.image_size, cfg.image_size, 3), np.float32))  # BackupAndRestore needs a built model
  return model
