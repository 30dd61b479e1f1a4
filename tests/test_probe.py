"""trainers.probe: GAP features equal the mean of the layer's activations, and the logistic probe separates
features that carry the label and not features that do not."""

import sys

import keras
import numpy as np
import pytest

from atcon_tf import backbones
from trainers import probe


def test_gap_features_are_spatial_means_of_the_layer():
  model = backbones.build("small_resnet", 16, 3, weights="none", resnet_width=4, resnet_blocks=(1, 1))
  images = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3)).astype(np.uint8)
  features = probe.gap_features(model, ["stem_relu", "gap"], images, "scale_0_1", batch_size=2)
  stem = keras.Model(model.input, model.get_layer("stem_relu").output)(images.astype(np.float32) / 255.0)
  np.testing.assert_allclose(features["stem_relu"], np.asarray(stem).mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
  assert features["gap"].shape == (5, 8)  # the input of the GAP layer, pooled: the head's features


def test_logistic_probe_reads_label_information_only_when_present():
  rng = np.random.default_rng(0)
  labels = np.arange(200) % 4
  informative = np.eye(4)[labels] * 3 + rng.normal(size=(200, 4))
  noise = rng.normal(size=(200, 4))
  assert probe.logistic_probe(informative[:100], labels[:100], informative[100:], labels[100:]) > 0.9
  assert probe.logistic_probe(noise[:100], labels[:100], noise[100:], labels[100:]) < 0.45


if __name__ == "__main__":
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
