r"""Self-supervised SimCLR pretraining of a backbone on the unlabeled images of any trainer dataset.

    python -m trainers.pretrain --dataset=fashion_mnist --image_size=32 --workdir=/tmp/simclr
    python -m trainers.pretrain --config=smoke --workdir=/tmp/simclr_smoke      # tiny, what the tests run
    python -m trainers.finetune --dataset=fashion_mnist --image_size=32 --labels_per_class=16 \
        --weights=/tmp/simclr/backbone_weights.h5                               # or --model=/tmp/simclr/pretrained.keras

Why: the paper's strongest result combines ATCON with a SimCLR-pretrained backbone fine-tuned on few labels;
this builds such a backbone offline from the training split's images (labels never read). The model and loss
are in `simclr.py`; data comes from `trainers.data` like the fine-tuning runs, flags from a config dataclass
like theirs (`--config=smoke`, explicit flags win).

Workdir layout:
    config.json             resolved settings and dataset
    backup/                 BackupAndRestore state while training (a rerun resumes there; deleted at the end)
    history.csv             per-epoch loss and contrastive accuracy (appended across resumes)
    logs/                   TensorBoard scalars
    backbone_weights.h5     the encoder's weights by layer name: `trainers.finetune --weights=PATH`
    pretrained.keras        encoder + a new head for this dataset's classes, with the contract (preprocessing,
                            Grad-CAM layer, class names): `trainers.finetune --model=PATH` on the same classes
    done.json               training finished: a rerun only repeats the probe
    probe.json              linear probe (GAP features + logistic regression) of the backbone vs random init
"""

from __future__ import annotations

import datetime
import dataclasses
import json
import os
import sys
import time

from atcon_tf import quiet

quiet.tensorflow_logs()

from trainers import config as config_lib  # noqa: E402

F = config_lib.field
PretrainConfig = config_lib.command_config(
  "PretrainConfig",
  config_lib.DATA_AND_MODEL_FIELDS
  + (
    "epochs",
    "steps_per_epoch",
    "batch_size",
    "lr",
    "adam_epsilon",
    "unlabeled_limit",
    "workdir",
    "tensorboard",
    "verbose",
  ),
  [
    ("temperature", "float", F(0.5, "NT-Xent temperature (SimCLR's CIFAR setting).")),
    ("projection_dim", "int", F(64, "Output size of the projection head (hidden layer: the feature size).")),
    ("probe", "bool", F(True, "After training, probe the backbone and random init (probe.json).")),
    ("probe_layers", "str", F("", "Layers of the probe (default: the Grad-CAM layer, or gap's input).")),
    ("probe_train_size", "int", F(2000, "Training images of the probe (stratified, labeled).")),
    ("probe_test_size", "int", F(1000, "Test images of the probe (stratified).")),
  ],
  "Settings of a SimCLR pretraining run.",
  helps={
    "weights": "Initial weights of the backbone (as trainers.finetune: auto | imagenet | hed | none | PATH).",
    "epochs": "SimCLR epochs.",
    "steps_per_epoch": "Steps per epoch (0: training images / batch size).",
    "batch_size": "Images per step; each gives two views, the other 2B - 2 views are its negatives.",
    "lr": "Adam learning rate.",
    "unlabeled_limit": "Pretrain on at most this many training images, a seeded choice (-1: all).",
    "workdir": "Run folder (rerun with the same folder to resume). Default: /tmp/atcon_tf/pretrain-<time>.",
    "tensorboard": "Write TensorBoard scalars to WORKDIR/logs.",
  },
  defaults={"epochs": 20, "batch_size": 128},
)
PRESETS = {
  "default": {},
  "smoke": dict(
    house_numbers_sizes=(96, 16, 32),
    image_size=16,
    resnet_width=4,
    resnet_blocks=(1, 1),
    epochs=2,
    steps_per_epoch=2,
    batch_size=8,
    projection_dim=8,
    probe_train_size=40,
    probe_test_size=20,
  ),
}
BACKBONE_FILE, MODEL_FILE, DONE_FILE, PROBE_FILE = (
  "backbone_weights.h5",
  "pretrained.keras",
  "done.json",
  "probe.json",
)


def preset(name: str = "default", **overrides):
  """A PretrainConfig from a preset plus overrides (the Python twin of `--config=NAME --flag=value`)."""
  return PretrainConfig(**dict(PRESETS[name], config=name)).replace(**overrides)


def _pipeline(cfg, source):
  """Infinite batches of raw uint8 training images (labels dropped), shuffled with the run's seed."""
  import numpy as np
  import tensorflow as tf

  indices = np.arange(source.num_examples)
  if 0 <= cfg.unlabeled_limit < len(indices):
    indices = np.sort(np.random.default_rng(cfg.seed).permutation(indices)[: cfg.unlabeled_limit])
  ds = source.dataset(indices).map(lambda e: e["image"], num_parallel_calls=tf.data.AUTOTUNE).cache()
  ds = ds.shuffle(min(len(indices), 20000), seed=cfg.seed, reshuffle_each_iteration=True).repeat()
  return ds.batch(cfg.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE), len(indices)


def _write_json(path, value):
  with open(path, "w") as f:
    json.dump(value, f, indent=2, default=str)


def _save(cfg, workdir, classifier, encoder, info, preprocessing, target_layer, images):
  """The two outputs: layer-name backbone weights, and a contract-carrying .keras classifier."""
  import numpy as np

  import atcon_tf
  from atcon_tf import weight_files

  weight_files.save(
    os.path.join(workdir, BACKBONE_FILE),
    encoder.layers,
    method="simclr",
    backbone=cfg.backbone,
    image_size=cfg.image_size,
    preprocessing=preprocessing,
    dataset=info.name,
    images=images,
    epochs=cfg.epochs,
  )
  wrapped = atcon_tf.ATCONModel(
    classifier,
    target_layer=target_layer,
    schedule="supervised",
    multi_label=info.multi_label,
    preprocessing=preprocessing,
    class_names=info.class_names,
  )
  wrapped(np.zeros((1, cfg.image_size, cfg.image_size, 3), np.float32))
  wrapped.save(os.path.join(workdir, MODEL_FILE))


def run_probe(cfg, splits, classifier, preprocessing) -> dict:
  """Linear-probe accuracy of the pretrained classifier's backbone and of the same backbone at random init."""
  from atcon_tf import backbones
  from trainers import probe

  data = probe.images_and_labels(splits.train, cfg.probe_train_size, cfg.seed) + probe.images_and_labels(
    splits.test, cfg.probe_test_size, cfg.seed
  )
  layers = probe.default_layers(cfg)
  random = backbones.build(
    cfg.backbone,
    cfg.image_size,
    splits.info.num_classes,
    weights="none",
    seed=cfg.seed,
    resnet_width=cfg.resnet_width,
    resnet_blocks=cfg.resnet_blocks,
  )
  accuracy = {
    "simclr": probe.probe_classifier(classifier, layers, data, preprocessing),
    "random_init": probe.probe_classifier(random, layers, data, preprocessing),
  }
  return {"layers": layers, "train_images": len(data[1]), "test_images": len(data[3]), "accuracy": accuracy}


def run(cfg, extra_callbacks=()) -> dict:
  """Pretrains (or resumes), writes the backbone files and the probe; returns the summary."""
  import keras
  import numpy as np

  from atcon_tf import backbones, choices
  from trainers import data as data_lib
  from trainers import models, simclr

  start = time.time()
  workdir = cfg.workdir or os.path.join(
    "/tmp/atcon_tf", "pretrain-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  )
  os.makedirs(workdir, exist_ok=True)
  keras.utils.set_random_seed(cfg.seed)
  print(f"workdir: {workdir}\npreparing data: {cfg.dataset} ...", flush=True)
  splits = data_lib.load_splits(cfg)
  info = splits.info
  preprocessing = models.resolve_preprocessing(cfg)
  target_layer = choices.BACKBONE_TARGET_LAYER.get(cfg.backbone)
  classifier = backbones.build(
    cfg.backbone,
    cfg.image_size,
    info.num_classes,
    weights=cfg.weights,
    seed=cfg.seed,
    resnet_width=cfg.resnet_width,
    resnet_blocks=cfg.resnet_blocks,
  )
  encoder = backbones.encoder(classifier)
  ds, images = _pipeline(cfg, splits.train)
  steps = cfg.steps_per_epoch or max(1, images // cfg.batch_size)
  _write_json(
    os.path.join(workdir, "config.json"),
    {
      "config": dataclasses.asdict(cfg),
      "dataset": info.to_json(),
      "images": images,
      "steps_per_epoch": steps,
    },
  )
  done = os.path.join(workdir, DONE_FILE)
  if os.path.isfile(done):
    print(f"pretraining already finished ({done}); loading {BACKBONE_FILE}", flush=True)
    backbones.load_named_weights(classifier, os.path.join(workdir, BACKBONE_FILE))
  else:
    model = simclr.SimCLRModel(encoder, preprocessing, cfg.projection_dim, temperature=cfg.temperature)
    model.compile(optimizer=keras.optimizers.Adam(cfg.lr, epsilon=cfg.adam_epsilon))
    model(np.zeros((1, cfg.image_size, cfg.image_size, 3), np.float32))  # BackupAndRestore needs it built
    callbacks = [
      keras.callbacks.BackupAndRestore(os.path.join(workdir, "backup")),
      keras.callbacks.CSVLogger(os.path.join(workdir, "history.csv"), append=True),
      keras.callbacks.TerminateOnNaN(),
    ]
    if cfg.tensorboard:
      callbacks.append(keras.callbacks.TensorBoard(os.path.join(workdir, "logs"), write_graph=False))
    print(
      f"SimCLR on {images} unlabeled images of {info.name}: {cfg.epochs} epochs x {steps} steps", flush=True
    )
    model.fit(
      ds,
      epochs=cfg.epochs,
      steps_per_epoch=steps,
      callbacks=callbacks + list(extra_callbacks),
      verbose=cfg.verbose,
    )
    _save(cfg, workdir, classifier, encoder, info, preprocessing, target_layer, images)
    _write_json(done, {"epochs": cfg.epochs, "seconds": round(time.time() - start, 1)})
  summary = {"workdir": workdir, "backbone": os.path.join(workdir, BACKBONE_FILE), "images": images}
  if cfg.probe:
    summary["probe"] = run_probe(cfg, splits, classifier, preprocessing)
    _write_json(os.path.join(workdir, PROBE_FILE), summary["probe"])
    for name, accuracy in summary["probe"]["accuracy"].items():
      print(f"linear probe {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items()), flush=True)
  summary["seconds"] = round(time.time() - start, 1)
  print(f"Done in {summary['seconds']:.0f} s. Backbone: {summary['backbone']}", flush=True)
  return summary


def main(argv):
  from atcon_tf.backbones import WeightsUnavailableError
  from atcon_tf.data.tfds_sources import DataUnavailableError
  from atcon_tf.weight_files import WeightsFileError

  if len(argv) > 1:
    raise SystemExit(f"Unexpected arguments: {argv[1:]}")
  try:
    run(config_lib.config_from_flags(config_class=PretrainConfig, presets=PRESETS))
  except (DataUnavailableError, WeightsUnavailableError, WeightsFileError) as error:
    raise SystemExit(f"ERROR: {error}") from None


if __name__ == "__main__":
  from absl import app

  config_lib.define_flags(config_class=PretrainConfig)
  app.run(main)
  sys.exit(0)
