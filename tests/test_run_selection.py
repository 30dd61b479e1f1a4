"""What a run selects and evaluates: a validation set that fits the labels, a fine-tuning stage that never
ends worse than it started, and test subsets that show every class."""

import sys

import keras
import numpy as np
import pytest
from PIL import Image

from tests.conftest import read_history, smoke_config
from trainers import config as config_lib
from trainers import finetune


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """One tfds data_dir for the module: the smoke house_numbers scenes are generated once."""
  return str(tmp_path_factory.mktemp("tfds"))


def _colour_folders(root, classes=4, train=24, test=10, size=16):
  """train/ and test/ folders of PNGs, one solid noisy colour per class: a model learns it in a few steps."""
  rng = np.random.default_rng(0)
  colours = [(230, 20, 20), (20, 230, 20), (20, 20, 230), (230, 230, 20)]
  for split, count in (("train", train), ("test", test)):
    for c in range(classes):
      folder = root / split / f"class_{c}"
      folder.mkdir(parents=True)
      for k in range(count):
        pixels = np.clip(np.array(colours[c]) + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{k}.png")


@pytest.mark.slow
def test_test_size_draws_every_class_of_a_class_sorted_folder(tmp_path):
  """--test_size below the test split's size: the first K images would be the first classes only."""
  _colour_folders(tmp_path / "data")
  metrics = finetune.run(
    config_lib.preset(
      "smoke",
      dataset=f"folder:{tmp_path / 'data'}",
      schedule="supervised",
      labels_per_class=0,
      val_size=8,
      test_size=20,
      epochs=3,
      steps_per_epoch=8,
      workdir=str(tmp_path / "run"),
      evaluate=True,
      viz_every=0,
      verbose=0,
      resnet_width=8,
    )
  )
  evaluation = metrics["evaluation"]
  assert evaluation["num_images"] == 20
  assert evaluation["images_per_class"] == {f"class_{c}": 5 for c in range(4)}
  model = evaluation["models"]["supervised"]["metrics"]
  assert model["macro_f1"]["absent_classes"] == 0
  assert model["accuracy"]["estimate"] >= 0.9  # a trivially separable set: the model is balanced
  assert abs(model["macro_f1"]["estimate"] - model["accuracy"]["estimate"]) < 0.1
  # The folder names travel with the model into its export's contract.
  from atcon_tf import loading

  assert loading.load_model(str(tmp_path / "run")).contract.class_names == tuple(
    f"class_{c}" for c in range(4)
  )


@pytest.mark.slow
def test_a_harmful_atcon_stage_never_ships_a_model_worse_than_its_start(tmp_path, data_dir, capsys):
  """An ATCON stage at a huge learning rate ruins every epoch: best.keras stays the supervised model."""
  workdir = tmp_path / "run"
  metrics = finetune.run(smoke_config(tmp_path, data_dir, atcon_lr=1.0, atcon_epochs=2, evaluate=True))
  atcon = metrics["stages"][1]
  assert atcon["best_is_start"] is True
  assert atcon["best_val_supervised_loss"] == atcon["start_val_supervised_loss"]
  rows = read_history(workdir / "atcon" / "history.csv")
  assert all(float(r["val_supervised_loss"]) > atcon["start_val_supervised_loss"] for r in rows)
  assert "no epoch beat the starting weights" in capsys.readouterr().out
  final = keras.saving.load_model(workdir / "best.keras", compile=False).classifier
  supervised = keras.saving.load_model(workdir / "supervised" / "best.keras", compile=False).classifier
  for got, want in zip(final.get_weights(), supervised.get_weights()):
    np.testing.assert_array_equal(got, want)
  comparison = metrics["evaluation"]["comparison"]["metrics"]  # the table still compares the two stages
  assert comparison["accuracy"]["difference"] == 0.0


def test_validation_size_follows_the_labeled_budget():
  from trainers.data import validation_size

  cfg = config_lib.preset("default", labels_per_class=10)
  assert validation_size(cfg, num_classes=10, train_examples=5000) == 100  # as many as the training labels
  assert validation_size(cfg.replace(labels_per_class=1), 10, 5000) == 20  # at least 2 per class
  assert validation_size(cfg.replace(labels_per_class=1000), 10, 5000) == 500  # at most 500
  assert validation_size(cfg.replace(labels_per_class=0), 10, 300) == 300  # all labeled: the split's size
  assert validation_size(cfg.replace(val_size=64), 10, 5000) == 64  # an explicit size wins


if __name__ == "__main__":
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
