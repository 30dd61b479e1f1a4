r"""ATCON fine-tuning from the command line: data -> model -> train -> evaluate -> export.

    python -m trainers.finetune                      # offline default, < 10 min on 2 CPU cores
    python -m trainers.finetune --config=smoke       # tiny preset used by the tests (seconds)
    python -m trainers.finetune --dataset=svhn --data_dir=/data/tfds --labels_per_class=8 \
        --backbone=resnet50 --weights=imagenet --image_size=256 --batch_size=4 --lr=8e-6 \
        --schedule=two_stage --atcon_lr=2e-6 --atcon_epochs=100 --mask_intensity=20 --workdir=/runs/svhn8

Default (no flags): the synthetic `house_numbers` benchmark (config `single`, 32 px, generated offline), a
small BatchNorm ResNet trained supervised on a labeled subset, then fine-tuned with the ATCON loss
(`two_stage`, the authors' protocol, docs/method.md), then a before/after evaluation table (accuracy, macro-F1,
WSD IoU, pointing game, deletion / insertion AUC of the maps, consistency, with bootstrap 90% CIs and
p-values).

`run(cfg)` reads as the pipeline; each step lives in its own module: `config` (the Config and its flags),
`data` (splits and pipelines), `models` (the classifier and its preprocessing), `stages` (resumable fits),
`distribution` (tf.distribute), `evaluation` (the before/after table), `serving.export` (the export).
`run(Config(...))` is the library entry point (bench and tests use it); `main` only turns flags into a Config.

Workdir layout (`--workdir`, default /tmp/atcon_tf/finetune-<time>):
    config.json            resolved configuration, dataset info, split sizes, preprocessing
    <stage>/best.keras     lowest validation supervised loss of that stage (ModelCheckpoint)
    <stage>/history.csv    per-epoch logs (appended across resumes)
    <stage>/backup/        BackupAndRestore state while a stage runs (deleted when it finishes)
    <stage>/done.json      marks a finished stage: a rerun skips it and continues with the next one
    <stage>/attention/     PNG grids of Grad-CAM / guided backprop / mask for fixed validation images
    logs/<stage>/          TensorBoard scalars and attention image summaries
    best.keras             the final model (last stage's best) with its serving contract: `serving.export
                           --model=WORKDIR` needs no other flag
    metrics.json           evaluation results, split sizes and timings (written at the end)
A rerun with the same --workdir resumes an interrupted stage where its last finished epoch left off.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import shutil
import sys
import time

from atcon_tf import quiet

quiet.tensorflow_logs()  # before TensorFlow is imported: no CUDA / oneDNN start-up noise

from trainers import config as config_lib  # noqa: E402
from trainers import data as data_lib  # noqa: E402
from trainers import distribution  # noqa: E402
from trainers import models  # noqa: E402
from trainers import results as results_lib  # noqa: E402
from trainers import stages as stages_lib  # noqa: E402

Config, preset = config_lib.Config, config_lib.preset
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"


def evaluation_options(cfg: Config):
  """The evaluator's knobs, taken from the run's Config (loss settings come from the saved models)."""
  from trainers import evaluation

  return evaluation.EvalOptions(
    batch_size=cfg.eval_batch_size,
    bootstrap=cfg.bootstrap,
    pvalue_resamples=cfg.pvalue_resamples,
    pvalue_test=cfg.pvalue_test,
    absent_classes=cfg.absent_classes,
    seed=cfg.seed,
    faithfulness_steps=cfg.faithfulness_steps,
    faithfulness_images=cfg.faithfulness_images,
    faithfulness_baseline=cfg.faithfulness_baseline,
  )


def evaluate_run(cfg: Config, data, models_to_compare: dict, workdir: str):
  """Evaluates the named model files on the test images; prints the table, returns the results dict."""
  from trainers import evaluation

  source, indices = data.test_source
  print(
    f"\nEvaluating {', '.join(models_to_compare)} on {len(indices)} test images of {data.info.name} ...",
    flush=True,
  )
  options = evaluation_options(cfg)
  results = evaluation.evaluate_models(
    models_to_compare,
    source.dataset(indices),
    data.info,
    options=options,
    grid_path=os.path.join(workdir, "eval_grid.png"),
    grid_positions=data_lib.picture_positions(source, indices, options.num_grid_images),
  )
  print(evaluation.format_table(results), flush=True)
  return results


def export(cfg: Config, workdir: str):
  """Exports workdir/best.keras for TF Serving: everything it needs is recorded in the model."""
  from serving import export as serving_export

  path = serving_export.export_model(os.path.join(workdir, "best.keras"), cfg.export_dir, cfg.export_name)
  print(f"Exported for TF Serving to {path}", flush=True)
  return path


def _default_workdir():
  return os.path.join("/tmp/atcon_tf", "finetune-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))


def _duration(seconds: float) -> str:
  """'42 s', '3 min 12 s', '2 h 5 min'."""
  seconds = int(round(seconds))
  if seconds < 60:
    return f"{seconds} s"
  if seconds < 3600:
    return f"{seconds // 60} min {seconds % 60} s"
  return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _progress_line(index: int, stages: list, elapsed: float, trained: list) -> str:
  """`[run] stage 2 of 2 (atcon) starting; 3 min 12 s elapsed, ...`, with an estimate of the training time
  left once a stage has been trained in this run: its measured seconds per step (validation included) times
  the planned steps of the stages left. Only an estimate: steps of another schedule cost more or less (an
  ATCON step does several forward/backward passes), and early stopping ends a stage sooner."""
  line = (
    f"[run] stage {index + 1} of {len(stages)} ({stages[index].name}) starting; {_duration(elapsed)} elapsed"
  )
  seconds = sum(t for t, _ in trained)
  steps = sum(n for _, n in trained)
  if not trained or steps <= 0:
    return line
  per_step = seconds / steps
  left = sum(s.epochs * s.steps_per_epoch for s in stages[index:])
  return (
    f"{line}, about {_duration(per_step * left)} of training left "
    f"(estimate: {left} steps at the {per_step:.3g} s/step measured so far)"
  )


def run(cfg: Config, extra_callbacks=()) -> dict:
  """Runs the whole pipeline for `cfg`; returns the contents of metrics.json."""
  import keras

  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(cfg.precision)  # new models; saved ones keep their own
  try:
    return _run(cfg, extra_callbacks)
  finally:
    keras.mixed_precision.set_global_policy(previous)


def _run(cfg: Config, extra_callbacks) -> dict:
  import keras
  import tensorflow as tf

  start = time.time()
  strategy = distribution.make_strategy(cfg)
  chief = distribution.is_chief(strategy)
  workdir = cfg.workdir or _default_workdir()
  if not chief:  # non-chief workers write their (identical) checkpoints to a scratch folder
    workdir = os.path.join(workdir, f"worker-{strategy.cluster_resolver.task_id}")
  fresh = not os.path.exists(workdir)  # removed again if the run fails before its first stage
  os.makedirs(workdir, exist_ok=True)
  try:
    keras.utils.set_random_seed(cfg.seed)

    print(f"workdir: {workdir}\npreparing data: {cfg.dataset} ...", flush=True)
    splits = data_lib.load_splits(cfg)
    with strategy.scope():
      choice = models.choose_model(cfg, splits.info.num_classes)
    data = data_lib.prepare_data(cfg, choice.preprocessing, strategy.num_replicas_in_sync, splits=splits)
    print(f"data ready ({time.time() - start:.0f} s): {data.info.name}, {data.sizes}", flush=True)
    stages = stages_lib.plan_stages(cfg, data)
    results_lib.write_json(
      os.path.join(workdir, CONFIG_FILE),
      {
        "config": dataclasses.asdict(cfg),
        "workdir": workdir,
        "preprocessing": choice.preprocessing,
        "augment": data.augment,
        "dataset": data.info.to_json(),
        "split_sizes": data.sizes,
        "stages": [dataclasses.asdict(s) for s in stages],
        "num_replicas": strategy.num_replicas_in_sync,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
      },
    )

    models_to_compare = {}
    if cfg.schedule == "atcon":  # the model before any training, for the before/after table
      initial = os.path.join(workdir, "initial.keras")
      if not os.path.isfile(initial):
        with strategy.scope():
          models.make_atcon_model(choice, cfg, "supervised", data.info, cfg.lr).save(initial)
      models_to_compare["before (imported)"] = initial
  except BaseException:
    if fresh:
      shutil.rmtree(workdir, ignore_errors=True)
    raise

  summaries = []
  trained = []  # (seconds, steps) of the stages trained in this run, for the time estimate
  for index, stage in enumerate(stages):
    stage_dir = os.path.join(workdir, stage.name) if len(stages) > 1 else workdir
    if index:
      print(_progress_line(index, stages, time.time() - start, trained), flush=True)
    skipped = os.path.isfile(os.path.join(stage_dir, stages_lib.STAGE_DONE_FILE))
    stage_start = time.time()
    choice, summary = stages_lib.train_stage(
      stage,
      choice,
      cfg,
      data,
      stage_dir,
      os.path.join(workdir, "logs", stage.name),
      strategy,
      extra_callbacks,
      chief,
    )
    summaries.append(summary)
    if not skipped:
      trained.append((time.time() - stage_start, summary["epochs"] * stage.steps_per_epoch))
    name = f"{stage.name} (stage {len(summaries)})" if len(stages) > 1 else stage.name
    models_to_compare[name] = os.path.join(stage_dir, "best.keras")
  final_best = os.path.join(workdir, "best.keras")
  if len(stages) > 1:
    shutil.copyfile(os.path.join(workdir, stages[-1].name, "best.keras"), final_best)
  train_seconds = time.time() - start

  results = evaluate_run(cfg, data, models_to_compare, workdir) if cfg.evaluate and chief else {}
  export_path = export(cfg, workdir) if cfg.export_dir and chief else None
  metrics = {
    "config": dataclasses.asdict(cfg),
    "dataset": data.info.name,
    "split_sizes": data.sizes,
    "preprocessing": choice.preprocessing,
    "stages": summaries,
    "models": models_to_compare,
    "evaluation": results,
    "export": export_path,
    "seconds": {"train": round(train_seconds, 1), "total": round(time.time() - start, 1)},
  }
  results_lib.write_json(os.path.join(workdir, METRICS_FILE), metrics)
  distribution.barrier(strategy)
  print(f"\nDone in {time.time() - start:.0f} s. Results: {os.path.join(workdir, METRICS_FILE)}", flush=True)
  return metrics


def main(argv):
  from atcon_tf.backbones import WeightsUnavailableError
  from atcon_tf.contract import ContractError
  from atcon_tf.data.folders import FolderDatasetError
  from atcon_tf.data.image_check import BadImagesError
  from atcon_tf.data.tfds_sources import DataUnavailableError
  from atcon_tf.weight_files import WeightsFileError

  if len(argv) > 1:
    raise SystemExit(f"Unexpected arguments: {argv[1:]}")
  try:
    run(config_lib.config_from_flags())
  except (  # what to do, without a traceback
    DataUnavailableError,
    WeightsUnavailableError,
    ContractError,
    FolderDatasetError,
    BadImagesError,
    WeightsFileError,
  ) as error:
    raise SystemExit(f"ERROR: {error}") from None


if __name__ == "__main__":
  from absl import app

  config_lib.define_flags()
  app.run(main)
  sys.exit(0)
