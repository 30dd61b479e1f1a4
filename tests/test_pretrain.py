"""SimCLR pretraining: the NT-Xent loss on hand-computed cases, the views, and a smoke run that is
interrupted, resumed, probed, and whose backbone `trainers.finetune --weights=PATH` / `--model=PATH` take."""

import glob
import os
import sys

import numpy as np
import pytest
import tensorflow as tf

from atcon_tf import backbones, weight_files
from tests.callbacks import EpochRecorder, Interrupt
from tests.conftest import read_history, smoke_config
from trainers import finetune, models, pretrain, simclr


def test_nt_xent_two_orthogonal_pairs():
  # views of image 0 are both e1, of image 1 both e2: each row sees its positive at cosine 1, two
  # negatives at 0, so loss = -log(e^(1/T) / (e^(1/T) + 2)) = log(1 + 2 e^(-1/T)) for every row.
  z = tf.constant([[1.0, 0.0], [0.0, 1.0]])
  for t in (1.0, 0.5):
    loss, accuracy = simclr.nt_xent(z, z * 3.0, temperature=t)  # scale does not matter (cosines)
    assert float(loss) == pytest.approx(np.log(1 + 2 * np.exp(-1 / t)), rel=1e-6)
    assert float(accuracy) == 1.0


def test_nt_xent_hand_computed_asymmetric_case():
  # z = [a, b, c, d] = [(1, 0), (1, 1)/sqrt2, (0, 1), (1, 0)]; positives a-c, b-d; r = 1/sqrt2.
  # cosines: ab = r, ac = 0, ad = 1, bc = r, bd = r, cd = 0. Row loss = -pos + log(sum of exp over others).
  r = 1 / np.sqrt(2)
  rows = [
    np.log(np.exp(r) + 1 + np.e) - 0,  # a: others b, c, d; positive c
    np.log(3 * np.exp(r)) - r,  # b: all at r; positive d
    np.log(1 + np.exp(r) + 1) - 0,  # c: others a, b, d; positive a
    np.log(np.e + np.exp(r) + 1) - r,  # d: others a, b, c; positive b
  ]
  loss, _ = simclr.nt_xent(tf.constant([[1.0, 0.0], [1.0, 1.0]]), tf.constant([[0.0, 1.0], [1.0, 0.0]]), 1.0)
  assert float(loss) == pytest.approx(np.mean(rows), rel=1e-6)


def test_views_are_random_crops_in_pixel_range():
  images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3)).astype(np.uint8)
  a, b = simclr.augment(images).numpy(), simclr.augment(images).numpy()
  assert a.shape == (4, 16, 16, 3) and a.dtype == np.float32
  assert a.min() >= 0 and a.max() <= 255 and not np.allclose(a, b)


@pytest.mark.slow
def test_pretrain_resumes_and_its_backbone_is_fine_tuned(tmp_path):
  data_dir = str(tmp_path / "tfds")
  cfg = pretrain.preset("smoke", workdir=str(tmp_path / "simclr"), data_dir=data_dir, verbose=0)
  with pytest.raises(KeyboardInterrupt):
    pretrain.run(cfg, extra_callbacks=[Interrupt(after=3)])  # in the second of two epochs
  epochs = EpochRecorder()
  summary = pretrain.run(cfg, extra_callbacks=[epochs])
  assert epochs.epochs == [1]  # resumed where the backup left off
  workdir = cfg.workdir
  assert [int(r["epoch"]) for r in read_history(os.path.join(workdir, "history.csv"))] == [0, 1]
  assert {"loss", "contrastive_accuracy"} <= set(read_history(os.path.join(workdir, "history.csv"))[0])
  assert glob.glob(os.path.join(workdir, "logs", "train", "events.out.tfevents.*"))
  assert not os.path.exists(os.path.join(workdir, "backup"))
  assert set(summary["probe"]["accuracy"]) == {"simclr", "random_init"}
  path = summary["backbone"]
  assert weight_files.attributes(path)["method"] == "simclr"

  again = EpochRecorder()  # finished: not trained again
  pretrain.run(cfg.replace(probe=False), extra_callbacks=[again])
  assert again.epochs == []

  stored = weight_files.read(path)
  ft = smoke_config(tmp_path, data_dir, weights=path, schedule="supervised", epochs=1)
  choice = models.choose_model(ft, 10)
  np.testing.assert_array_equal(
    choice.classifier.get_layer("stem_conv").get_weights()[0], stored["stem_conv"][0]
  )
  assert (
    choice.preprocessing == pretrain.preset("smoke").preprocessing or choice.preprocessing == "imagenet_torch"
  )
  metrics = finetune.run(ft)  # the whole pipeline from the pretrained backbone
  assert metrics["stages"][0]["epochs"] == 1

  imported = models.choose_model(ft.replace(model=os.path.join(workdir, pretrain.MODEL_FILE)), 10)
  assert imported.preprocessing == "imagenet_torch"  # recorded by pretrain
  np.testing.assert_array_equal(
    imported.classifier.get_layer("stem_conv").get_weights()[0], stored["stem_conv"][0]
  )
  with pytest.raises(weight_files.WeightsFileError):  # another width: refused with the layer named
    backbones.build("small_resnet", 16, 10, weights=path, resnet_width=8, resnet_blocks=(1, 1))


if __name__ == "__main__":
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
