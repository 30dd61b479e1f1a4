r"""ATCON fine-tuning from the command line: data -> model -> train -> evaluate -> export.

    python -m trainers.finetune                      # offline default, < 10 min on 2 CPU cores
    python -m trainers.finetune --config=smoke       # tiny preset used by the tests (seconds)
    python -m trainers.finetune --dataset=svhn --data_dir=/data/tfds --labels_per_class=8 \
        --backbone=resnet50 --weights=imagenet --image_size=256 --batch_size=4 --lr=8e-6 \
        --schedule=two_stage --atcon_lr=2e-6 --atcon_epochs=100 --mask_intensity=20 --workdir=/runs/svhn8

Default (no flags): the synthetic `house_numbers` benchmark (config `single`, 32 px, generated offline), a
small BatchNorm ResNet trained supervised on a labelled subset, then fine-tuned with the ATCON loss
(`two_stage`, the authors' protocol, method.md §2), then a before/after evaluation table (accuracy, macro-F1,
WSD IoU, pointing game, consistency, with bootstrap 90% CIs and p-values).

The file reads top to bottom: 1. flags and presets, 2. data, 3. model, 4. training (one `fit` per stage, with
resume), 5. evaluation, 6. export, 7. `run` / `main`. `run(Config(...))` is the library entry point (bench and
tests use it); `main` only turns flags into a `Config`.

Workdir layout (`--workdir`, default /tmp/atcon_tf/finetune-<time>):
    config.json            resolved configuration, dataset info, split sizes, preprocessing
    <stage>/best.keras     lowest validation supervised loss of that stage (ModelCheckpoint)
    <stage>/history.csv    per-epoch logs (appended across resumes)
    <stage>/backup/        BackupAndRestore state while a stage runs (deleted when it finishes)
    <stage>/done.json      marks a finished stage: a rerun skips it and continues with the next one
    <stage>/attention/     PNG grids of Grad-CAM / guided backprop / mask for fixed validation images
    logs/<stage>/          TensorBoard scalars and attention image summaries
    best.keras             the final model (last stage's best), what `serving.export` picks up
    metrics.json           evaluation results, split sizes and timings (written at the end)
A rerun with the same --workdir resumes an interrupted stage where its last finished epoch left off.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import shutil
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SCHEDULES = ("supervised", "atcon", "alternating", "combining", "two_stage")
BACKBONES = ("small_resnet", "resnet50", "mobilenet_v2")
STRATEGIES = ("default", "mirrored", "multi_worker")
# Preprocessing that matches each backbone (names shared with atcon_tf.data.datasets and serving.signatures).
BACKBONE_PREPROCESSING = {"small_resnet": "imagenet_torch", "resnet50": "imagenet_caffe",
                          "mobilenet_v2": "scale_-1_1"}
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
STAGE_DONE_FILE = "done.json"

log = logging.getLogger("trainers.finetune")


# =============================================================================================== 1. flags

@dataclasses.dataclass
class Config:
  """Every knob of a run. Field defaults are the offline default run; `PRESETS` change some of them."""

  # data
  dataset: str = "house_numbers"
  house_numbers_config: str = "single"
  house_numbers_sizes: tuple = (14000, 500, 2000)  # generated train, validation, test scenes
  data_dir: str | None = None
  download: bool = False
  image_size: int = 32
  labels_per_class: int = 1000
  fully_balanced: bool = True
  unlabeled: str = "pool"
  unlabeled_limit: int = -1
  val_size: int = 500
  test_size: int = 0
  augment: str = "auto"
  seed: int = 0
  # method
  schedule: str = "two_stage"
  alpha: float = 1.0
  mask_intensity: float = 8.0
  attention: str = "gb_mask"
  similarity: str = "pearson"
  # model
  backbone: str = "small_resnet"
  weights: str = "auto"
  model: str | None = None
  target_layer: str | None = None
  resnet_width: int = 16
  resnet_blocks: tuple = (1, 1, 1)
  preprocessing: str = "auto"
  # optimisation
  epochs: int = 30
  steps_per_epoch: int = 0
  batch_size: int = 32
  unlabeled_batch_size: int = 0
  lr: float = 1e-3
  adam_epsilon: float = 1e-8
  atcon_epochs: int = 8
  atcon_steps_per_epoch: int = 25
  atcon_lr: float = 1e-5
  # distribution
  strategy: str = "default"
  cpu_devices: int = 0
  # outputs
  workdir: str = ""
  export_dir: str = ""
  export_name: str = "atcon"
  tensorboard: bool = True
  viz_every: int = 1
  num_viz_images: int = 6
  # evaluation
  evaluate: bool = True
  eval_batch_size: int = 64
  bootstrap: int = 1000
  pvalue_resamples: int = 1000
  verbose: int = 1
  config: str = "default"


PRESETS = {
    "default": {},
    # Tiny and fast: what the tests run. 16 px scenes, a 2-stage ResNet of width 4, a couple of steps.
    "smoke": dict(house_numbers_sizes=(96, 16, 32), image_size=16, labels_per_class=2, val_size=16,
                  epochs=2, steps_per_epoch=2, atcon_epochs=1, atcon_steps_per_epoch=2, batch_size=8,
                  resnet_width=4, resnet_blocks=(1, 1), eval_batch_size=32, bootstrap=20, pvalue_resamples=20,
                  num_viz_images=2, lr=1e-2, atcon_lr=1e-3),
}


def define_flags(flag_values=None):
  """Defines the trainer's absl flags (call once, before parsing) in `flag_values` (default: absl's FLAGS)."""
  import functools

  from absl import flags as absl_flags

  fv = flag_values if flag_values is not None else absl_flags.FLAGS

  class _Bound:  # absl's DEFINE_* functions with flag_values=fv bound, so the calls below stay readable
    def __getattr__(self, name):
      return functools.partial(getattr(absl_flags, name), flag_values=fv)

  flags = _Bound()
  d = Config()
  # Data.
  flags.DEFINE_string("config", "default", f"Preset of defaults: {sorted(PRESETS)}. Flags given explicitly "
                      "override the preset ('smoke' = tiny settings used by the tests).")
  flags.DEFINE_string("dataset", d.dataset, "house_numbers (synthetic, offline), svhn (tfds svhn_cropped), "
                      "voc2007 / voc2012 (tfds voc, multi-label, boxes), or folder:PATH (one sub-folder per "
                      "class; PATH/train + PATH/test used if present).")
  flags.DEFINE_enum("house_numbers_config", d.house_numbers_config, ["single", "multi"],
                    "house_numbers scenes: single (one digit + non-digit distractors) or multi (1-3 digits, "
                    "multi-label, VOC-like).")
  flags.DEFINE_list("house_numbers_sizes", list(map(str, d.house_numbers_sizes)),
                    "house_numbers scenes to generate: TRAIN,VALIDATION,TEST (cached per size in data_dir).")
  flags.DEFINE_string("data_dir", None, "tfds data_dir holding prepared data (svhn/voc) and where house_numbers "
                      "is generated. Default: tfds' ~/tensorflow_datasets.")
  flags.DEFINE_boolean("download", d.download, "Let tfds try to download svhn/voc (impossible offline; the "
                       "error message says how to prepare the data elsewhere).")
  flags.DEFINE_integer("image_size", d.image_size, "Square input size; images are resized (aspect not kept).")
  flags.DEFINE_integer("labels_per_class", d.labels_per_class, "N labelled training images per class "
                       "(single-label: first N per class in a --seed order; multi-label: the authors' greedy "
                       "balanced rule). 0 = label every training image.")
  flags.DEFINE_boolean("fully_balanced", d.fully_balanced, "Multi-label only: take only single-label images so "
                       "every class has exactly N (the authors' FULLY_BALANCED); false: multi-label images "
                       "allowed with a per-class cap of N.")
  flags.DEFINE_enum("unlabeled", d.unlabeled, ["pool", "labeled"], "Images for the ATCON loss: pool = the rest "
                    "of the training split; labeled = the labelled images only (the authors' fine-tuning "
                    "scripts, USE_NEW_UNSUPERVISED=False).")
  flags.DEFINE_integer("unlabeled_limit", d.unlabeled_limit, "Use at most this many pool images (-1: all).")
  flags.DEFINE_integer("val_size", d.val_size, "Validation images for model selection. svhn/voc/folders: carved "
                       "from the TRAINING split (never from test); house_numbers: the first K of its own "
                       "validation split.")
  flags.DEFINE_integer("test_size", d.test_size, "Evaluate on the first K test images (0: all).")
  flags.DEFINE_enum("augment", d.augment, ["auto", "none", "digits", "flip", "voc"], "Training augmentation; "
                    "auto: house_numbers/svhn -> digits (colour inversion, channel permutation, shifts), voc -> "
                    "voc (random resized crop + flip), folders -> none.")
  flags.DEFINE_integer("seed", d.seed, "Seed for the labelled subset, validation carve-out, weight init, "
                       "shuffling.")
  # Method.
  flags.DEFINE_enum("schedule", d.schedule, list(SCHEDULES), "supervised | atcon (unsupervised fine-tuning) | "
                    "alternating (alpha = labelled oversampling) | combining (L_sup + alpha L_atcon) | "
                    "two_stage (supervised, then ATCON from the best supervised checkpoint: the paper's "
                    "protocol).")
  flags.DEFINE_float("alpha", d.alpha, "alternating: labelled-set oversampling factor; combining: weight of "
                     "the ATCON loss (method.md §2).")
  flags.DEFINE_float("mask_intensity", d.mask_intensity, "w of the soft mask sigmoid(w (G - sigma)); the "
                     "authors used 8, 20, 40, 100 (watch mask_logit_std in the logs).")
  flags.DEFINE_enum("attention", d.attention, ["gb_mask", "gb_map", "gb_pooled", "cam_mask", "smoothgrad",
                                               "ig_mask"], "ATCON loss variant (gb_mask = the paper's).")
  flags.DEFINE_enum("similarity", d.similarity, ["pearson", "cross_correlation", "ssim"], "Map similarity.")
  # Model.
  flags.DEFINE_enum("backbone", d.backbone, list(BACKBONES), "small_resnet (CPU-sized, BatchNorm) or "
                    "keras.applications resnet50 / mobilenet_v2 with a new GAP + Dense head.")
  flags.DEFINE_string("weights", d.weights, "resnet50/mobilenet_v2 weights: imagenet | none | PATH to a Keras "
                      "no-top .h5 weights file. auto = imagenet for those, random init for small_resnet.")
  flags.DEFINE_string("model", None, "Import an existing Keras model (PATH.keras/.h5, or a trainer's "
                      "best.keras) instead of building a backbone. Must output one logit per class.")
  flags.DEFINE_string("target_layer", None, "Grad-CAM layer (default: last spatial layer, e.g. "
                      "conv5_block3_out for resnet50).")
  flags.DEFINE_integer("resnet_width", d.resnet_width, "small_resnet: filters of the first stage.")
  flags.DEFINE_list("resnet_blocks", list(map(str, d.resnet_blocks)), "small_resnet: residual blocks per "
                    "stage; the Grad-CAM map is image_size / 2**(stages-1).")
  flags.DEFINE_enum("preprocessing", d.preprocessing, ["auto", "imagenet_torch", "imagenet_caffe", "scale_-1_1",
                                                       "scale_0_1", "none"],
                    "Pixels -> model input. auto: matched to the backbone (small_resnet: imagenet_torch, "
                    "resnet50: imagenet_caffe, mobilenet_v2: scale_-1_1; --model: its config.json).")
  # Optimisation.
  flags.DEFINE_integer("epochs", d.epochs, "Epochs of the (first) stage.")
  flags.DEFINE_integer("steps_per_epoch", d.steps_per_epoch, "Steps per epoch; 0 = the authors' rule for the "
                       "schedule (supervised/combining S/bs, atcon U/ubs, alternating alpha S/bs + U/ubs).")
  flags.DEFINE_integer("batch_size", d.batch_size, "Global labelled batch size (the authors: 4).")
  flags.DEFINE_integer("unlabeled_batch_size", d.unlabeled_batch_size, "ATCON batch size (0: batch_size).")
  flags.DEFINE_float("lr", d.lr, "Adam learning rate of the (first) stage; constant, as the authors.")
  flags.DEFINE_float("adam_epsilon", d.adam_epsilon, "Adam epsilon (PyTorch default 1e-8; Keras' is 1e-7).")
  flags.DEFINE_integer("atcon_epochs", d.atcon_epochs, "two_stage: epochs of the ATCON stage.")
  flags.DEFINE_integer("atcon_steps_per_epoch", d.atcon_steps_per_epoch, "two_stage: ATCON steps per epoch "
                       "(0: U/ubs).")
  flags.DEFINE_float("atcon_lr", d.atcon_lr, "two_stage: learning rate of the ATCON stage.")
  # Distribution.
  flags.DEFINE_enum("strategy", d.strategy, list(STRATEGIES), "tf.distribute strategy: default (one device), "
                    "mirrored (all local GPUs, or --cpu_devices logical CPUs), multi_worker (TF_CONFIG).")
  flags.DEFINE_integer("cpu_devices", d.cpu_devices, "Split the CPU into this many logical devices (to run "
                       "--strategy=mirrored on a CPU-only machine); 0 = leave as is.")
  # Outputs.
  flags.DEFINE_string("workdir", d.workdir, "Run folder (checkpoints, best.keras, TensorBoard logs, "
                      "metrics.json). Rerun with the same folder to resume. Default: "
                      "/tmp/atcon_tf/finetune-<time>.")
  flags.DEFINE_string("export_dir", d.export_dir, "If set, export best.keras for TF Serving with "
                      "serving.export.export_model to EXPORT_DIR/EXPORT_NAME/VERSION.")
  flags.DEFINE_string("export_name", d.export_name, "Model name of the export.")
  flags.DEFINE_boolean("tensorboard", d.tensorboard, "Write TensorBoard scalars and attention images.")
  flags.DEFINE_integer("viz_every", d.viz_every, "Attention image summaries / PNGs every N epochs (0: never).")
  flags.DEFINE_integer("num_viz_images", d.num_viz_images, "Validation images shown in the attention grids.")
  # Evaluation.
  flags.DEFINE_boolean("evaluate", d.evaluate, "Evaluate on the test split at the end (before/after table).")
  flags.DEFINE_integer("eval_batch_size", d.eval_batch_size, "Batch size of the evaluation.")
  flags.DEFINE_integer("bootstrap", d.bootstrap, "Bootstrap resamples for the 90% CIs.")
  flags.DEFINE_integer("pvalue_resamples", d.pvalue_resamples, "Resamples of the bootstrap p-values.")
  flags.DEFINE_integer("verbose", d.verbose, "Keras verbosity: 1 progress bars, 2 one line per epoch, 0 none.")


def config_from_flags(flag_values=None) -> Config:
  """Config from parsed flags: preset values, then every flag given explicitly on the command line."""
  from absl import flags

  fv = flag_values or flags.FLAGS
  if fv.config not in PRESETS:
    raise ValueError(f"Unknown --config={fv.config!r}; choose one of {sorted(PRESETS)}.")
  values = dataclasses.asdict(Config())
  values.update(PRESETS[fv.config])
  for field in dataclasses.fields(Config):
    if field.name in fv and (fv[field.name].present or field.name == "config"):
      values[field.name] = fv[field.name].value
  values["house_numbers_sizes"] = tuple(int(v) for v in values["house_numbers_sizes"])
  values["resnet_blocks"] = tuple(int(v) for v in values["resnet_blocks"])
  return Config(**values)


def preset(name: str = "default", **overrides) -> Config:
  """A Config from a preset plus overrides (the Python twin of `--config=NAME --flag=value`)."""
  values = dataclasses.asdict(Config())
  values.update(PRESETS[name])
  values.update(overrides, config=name)
  return Config(**values)


# ================================================================================================ 2. data

@dataclasses.dataclass
class Data:
  info: object  # datasets.DatasetInfo
  splits: object  # datasets.Splits
  plan: object  # subsets.SplitPlan
  preprocessing: str
  augment: str
  labeled: object  # tf.data: (x, y) batches, infinite
  unlabeled: object  # tf.data: x batches, infinite (None when there is no pool)
  validation: object  # tf.data: (x, y) batches, finite
  validation_source: object  # (Source, indices) of the validation images
  test_source: object  # (Source, indices) of the test images
  viz_images: object  # uint8 validation images for the attention pictures
  viz_labels: object
  sizes: dict


def resolve_augment(cfg: Config) -> str:
  if cfg.augment != "auto":
    return cfg.augment
  if cfg.dataset.startswith("voc"):
    return "voc"
  return "digits" if cfg.dataset in ("house_numbers", "svhn") else "none"


def _pipeline(source, indices, preprocessing, augment, batch_size, seed, with_labels=True, cache=True):
  """Infinite, shuffled, batched training pipeline of (x, y) or x, from canonical elements."""
  import tensorflow as tf

  from atcon_tf.data import datasets

  ds = source.dataset(indices)
  ds = ds.map(lambda e: (e["image"], e["label"]), num_parallel_calls=tf.data.AUTOTUNE)
  if cache:
    ds = ds.cache()
  ds = ds.shuffle(min(len(indices), 20000), seed=seed, reshuffle_each_iteration=True).repeat()

  def finish(image, label):
    x = datasets.preprocess(datasets.augment(image, augment), preprocessing)
    return (x, label) if with_labels else x

  ds = ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def _cacheable(count, image_size, limit_mb=2048):
  return count * image_size * image_size * 3 < limit_mb * 2 ** 20


def prepare_data(cfg: Config, preprocessing: str, num_replicas: int = 1) -> Data:
  """Loads the dataset, draws the labelled / unlabelled / validation split and builds the pipelines.

  num_replicas > 1: validation batches are all full (drop_remainder), because a partial last batch would hand
  some replicas an empty batch, which the ATCON test step cannot take.
  """
  import numpy as np
  import tensorflow as tf

  from atcon_tf.data import datasets, subsets

  sizes = dict(zip(("train", "validation", "test"), cfg.house_numbers_sizes))
  splits = datasets.load(cfg.dataset, cfg.image_size, data_dir=cfg.data_dir,
                         house_numbers_config=cfg.house_numbers_config, house_numbers_sizes=sizes,
                         download=cfg.download)
  info = splits.info
  carve = 0 if splits.validation is not None else cfg.val_size
  plan = subsets.plan_splits(
      splits.train.labels, cfg.labels_per_class, seed=cfg.seed, multi_label=info.multi_label,
      fully_balanced=cfg.fully_balanced, validation_size=carve, unlabeled_mode=cfg.unlabeled,
      unlabeled_limit=None if cfg.unlabeled_limit < 0 else cfg.unlabeled_limit, num_classes=info.num_classes)
  if len(plan.labeled) == 0:
    raise ValueError("The labelled subset is empty: check --labels_per_class and the dataset.")
  if splits.validation is not None:
    n_val = splits.validation.num_examples if cfg.val_size <= 0 else min(cfg.val_size,
                                                                         splits.validation.num_examples)
    validation_source = (splits.validation, np.arange(n_val))
  else:
    validation_source = (splits.train, plan.validation)
  n_test = splits.test.num_examples if cfg.test_size <= 0 else min(cfg.test_size, splits.test.num_examples)
  test_source = (splits.test, np.arange(n_test))

  augment = resolve_augment(cfg)
  batch = min(cfg.batch_size, len(plan.labeled))
  ubs = cfg.unlabeled_batch_size or cfg.batch_size
  labeled = _pipeline(splits.train, plan.labeled, preprocessing, augment, batch, cfg.seed)
  unlabeled = None
  if len(plan.unlabeled):
    unlabeled = _pipeline(splits.train, plan.unlabeled, preprocessing, augment, min(ubs, len(plan.unlabeled)),
                          cfg.seed + 1, with_labels=False,
                          cache=_cacheable(len(plan.unlabeled), cfg.image_size))
  val_src, val_idx = validation_source
  if len(val_idx) < num_replicas:
    raise ValueError("The validation set is empty: model selection needs --val_size > 0.")
  val_batch, val_batches = cfg.eval_batch_size, -(-len(val_idx) // cfg.eval_batch_size)
  if num_replicas > 1:
    val_batch = max(num_replicas, min(val_batch, len(val_idx)) // num_replicas * num_replicas)
    val_batches = len(val_idx) // val_batch
  validation = (val_src.dataset(val_idx)
                .map(lambda e: (datasets.preprocess(e["image"], preprocessing), e["label"]),
                     num_parallel_calls=tf.data.AUTOTUNE)
                .cache().batch(val_batch, drop_remainder=num_replicas > 1)
                .apply(tf.data.experimental.assert_cardinality(val_batches))
                .prefetch(tf.data.AUTOTUNE))
  viz = list(val_src.dataset(val_idx).take(cfg.num_viz_images).as_numpy_iterator()) if cfg.num_viz_images else []
  viz_images = np.stack([e["image"] for e in viz]) if viz else None
  viz_labels = np.stack([e["label"] for e in viz]) if viz else None
  split_sizes = dict(plan.summary(), validation=int(min(len(val_idx), val_batch * val_batches)), test=int(n_test),
                     train_split=int(splits.train.num_examples),
                     validation_source="own validation split" if splits.validation is not None
                     else "carved from the training split")
  return Data(info, splits, plan, preprocessing, augment, labeled, unlabeled, validation, validation_source,
              test_source, viz_images, viz_labels, split_sizes)


# =============================================================================================== 3. model

class WeightsUnavailableError(RuntimeError):
  """Pretrained weights are not in the Keras cache and cannot be downloaded here."""


_APPLICATIONS = {
    "resnet50": ("ResNet50", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "mobilenet_v2": ("MobileNetV2", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"),
}


def _application(cfg: Config, num_classes: int):
  import keras

  fn_name, weights_file = _APPLICATIONS[cfg.backbone]
  weights = {"auto": "imagenet", "imagenet": "imagenet", "none": None}.get(cfg.weights, cfg.weights)
  if weights not in (None, "imagenet") and not os.path.isfile(weights):
    raise FileNotFoundError(f"--weights={weights!r}: no such file (expected imagenet, none or a .h5 path).")
  try:
    base = getattr(keras.applications, fn_name)(include_top=False, weights=weights,
                                                input_shape=(cfg.image_size, cfg.image_size, 3))
  except Exception as error:  # noqa: BLE001 - a failed download surfaces as several exception types
    if weights != "imagenet":
      raise
    cache = os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "models")
    raise WeightsUnavailableError(
        f"ImageNet weights for {cfg.backbone} are not cached and cannot be downloaded here ({error}).\n"
        f"On a machine with internet run: python -c \"import keras; keras.applications.{fn_name}("
        f"include_top=False, weights='imagenet')\", then copy ~/.keras/models/{weights_file} to "
        f"{cache}/ on this machine, or pass --weights=/path/to/{weights_file}; or --weights=none for a random "
        "initialisation.") from error
  x = keras.layers.GlobalAveragePooling2D(name="gap")(base.output)
  # PyTorch's Linear init (the authors' new head): U(+-1/sqrt(fan_in)) for weights and bias.
  limit = 1.0 / base.output.shape[-1] ** 0.5
  outputs = keras.layers.Dense(
      num_classes, kernel_initializer=keras.initializers.RandomUniform(-limit, limit, seed=cfg.seed),
      bias_initializer=keras.initializers.RandomUniform(-limit, limit, seed=cfg.seed + 1), name="logits")(x)
  # One flat functional graph: the Grad-CAM layer (conv5_block3_out / out_relu) is found by name.
  return keras.Model(base.input, outputs, name=f"{cfg.backbone}_atcon")


def resolve_preprocessing(cfg: Config) -> str:
  """The preprocessing the model expects (see --preprocessing)."""
  if cfg.preprocessing != "auto":
    return cfg.preprocessing
  if cfg.model:
    folder = os.path.dirname(os.path.abspath(cfg.model))
    for candidate in (os.path.join(folder, CONFIG_FILE), os.path.join(os.path.dirname(folder), CONFIG_FILE)):
      if os.path.isfile(candidate):
        with open(candidate) as f:
          found = json.load(f).get("preprocessing")
        if found:
          return found
    log.warning("No config.json next to %s: assuming imagenet_torch preprocessing (set --preprocessing).",
                cfg.model)
    return "imagenet_torch"
  return BACKBONE_PREPROCESSING[cfg.backbone]


def build_classifier(cfg: Config, num_classes: int):
  """The classifier to fine-tune: an imported model, a keras.applications backbone or the small ResNet."""
  import keras

  import atcon_tf
  from atcon_tf import testing

  if cfg.model:
    model = atcon_tf.load_classifier(cfg.model)
    model = getattr(model, "classifier", model)  # a trainer's best.keras is an ATCONModel
    outputs = model.output_shape[-1] if hasattr(model, "output_shape") else None
    if outputs is not None and outputs != num_classes:
      raise ValueError(f"--model has {outputs} outputs but the dataset has {num_classes} classes.")
    return model
  keras.utils.set_random_seed(cfg.seed)
  if cfg.backbone == "small_resnet":
    if cfg.weights == "imagenet":
      raise ValueError("small_resnet has no ImageNet weights: use --weights=auto/none, or a .weights.h5 PATH.")
    model = testing.small_resnet(cfg.image_size, num_classes, width=cfg.resnet_width,
                                 blocks=tuple(cfg.resnet_blocks), seed=cfg.seed)
    if cfg.weights not in ("auto", "none"):
      model.load_weights(cfg.weights)  # a small_resnet of the same shape saved with save_weights
    return model
  return _application(cfg, num_classes)


def make_atcon_model(classifier, cfg: Config, schedule: str, multi_label: bool, lr: float, target_layer=None):
  """Wraps the classifier (weights shared) in an ATCONModel for one schedule and compiles it."""
  import keras
  import numpy as np

  import atcon_tf

  model = atcon_tf.ATCONModel(classifier, target_layer=target_layer or cfg.target_layer, schedule=schedule,
                              alpha=cfg.alpha, multi_label=multi_label, attention=cfg.attention,
                              similarity=cfg.similarity, mask_intensity=cfg.mask_intensity)
  metrics = None
  if schedule != "atcon":  # ATCON batches carry no labels: Keras could not build a label metric from them
    metrics = [keras.metrics.BinaryAccuracy(name="accuracy") if multi_label
               else keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
  model.compile(optimizer=keras.optimizers.Adam(lr, epsilon=cfg.adam_epsilon), metrics=metrics)
  x = np.zeros((1, cfg.image_size, cfg.image_size, 3), np.float32)
  model(x)  # BackupAndRestore needs a built model
  return model


# ============================================================================================ 4. training

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
    raise ValueError(f"--schedule={cfg.schedule} needs unlabelled images but the pool is empty "
                     "(use --unlabeled=labeled, or fewer --labels_per_class).")
  if cfg.schedule == "two_stage":
    return [Stage("supervised", "supervised", cfg.epochs, cfg.lr, steps("supervised", cfg.steps_per_epoch)),
            Stage("atcon", "atcon", cfg.atcon_epochs, cfg.atcon_lr, steps("atcon", cfg.atcon_steps_per_epoch))]
  return [Stage(cfg.schedule, cfg.schedule, cfg.epochs, cfg.lr, steps(cfg.schedule, cfg.steps_per_epoch))]


def shard_by_data(ds):
  """Multi-worker input sharding by element: every worker reads the same seeded pipeline and keeps its share
  (tfds splits are often a single file, which the default FILE sharding cannot split)."""
  import tensorflow as tf

  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  return ds.with_options(options)


def stage_dataset(stage: Stage, data: Data, cfg: Config):
  from atcon_tf import training_data

  if stage.schedule == "supervised":
    return shard_by_data(data.labeled)
  if stage.schedule == "atcon":
    return shard_by_data(data.unlabeled)
  s, u = len(data.plan.labeled), len(data.plan.unlabeled)
  if stage.schedule == "alternating":
    return shard_by_data(training_data.alternating_dataset(data.labeled, data.unlabeled, cfg.alpha, s, u,
                                                           seed=cfg.seed))
  return shard_by_data(training_data.combining_dataset(data.labeled, data.unlabeled))


def _best_logged(csv_path, monitor="val_supervised_loss"):
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


def train_stage(stage: Stage, classifier, cfg: Config, data: Data, stage_dir: str, log_dir: str, strategy,
                extra_callbacks=(), chief=True):
  """Fits one stage with resume; returns (best classifier, summary). Skips a stage marked done."""
  import keras

  import atcon_tf
  from atcon_tf import visualize
  from atcon_tf.data import datasets

  best_path = os.path.join(stage_dir, "best.keras")
  done_path = os.path.join(stage_dir, STAGE_DONE_FILE)
  if os.path.isfile(done_path) and os.path.isfile(best_path):
    print(f"[{stage.name}] already finished in {stage_dir}: loading its best.keras", flush=True)
    with strategy.scope():
      best = keras.saving.load_model(best_path, compile=False)
    with open(done_path) as f:
      return best.classifier, json.load(f)

  os.makedirs(stage_dir, exist_ok=True)
  csv_path = os.path.join(stage_dir, "history.csv")
  with strategy.scope():
    model = make_atcon_model(classifier, cfg, stage.schedule, data.info.multi_label, stage.lr)
  callbacks = [
      keras.callbacks.BackupAndRestore(os.path.join(stage_dir, "backup")),
      keras.callbacks.ModelCheckpoint(best_path, monitor="val_supervised_loss", mode="min", save_best_only=True,
                                      initial_value_threshold=_best_logged(csv_path), verbose=0),
      keras.callbacks.CSVLogger(csv_path, append=True),
  ]
  if cfg.tensorboard and chief:
    callbacks.append(keras.callbacks.TensorBoard(log_dir, write_graph=False))
  if cfg.viz_every > 0 and data.viz_images is not None and chief:
    callbacks.append(visualize.AttentionMapCallback(
        data.viz_images, datasets.preprocess(data.viz_images, data.preprocessing).numpy(),
        log_dir if cfg.tensorboard else os.path.join(stage_dir, "tb_unused"), every_n_epochs=cfg.viz_every,
        png_dir=os.path.join(stage_dir, "attention"), labels=data.viz_labels,
        class_names=data.info.class_names))
  callbacks.extend(extra_callbacks)

  print(f"[{stage.name}] schedule={stage.schedule} epochs={stage.epochs} steps/epoch={stage.steps_per_epoch} "
        f"lr={stage.lr:g} labelled={len(data.plan.labeled)} unlabelled={len(data.plan.unlabeled)} "
        f"-> {stage_dir}", flush=True)
  start = time.time()
  model.fit(stage_dataset(stage, data, cfg), epochs=stage.epochs, steps_per_epoch=stage.steps_per_epoch,
            validation_data=shard_by_data(data.validation), callbacks=callbacks, verbose=cfg.verbose, shuffle=False)
  if not os.path.isfile(best_path):  # every validation loss was NaN: keep the last weights
    model.save(best_path)
  with strategy.scope():
    best = keras.saving.load_model(best_path, compile=False)
  summary = {"stage": stage.name, "schedule": stage.schedule, "epochs": _epochs_logged(csv_path),
             "steps_per_epoch": stage.steps_per_epoch, "lr": stage.lr,
             "best_val_supervised_loss": _best_logged(csv_path), "seconds_this_run": round(time.time() - start, 1),
             "target_layer": best.tapped.target_layer_path}
  with open(done_path, "w") as f:
    json.dump(summary, f, indent=2)
  assert isinstance(best, atcon_tf.ATCONModel)
  return best.classifier, summary


# ============================================================================================ 5. evaluation

def evaluate_run(cfg: Config, data: Data, models: dict, workdir: str):
  """Evaluates the named model files on the test images; prints the table, returns the results dict."""
  from trainers import evaluate

  source, indices = data.test_source
  print(f"\nEvaluating {', '.join(models)} on {len(indices)} test images of {data.info.name} ...", flush=True)
  options = evaluate.EvalOptions(
      batch_size=cfg.eval_batch_size, bootstrap=cfg.bootstrap, pvalue_resamples=cfg.pvalue_resamples,
      mask_intensity=cfg.mask_intensity, attention=cfg.attention, similarity=cfg.similarity, seed=cfg.seed)
  results = evaluate.evaluate_models(models, source.dataset(indices), data.info, data.preprocessing, options,
                                     grid_path=os.path.join(workdir, "eval_grid.png"))
  print(evaluate.format_table(results), flush=True)
  return results


# ================================================================================================ 6. export

def export(cfg: Config, workdir: str, preprocessing: str):
  """Exports workdir/best.keras with serving.export.export_model, if the serving package provides it."""
  try:
    from serving import export as serving_export  # imported lazily: atcon_tf never depends on serving
  except ImportError as error:
    log.warning("--export_dir given but serving.export cannot be imported (%s): export skipped.", error)
    return None
  export_model = getattr(serving_export, "export_model", None)
  if export_model is None:
    log.warning("--export_dir given but serving.export has no export_model: export skipped.")
    return None
  path = export_model(os.path.join(workdir, "best.keras"), cfg.export_dir, cfg.export_name,
                      image_size=cfg.image_size, preprocessing=preprocessing, mask_intensity=cfg.mask_intensity)
  print(f"Exported for TF Serving to {path}", flush=True)
  return path


# ================================================================================================== 7. run

def make_strategy(cfg: Config):
  import tensorflow as tf

  if cfg.cpu_devices > 0:
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] *
                                               cfg.cpu_devices)
  if cfg.strategy == "default":
    return tf.distribute.get_strategy()
  if cfg.strategy == "mirrored":
    devices = None
    if not tf.config.list_logical_devices("GPU") and cfg.cpu_devices > 0:
      devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=devices)
  if cfg.strategy == "multi_worker":
    if "TF_CONFIG" not in os.environ:
      raise ValueError("--strategy=multi_worker needs the TF_CONFIG environment variable (cluster + task).")
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise ValueError(f"Unknown --strategy={cfg.strategy!r}; choose one of {STRATEGIES}.")


def _is_chief(strategy) -> bool:
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not getattr(resolver, "task_type", None):
    return True
  cluster = resolver.cluster_spec().as_dict()
  if "chief" in cluster:
    return resolver.task_type == "chief"
  return resolver.task_type == "worker" and resolver.task_id == 0


def _default_workdir():
  return os.path.join("/tmp/atcon_tf", "finetune-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))


def run(cfg: Config, extra_callbacks=()) -> dict:
  """Runs the whole pipeline for `cfg`; returns the contents of metrics.json."""
  import keras
  import tensorflow as tf

  start = time.time()
  strategy = make_strategy(cfg)
  chief = _is_chief(strategy)
  workdir = cfg.workdir or _default_workdir()
  if not chief:  # non-chief workers write their (identical) checkpoints to a scratch folder
    workdir = os.path.join(workdir, f"worker-{strategy.cluster_resolver.task_id}")
  os.makedirs(workdir, exist_ok=True)
  keras.utils.set_random_seed(cfg.seed)
  preprocessing = resolve_preprocessing(cfg)
  print(f"workdir: {workdir}\npreparing data: {cfg.dataset} ...", flush=True)
  data = prepare_data(cfg, preprocessing, strategy.num_replicas_in_sync)
  print(f"data ready ({time.time() - start:.0f} s): {data.info.name}, {data.sizes}", flush=True)

  with strategy.scope():
    classifier = build_classifier(cfg, data.info.num_classes)
  stages = plan_stages(cfg, data)
  config_json = {"config": dataclasses.asdict(cfg), "workdir": workdir, "preprocessing": preprocessing,
                 "augment": data.augment, "dataset": data.info.to_json(), "split_sizes": data.sizes,
                 "stages": [dataclasses.asdict(s) for s in stages], "num_replicas": strategy.num_replicas_in_sync,
                 "tensorflow": tf.__version__, "keras": keras.__version__}
  with open(os.path.join(workdir, CONFIG_FILE), "w") as f:
    json.dump(config_json, f, indent=2, default=str)

  # The model before any training of this run, for before/after tables of fine-tuning runs.
  models = {}
  if cfg.schedule == "atcon":
    initial = os.path.join(workdir, "initial.keras")
    if not os.path.isfile(initial):
      with strategy.scope():
        make_atcon_model(classifier, cfg, "supervised", data.info.multi_label, cfg.lr).save(initial)
    models["before (imported)"] = initial

  summaries = []
  for stage in stages:
    stage_dir = os.path.join(workdir, stage.name) if len(stages) > 1 else workdir
    classifier, summary = train_stage(stage, classifier, cfg, data, stage_dir,
                                      os.path.join(workdir, "logs", stage.name), strategy, extra_callbacks, chief)
    summaries.append(summary)
    if len(stages) > 1:
      models[f"{stage.name} (stage {len(summaries)})"] = os.path.join(stage_dir, "best.keras")
  final_best = os.path.join(workdir, "best.keras")
  if len(stages) > 1:
    shutil.copyfile(os.path.join(workdir, stages[-1].name, "best.keras"), final_best)
  else:
    models[f"{stages[0].name}"] = final_best
  train_seconds = time.time() - start

  results = {}
  if cfg.evaluate and chief:
    results = evaluate_run(cfg, data, models, workdir)
  export_path = export(cfg, workdir, preprocessing) if cfg.export_dir and chief else None
  metrics = {"config": dataclasses.asdict(cfg), "dataset": data.info.name, "split_sizes": data.sizes,
             "preprocessing": preprocessing, "stages": summaries, "models": models, "evaluation": results,
             "export": export_path, "seconds": {"train": round(train_seconds, 1),
                                                "total": round(time.time() - start, 1)}}
  with open(os.path.join(workdir, METRICS_FILE), "w") as f:
    json.dump(metrics, f, indent=2, default=_json_default)
  _barrier(strategy)
  print(f"\nDone in {time.time() - start:.0f} s. Results: {os.path.join(workdir, METRICS_FILE)}", flush=True)
  return metrics


def _barrier(strategy):
  """Multi-worker: every worker waits here until the chief has evaluated and exported (a worker that exits
  early makes the chief's coordination service report the cluster as crashed)."""
  import tensorflow as tf

  if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)


def _json_default(value):
  import numpy as np

  if isinstance(value, (np.integer,)):
    return int(value)
  if isinstance(value, (np.floating,)):
    return float(value)
  if isinstance(value, np.ndarray):
    return value.tolist()
  return str(value)


def main(argv):
  from atcon_tf.data.datasets import DataUnavailableError

  if len(argv) > 1:
    raise SystemExit(f"Unexpected arguments: {argv[1:]}")
  try:
    run(config_from_flags())
  except (DataUnavailableError, WeightsUnavailableError) as error:  # what to do, without a traceback
    raise SystemExit(f"ERROR: {error}") from None


if __name__ == "__main__":
  from absl import app

  define_flags()
  app.run(main)
  sys.exit(0)
