"""Deletion / insertion AUC on hand-made cases: a hand-computed 2x2 curve, a map on the only informative
pixels against random maps, and the two baselines."""

import sys

import numpy as np
import pytest

from atcon_tf.metrics import faithfulness as fa


def test_hand_computed_two_by_two():
  # score = the value of pixel (0, 0); image all ones, baseline zeros; 4 steps = one pixel per step.
  images = np.ones((2, 2, 2, 1), np.float32)
  base = np.zeros_like(images)
  good = np.array([[4.0, 3.0], [2.0, 1.0]])  # pixel (0, 0) first
  bad = np.array([[1.0, 2.0], [3.0, 4.0]])  # pixel (0, 0) last
  saliency = np.stack([good, bad])
  deletion, insertion = fa.perturbation_curves(lambda x: x[:, 0, 0, 0], images, saliency, base, steps=4)
  np.testing.assert_array_equal(deletion, [[1, 0, 0, 0, 0], [1, 1, 1, 1, 0]])
  np.testing.assert_array_equal(insertion, [[0, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
  # trapezoids over x = 0, 1/4, ..., 1: (1 + 0)/2 / 4 = 0.125; (1 + 1 + 1 + 1/2) / 4 = 0.875
  np.testing.assert_allclose(fa.curve_auc(deletion), [0.125, 0.875])
  np.testing.assert_allclose(fa.curve_auc(insertion), [0.875, 0.125])


def test_two_steps_change_half_the_pixels_each():
  images = np.ones((1, 2, 2, 1), np.float32)
  seen = []
  fa.perturbation_curves(
    lambda x: seen.append(x.copy()) or x.sum(axis=(1, 2, 3)),
    images,
    np.array([[[1.0, 4.0], [3.0, 2.0]]]),
    np.zeros_like(images),
    steps=2,
  )
  # deletion at k = 1 removed the two most salient pixels, (0, 1) then (1, 0)
  np.testing.assert_array_equal(seen[2][0, ..., 0], [[1, 0], [0, 1]])
  with pytest.raises(ValueError, match="resize"):
    fa.perturbation_curves(lambda x: x[:, 0, 0, 0], images, np.ones((1, 1, 1)), images, steps=2)


def test_map_on_the_informative_pixels_beats_random_maps():
  rng = np.random.default_rng(0)
  informative = np.zeros((8, 8), bool)
  informative[2:4, 5:7] = True  # the model only looks here: a bright patch on a dim, noisy background
  images = rng.uniform(0.0, 0.2, (16, 8, 8, 3)).astype(np.float32)
  images[:, informative] = rng.uniform(0.9, 1.0, (16, 4, 3))

  def score(x):  # a "probability" that depends on the informative pixels only (their sum is ~11.4)
    return 1.0 / (1.0 + np.exp(-(x[:, informative].sum(axis=(1, 2)) - 8.0)))

  good = np.broadcast_to(informative + 0.01 * rng.random((8, 8)), (16, 8, 8))
  for baseline in fa.BASELINES:
    good_auc = fa.deletion_insertion_auc(score, images, good, steps=8, baseline=baseline)
    random_auc = fa.deletion_insertion_auc(score, images, rng.random((16, 8, 8)), steps=8, baseline=baseline)
    assert good_auc["deletion"].mean() < random_auc["deletion"].mean() - 0.2
    assert good_auc["insertion"].mean() > random_auc["insertion"].mean() + 0.2
    assert np.all(good_auc["deletion"] < good_auc["insertion"])


def test_baselines():
  rng = np.random.default_rng(1)
  images = rng.uniform(0, 255, (2, 16, 16, 3)).astype(np.float32)
  mean = fa.baseline_images(images, "mean")
  np.testing.assert_allclose(mean[0, 3, 5], images[0].mean(axis=(0, 1)), rtol=1e-5)
  blur = fa.baseline_images(images, "blur")
  # a normalised kernel keeps the mean roughly and removes most of the pixel-to-pixel variation
  np.testing.assert_allclose(blur.mean(axis=(1, 2)), images.mean(axis=(1, 2)), rtol=0.05)
  assert blur.std(axis=(1, 2)).max() < 0.3 * images.std(axis=(1, 2)).min()
  constant = np.full((1, 16, 16, 3), 7.0, np.float32)
  np.testing.assert_allclose(fa.blurred(constant), constant, rtol=1e-6)  # reflected edges add nothing
  with pytest.raises(ValueError, match="baseline"):
    fa.baseline_images(images, "zeros")


if __name__ == "__main__":
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
