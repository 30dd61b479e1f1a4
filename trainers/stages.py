"""Training stages: which fits a run makes, and one resumable `fit` per stage.

A stage resumes an interrupted fit (BackupAndRestore), keeps its best checkpoint by validation supervised loss
(ModelCheckpoint, honest across resumes), and marks itself done so a rerun goes on with the next stage.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

from trainers import distribution
from trainers import models
from trainers.config import Config
from trainers.data import Data

STAGE_DONE_FILE = "done.json"
START_FILE = "start.json"  # validation loss of a stage's starting weights


@dataclasses.dataclass
class Stage:
  name: str
  schedule: str
  epochs: int
  lr: float
  steps_per_epoch: int


def plan_stages(cfg: Config, data: Data) -> list:
  """One stage per schedule; two_stage = supervised, then ATCON from the supervised best checkpoint."""
  from atcon_tf import training_data

  s, u = len(data.plan.labeled), len(data.plan.unlabeled)
  bs = min(cfg.batch_size, s)
  ubs = min(cfg.unlabeled_batch_size or cfg.batch_size, max(u, 1))

  def steps(schedule, override):
    if override > 0:
      return override
    if schedule in ("supervised", "combining"):
      return max(1, s // bs)
    if schedule == "atcon":
      return max(1, u // ubs)
    return max(1, training_data.alternating_steps(cfg.alpha, s, u, bs, ubs))

  if cfg.schedule != "supervised" and u == 0:
    raise ValueError(
      f"--schedule={cfg.schedule} needs unlabeled images but the pool is empty "
      "(use --unlabeled=labeled, or fewer --labels_per_class)."
    )
  if cfg.schedule == "two_stage":
    return [
      Stage("supervised", "supervised", cfg.epochs, cfg.lr, steps("supervised", cfg.steps_per_epoch)),
      Stage("atcon", "atcon", cfg.atcon_epochs, cfg.atcon_lr, steps("atcon", cfg.atcon_steps_per_epoch)),
    ]
  return [Stage(cfg.schedule, cfg.schedule, cfg.epochs, cfg.lr, steps(cfg.schedule, cfg.steps_per_epoch))]


def stage_dataset(stage: Stage, data: Data, cfg: Config):
  from atcon_tf import training_data

  if stage.schedule == "supervised":
    return distribution.shard_by_data(data.labeled)
  if stage.schedule == "atcon":
    return distribution.shard_by_data(data.unlabeled)
  s, u = len(data.plan.labeled), len(data.plan.unlabeled)
  if stage.schedule == "alternating":
    return distribution.shard_by_data(
      training_data.alternating_dataset(data.labeled, data.unlabeled, cfg.alpha, s, u, seed=cfg.seed)
    )
  return distribution.shard_by_data(training_data.combining_dataset(data.labeled, data.unlabeled))


def best_logged(csv_path, monitor="val_supervised_loss"):
  """Lowest `monitor` in a CSVLogger file (None if absent): keeps ModelCheckpoint honest across resumes."""
  import csv
  import math

  if not os.path.isfile(csv_path):
    return None
  with open(csv_path) as f:
    values = [float(r[monitor]) for r in csv.DictReader(f) if r.get(monitor) not in (None, "", "nan")]
  values = [v for v in values if math.isfinite(v)]
  return min(values) if values else None


def _epochs_logged(csv_path):
  import csv

  if not os.path.isfile(csv_path):
    return 0
  with open(csv_path) as f:
    return sum(1 for _ in csv.DictReader(f))


def _trained(best, choice):
  """The next stage starts from this stage's best weights, on the same Grad-CAM layer."""
  return dataclasses.replace(choice, classifier=best.classifier, target_layer=best.tapped.target_layer_path)


def _score_start(model, data, stage_dir: str, best_path: str) -> float:
  """Validation supervised loss of the stage's starting weights, saved as the first candidate `best.keras`.

  So checkpoint selection includes the start: a stage whose every epoch is worse (an ATCON stage with too
  large a learning rate) ends with the weights it began with. Stored in start.json for resumed runs.
  """
  import math

  path = os.path.join(stage_dir, START_FILE)
  if os.path.isfile(path):
    with open(path) as f:
      return json.load(f)["val_supervised_loss"]
  scores = model.evaluate(distribution.shard_by_data(data.validation), verbose=0, return_dict=True)
  loss = float(scores["supervised_loss"])
  if math.isfinite(loss):
    model.save(best_path)
  with open(path, "w") as f:
    json.dump({"val_supervised_loss": loss}, f)
  return loss


def _lowest(*values):
  finite = [v for v in values if v is not None and v == v]
  return min(finite) if finite else None


def train_stage(
  stage: Stage,
  choice: models.ModelChoice,
  cfg: Config,
  data: Data,
  stage_dir: str,
  log_dir: str,
  strategy,
  extra_callbacks=(),
  chief=True,
):
  """Fits one stage with resume; returns (the best model as a ModelChoice, summary). Skips a finished stage."""
  import keras

  from atcon_tf import preprocessing
  from atcon_tf import visualize

  best_path = os.path.join(stage_dir, "best.keras")
  done_path = os.path.join(stage_dir, STAGE_DONE_FILE)
  if os.path.isfile(done_path) and os.path.isfile(best_path):
    print(f"[{stage.name}] already finished in {stage_dir}: loading its best.keras", flush=True)
    with strategy.scope():
      best = keras.saving.load_model(best_path, compile=False)
    with open(done_path) as f:
      return _trained(best, choice), json.load(f)

  os.makedirs(stage_dir, exist_ok=True)
  csv_path = os.path.join(stage_dir, "history.csv")
  with strategy.scope():
    model = models.make_atcon_model(choice, cfg, stage.schedule, data.info, stage.lr)
  start_loss = _score_start(model, data, stage_dir, best_path)
  callbacks = [
    keras.callbacks.BackupAndRestore(os.path.join(stage_dir, "backup")),
    keras.callbacks.ModelCheckpoint(
      best_path,
      monitor="val_supervised_loss",
      mode="min",
      save_best_only=True,
      initial_value_threshold=_lowest(start_loss, best_logged(csv_path)),
      verbose=0,
    ),
    keras.callbacks.CSVLogger(csv_path, append=True),
  ]
  if cfg.tensorboard and chief:
    callbacks.append(keras.callbacks.TensorBoard(log_dir, write_graph=False))
  if cfg.viz_every > 0 and data.viz_images is not None and chief:
    callbacks.append(
      visualize.AttentionMapCallback(
        data.viz_images,
        preprocessing.apply(data.viz_images, choice.preprocessing).numpy(),
        log_dir if cfg.tensorboard else os.path.join(stage_dir, "tb_unused"),
        every_n_epochs=cfg.viz_every,
        png_dir=os.path.join(stage_dir, "attention"),
        labels=data.viz_labels,
        class_names=data.info.class_names,
      )
    )
  if cfg.early_stopping > 0:
    callbacks.append(
      keras.callbacks.EarlyStopping(monitor="val_supervised_loss", mode="min", patience=cfg.early_stopping)
    )
  callbacks.extend(extra_callbacks)

  print(
    f"[{stage.name}] schedule={stage.schedule} epochs={stage.epochs} steps/epoch={stage.steps_per_epoch} "
    f"lr={stage.lr:g} labeled={len(data.plan.labeled)} unlabeled={len(data.plan.unlabeled)} "
    f"-> {stage_dir}",
    flush=True,
  )
  start = time.time()
  model.fit(
    stage_dataset(stage, data, cfg),
    epochs=stage.epochs,
    steps_per_epoch=stage.steps_per_epoch,
    validation_data=distribution.shard_by_data(data.validation),
    callbacks=callbacks,
    verbose=cfg.verbose,
    shuffle=False,
  )
  if not os.path.isfile(best_path):  # every validation loss was NaN: keep the last weights
    model.save(best_path)
  with strategy.scope():
    best = keras.saving.load_model(best_path, compile=False)
  best_epoch_loss = best_logged(csv_path)
  best_is_start = best_epoch_loss is None or not best_epoch_loss < start_loss
  if best_is_start:
    print(
      f"[{stage.name}] no epoch beat the starting weights on validation (supervised loss {start_loss:.4f} at "
      f"the start, {best_epoch_loss if best_epoch_loss is None else round(best_epoch_loss, 4)} at best): "
      "best.keras is the starting model.",
      flush=True,
    )
  summary = {
    "stage": stage.name,
    "schedule": stage.schedule,
    "epochs": _epochs_logged(csv_path),
    "steps_per_epoch": stage.steps_per_epoch,
    "lr": stage.lr,
    "start_val_supervised_loss": start_loss,
    "best_val_supervised_loss": _lowest(start_loss, best_epoch_loss),
    "best_is_start": best_is_start,
    "seconds_this_run": round(time.time() - start, 1),
    "target_layer": best.tapped.target_layer_path,
    "logits_from": best.tapped.logits_source.where or "model output",
    "guided_activations": best.tapped.guided_report.counts(),
    "unguided_layers": [list(item) for item in best.tapped.guided_report.unguided],
  }
  with open(done_path, "w") as f:
    json.dump(summary, f, indent=2)
  return _trained(best, choice), summary
