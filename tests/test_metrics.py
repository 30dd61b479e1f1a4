"""Metrics on hand-computed cases (docs/method.md §4.2, §6.1-6.3)."""

import itertools
import math

import numpy as np
import pytest

from atcon_tf.metrics import bootstrap, classification as cls, localization as loc


# --------------------------------------------------------------------------------------- classification


def test_single_label_macro_f1_excludes_absent_classes_or_counts_them_as_zero():
  y_true = [0, 0, 1, 1, 2]
  y_pred = [0, 1, 1, 1, 0]
  # class 0: TP1 FP1 FN1 -> P=R=1/2, F1=1/2; class 1: TP2 FP1 FN0 -> P=2/3 R=1, F1=0.8;
  # class 2: TP0 FP0 FN1 -> P=0/0 -> undefined; class 3: absent and never predicted -> undefined.
  f1 = cls.per_class_f1(y_true, y_pred, num_classes=4)
  np.testing.assert_allclose(f1[:2], [0.5, 0.8])
  assert np.isnan(f1[2]) and np.isnan(f1[3])
  # Authors' rule: nansum / C -> (0.5 + 0.8 + 0 + 0) / 4.
  assert cls.macro_f1(y_true, y_pred, num_classes=4, absent="zero") == pytest.approx((0.5 + 0.8) / 4)
  # Default: class 3 has no test image -> excluded; class 2 is present with no hit -> F1 0, kept.
  assert cls.macro_f1(y_true, y_pred, num_classes=4) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
  assert cls.absent_classes(y_true, 4) == 1
  assert cls.accuracy(y_true, y_pred) == pytest.approx(3 / 5)
  with pytest.raises(ValueError, match="absent-class rule"):
    cls.macro_f1(y_true, y_pred, num_classes=4, absent="skip")


def test_balanced_model_on_half_the_classes_keeps_macro_f1_near_accuracy():
  """The failure of issue "first K of a class-sorted split": 5 of 10 classes present, 80 % correct."""
  y_true = np.repeat(np.arange(5), 20)
  y_pred = y_true.copy()
  y_pred[::5] = (y_pred[::5] + 1) % 5  # 20 % wrong, spread evenly
  assert cls.accuracy(y_true, y_pred) == pytest.approx(0.8)
  assert cls.macro_f1(y_true, y_pred, 10) == pytest.approx(0.8)  # each present class: P = R = 0.8
  assert cls.macro_f1(y_true, y_pred, 10, absent="zero") == pytest.approx(0.4)


def test_single_label_metrics_take_scores_by_argmax():
  scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
  y_true = [0, 1, 2, 2]  # argmax = [0, 1, 2, 0]
  # class 0: TP1 FP1 -> P 1/2 R 1 -> 2/3; class 1: 1; class 2: TP1 FN1 -> P 1 R 1/2 -> 2/3
  assert cls.macro_f1(y_true, scores) == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
  assert cls.accuracy(y_true, scores) == pytest.approx(0.75)


def test_multilabel_f1_uses_strict_threshold_and_eps():
  y_true = np.array([[1, 0], [1, 1], [0, 1]])
  probs = np.array([[0.9, 0.6], [0.4, 0.7], [0.2, 0.5]])  # 0.5 is NOT a positive (p > 0.5)
  # class 0: TP1 FP0 FN1 -> 1/1.5; class 1: TP1 FP1 FN1 -> 1/2
  np.testing.assert_allclose(cls.per_class_f1_multilabel(y_true, probs), [2 / 3, 0.5], rtol=1e-8)
  assert cls.macro_f1_multilabel(y_true, probs) == pytest.approx((2 / 3 + 0.5) / 2)
  # a class never present and never predicted: 0 / (0 + eps) = 0
  assert cls.per_class_f1_multilabel(np.zeros((2, 1)), np.zeros((2, 1)))[0] == 0.0
  # ... counted by the authors' rule, excluded by default
  y3, p3 = np.c_[y_true, np.zeros(3)], np.c_[probs, np.zeros(3)]
  assert cls.macro_f1_multilabel(y3, p3) == pytest.approx((2 / 3 + 0.5) / 2)
  assert cls.macro_f1_multilabel(y3, p3, absent="zero") == pytest.approx((2 / 3 + 0.5) / 3)
  assert cls.absent_classes(y3, 3) == 1


# ------------------------------------------------------------------------------------------ bootstrap CIs


def test_bootstrap_ci_two_point_sample_uses_5th_and_95th_percentiles():
  # mean of a resample of [0, 1] is 0 (p=1/4), 0.5 (1/2) or 1 (1/4): 5th pct 0, 95th pct 1, mean ~0.5
  res = bootstrap.bootstrap_ci(np.mean, np.array([0.0, 1.0]), n_resamples=2000, seed=3)
  assert (res.lower, res.upper) == (0.0, 1.0)
  assert res.mean == pytest.approx(0.5, abs=0.03)
  assert res.estimate == 0.5


def test_bootstrap_ci_contains_true_mean_and_resamples_rows_jointly():
  rng = np.random.default_rng(0)
  x = rng.normal(3.0, 1.0, size=400)
  res = bootstrap.bootstrap_ci(np.mean, x, n_resamples=500, seed=1)
  assert res.lower < 3.0 < res.upper and res.lower < res.estimate < res.upper
  assert res.upper - res.lower == pytest.approx(2 * 1.645 / math.sqrt(400), rel=0.2)
  # (y_true, y_pred) rows travel together: a perfect classifier stays perfect in every resample
  y = rng.integers(0, 10, size=50)
  assert bootstrap.bootstrap_ci(cls.accuracy, y, y.copy(), n_resamples=50).lower == 1.0


# ------------------------------------------------------------------------------------ comparison p-values


def _table(both_right, only_a, only_b, both_wrong):
  """Per-image correctness of models a and b with the given 2x2 counts."""
  a = [1] * both_right + [1] * only_a + [0] * only_b + [0] * both_wrong
  b = [1] * both_right + [0] * only_a + [1] * only_b + [0] * both_wrong
  return np.array(a), np.array(b)


def test_pooled_bootstrap_pvalue_small_for_different_large_for_identical():
  rng = np.random.default_rng(0)
  a, b = rng.normal(0.0, 1.0, 100), rng.normal(1.0, 1.0, 100)
  assert bootstrap.pooled_bootstrap_pvalue(np.mean, a, b, n_resamples=2000) < 0.01
  # identical samples: t = 0 and almost every resample has |m(x) - m(y)| > 0
  assert bootstrap.pooled_bootstrap_pvalue(np.mean, a, a.copy(), n_resamples=500) > 0.9
  constant = np.ones(20)
  assert bootstrap.pooled_bootstrap_pvalue(np.mean, constant, constant.copy(), n_resamples=200) == 1.0
  # tuples of arrays feed metric_fn(*data): same labels, two prediction vectors
  y = rng.integers(0, 10, 200)
  good, bad = y.copy(), rng.integers(0, 10, 200)
  f1 = lambda t, q: cls.macro_f1(t, q, 10)  # noqa: E731
  assert bootstrap.pooled_bootstrap_pvalue(f1, (y, good), (y, bad), n_resamples=300) < 0.01


def test_mcnemar_is_the_exact_binomial_test_on_the_discordant_images():
  # 5 both right, 1 only a, 7 only b, 3 both wrong: n = 8 discordant, P(X <= 1) under Binomial(8, 1/2)
  a, b = _table(5, 1, 7, 3)
  assert bootstrap.mcnemar_pvalue(a, b) == pytest.approx(2 * (math.comb(8, 0) + math.comb(8, 1)) / 2**8)
  assert bootstrap.mcnemar_pvalue(b, a) == bootstrap.mcnemar_pvalue(a, b) == pytest.approx(18 / 256)
  # concordant images do not matter; booleans work as 0/1
  a2, b2 = _table(50, 1, 7, 0)
  assert bootstrap.mcnemar_pvalue(a2.astype(bool), b2.astype(bool)) == pytest.approx(18 / 256)
  # 10 discordant, all one way: 2 / 2^10
  assert bootstrap.mcnemar_pvalue(*_table(0, 10, 0, 4)) == pytest.approx(2 / 1024)
  # 2 vs 3: 2 (C(5,0) + C(5,1) + C(5,2)) / 2^5 = 32/32; a tie (3 vs 3) would exceed 1 and is clipped
  assert bootstrap.mcnemar_pvalue(*_table(4, 2, 3, 0)) == 1.0
  assert bootstrap.mcnemar_pvalue(*_table(0, 3, 3, 0)) == 1.0
  assert bootstrap.mcnemar_pvalue(*_table(9, 0, 0, 2)) == 1.0  # no discordant image
  # a larger table: 30 vs 12 is 2 * P(X <= 12), X ~ Bin(42, 1/2), also scipy's exact binomial test
  expected = 2 * sum(math.comb(42, k) for k in range(13)) / 2**42
  assert bootstrap.mcnemar_pvalue(*_table(100, 30, 12, 20)) == pytest.approx(expected, rel=1e-12)
  stats = pytest.importorskip("scipy.stats")
  assert stats.binomtest(12, 42, 0.5).pvalue == pytest.approx(expected, rel=1e-12)
  with pytest.raises(ValueError, match="0/1"):
    bootstrap.mcnemar_pvalue([0, 2], [1, 1])
  with pytest.raises(ValueError, match="same images"):
    bootstrap.mcnemar_pvalue([0, 1], [1, 1, 0])


def _enumerated_pvalue(metric, shared, a, b):
  """Reference: all 2^n swap patterns of ALL rows, written out with itertools."""
  t = abs(metric(*shared, a) - metric(*shared, b))
  count = 0
  for signs in itertools.product([False, True], repeat=len(a)):
    flip = np.array(signs)
    x, y = np.where(flip, b, a), np.where(flip, a, b)
    count += abs(metric(*shared, x) - metric(*shared, y)) >= t - 1e-12
  return count / 2 ** len(a)


def test_sign_flip_test_by_hand_for_a_mean():
  # differences d = a - b = (3, 1, 1, -1) and two images where the models agree.
  # t = |sum d| / 6 = 4/6. sum of s_i d_i over the 16 sign patterns: s_1 = +1 gives 3 + (s2 + s3 - s4) in
  # {6 (1 pattern), 4 (3), 2 (3), 0 (1)}; s_1 = -1 mirrors it: |sum| >= 4 in 8 of 16 patterns -> p = 1/2.
  a = np.array([3.0, 1.0, 1.0, -1.0, 5.0, 7.0])
  b = np.array([0.0, 0.0, 0.0, 0.0, 5.0, 7.0])
  assert bootstrap.paired_permutation_pvalue(np.mean, a, b, exact=True) == 0.5
  assert bootstrap.paired_permutation_pvalue(np.mean, a, b, n_resamples=16) == 0.5  # 2^4 <= 16: exact
  assert _enumerated_pvalue(np.mean, (), a, b) == 0.5  # the reference enumerates all 2^6 patterns
  monte_carlo = bootstrap.paired_permutation_pvalue(np.mean, a, b, n_resamples=20000, seed=1, exact=False)
  assert monte_carlo == pytest.approx(0.5, abs=0.015)
  # d = (1, 2, 3, 4): only all-plus and all-minus reach |sum| = 10 -> 2/16
  assert bootstrap.paired_permutation_pvalue(np.mean, [1, 2, 3, 4], [0, 0, 0, 0], exact=True) == 0.125


def test_sign_flip_test_swaps_only_the_model_arrays_for_macro_f1():
  labels = np.array([0, 0, 1, 1])
  f1 = lambda y, p: cls.macro_f1(y, p, 2)  # noqa: E731
  # a is perfect (F1 1), b always wrong (F1 0): t = 1. Swapping row 0 alone gives a* = [1, 0, 1, 1]
  # (F1s 2/3 and 0.8) and b* = [0, 1, 0, 0] (F1s 0.4 and 0/0 -> 0): |0.733 - 0.2| < 1. Only the two
  # patterns that swap all or nothing reach 1 -> p = 2/16.
  wrong = np.array([1, 1, 0, 0])
  assert bootstrap.paired_permutation_pvalue(f1, (labels,), (wrong,), shared=(labels,), exact=True) == 0.125
  # a bigger case against the reference enumeration of all 2^8 patterns (two rows agree, the shortcut
  # enumerates 2^6 and must give the same p)
  labels = np.array([0, 1, 2, 0, 1, 2, 0, 1])
  pred_a = np.array([0, 1, 2, 1, 1, 0, 0, 2])
  pred_b = np.array([0, 2, 2, 0, 0, 0, 1, 1])
  f1 = lambda y, p: cls.macro_f1(y, p, 3)  # noqa: E731
  expected = _enumerated_pvalue(f1, (labels,), pred_a, pred_b)
  assert 0.0 < expected < 1.0
  assert bootstrap.paired_permutation_pvalue(f1, pred_a, pred_b, shared=(labels,), exact=True) == expected
  # multi-label probabilities: whole rows swap. a is perfect (mF1 1); b: class 0 TP1 FP1 FN1 -> 1/2, class 1
  # TP1 FN1 -> 2/3, t = 1 - 7/12. Rows 1 and 2 differ; swapping one of them gives mF1s 0.733 and 0.833
  # (|diff| 0.1 < t), so only the identity and the full swap count: p = 2/4.
  y = np.array([[1, 0], [0, 1], [1, 1]])
  probs_a = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.6]])
  probs_b = np.array([[0.9, 0.1], [0.6, 0.3], [0.4, 0.6]])
  p = bootstrap.paired_permutation_pvalue(cls.macro_f1_multilabel, probs_a, probs_b, shared=(y,), exact=True)
  assert p == 0.5


def test_sign_flip_test_on_correctness_is_mcnemar():
  a, b = _table(5, 1, 7, 3)
  assert bootstrap.paired_permutation_pvalue(np.mean, a, b, exact=True) == pytest.approx(18 / 256)


def test_sign_flip_test_identical_and_shifted_samples():
  rng = np.random.default_rng(0)
  x = rng.normal(0.0, 3.0, 100)
  assert bootstrap.paired_permutation_pvalue(np.mean, x, x.copy()) == 1.0
  # different per-image values with the same mean: t = 0, every pattern ties
  assert (
    bootstrap.paired_permutation_pvalue(np.mean, [1.0, 2.0], [2.0, 1.0], exact=False, n_resamples=50) == 1.0
  )
  # a small consistent shift under a large between-image spread: the pairing sees it, pooling does not
  y = x + 0.3 + rng.normal(0.0, 0.1, 100)
  assert bootstrap.paired_permutation_pvalue(np.mean, x, y, n_resamples=2000) == pytest.approx(1 / 2001)
  assert bootstrap.pooled_bootstrap_pvalue(np.mean, x, y, n_resamples=2000) > 0.2
  # macro-F1 through `shared` labels, Monte Carlo path
  labels = rng.integers(0, 10, 200)
  good, bad = labels.copy(), rng.integers(0, 10, 200)
  f1 = lambda t, q: cls.macro_f1(t, q, 10)  # noqa: E731
  assert bootstrap.paired_permutation_pvalue(f1, good, bad, n_resamples=300, shared=(labels,)) == 1 / 301


def test_sign_flip_test_refuses_mismatched_data():
  with pytest.raises(ValueError, match="same shapes"):
    bootstrap.paired_permutation_pvalue(np.mean, np.zeros(3), np.zeros(4))
  with pytest.raises(ValueError, match="one row per image"):
    bootstrap.paired_permutation_pvalue(np.mean, np.zeros(3), np.ones(3), shared=(np.zeros(2),))
  with pytest.raises(ValueError, match="Monte Carlo"):
    bootstrap.paired_permutation_pvalue(np.mean, np.zeros(30), np.ones(30), exact=True)


# ----------------------------------------------------------------------------------------- localization


def test_upsample_nearest_matches_cv2_inter_nearest():
  cam = np.array([[1, 2], [3, 4]])
  np.testing.assert_array_equal(loc.upsample_nearest(cam, 4), np.kron(cam, np.ones((2, 2), int)))
  # 2 -> 3: source index floor(d * 2/3) = 0, 0, 1
  np.testing.assert_array_equal(loc.upsample_nearest(cam, 3), [[1, 1, 2], [1, 1, 2], [3, 3, 4]])


@pytest.mark.parametrize("map_size", [3, 6])
def test_wsd_map_median_shift_and_clip_by_hand(map_size):
  cam = np.array([[0, 0, 0], [0, 0, 0], [0, 3, 10]], float)
  # min-max: seven 0, 0.3, 1; median 0 -> u = v + 0.5: seven 0.5, 0.8, 1.5
  # mean = 5.8/9 = 29/45; deviations 13/90 (x7), 14/90, 77/90 -> var = (7*169 + 196 + 5929) / (8100*9)
  t = 29 / 45 + 2 * math.sqrt(7308 / 72900)  # 1.2777 < 1.5: the top value is clipped to t
  expected = np.array([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5], [0.5, 0.8, t]]) / t
  k = map_size // 3
  np.testing.assert_allclose(loc.wsd_map(cam, map_size), np.kron(expected, np.ones((k, k))), rtol=1e-12)
  # 0.8/t = 0.626 > 0.5 although the raw min-max value (0.3) is below 0.5: the median shift matters
  mask = np.kron(np.array([[0, 0, 0], [0, 0, 0], [0, 1, 1]], bool), np.ones((k, k), bool))
  np.testing.assert_array_equal(loc.binarize_cam(cam, map_size), mask)


def test_binarize_cam_threshold_is_strict_and_constant_map_is_empty():
  # [[0, 1], [1, 2]] -> v = [0, .5, .5, 1], median .5, no clip (t = .5 + 2*.3536), max 1: .5 is not > .5
  np.testing.assert_array_equal(loc.binarize_cam(np.array([[0.0, 1.0], [1.0, 2.0]]), 2), [[0, 0], [0, 1]])
  assert not loc.binarize_cam(np.full((2, 2), 7.0), 4).any()


def test_boxes_to_mask_strict_inequalities_cast_and_scale():
  m = loc.boxes_to_mask([[1, 1, 4, 4]], 5)  # rows/cols with 1 < i < 4: 2, 3
  expected = np.zeros((5, 5), bool)
  expected[2:4, 2:4] = True
  np.testing.assert_array_equal(m, expected)
  # pixel-edge convention: rows 1..3
  expected_edge = np.zeros((5, 5), bool)
  expected_edge[1:4, 1:4] = True
  np.testing.assert_array_equal(loc.boxes_to_mask([[1, 1, 4, 4]], 5, strict=False), expected_edge)
  # cast to int first (2.9 -> 2, 9.7 -> 9), then scale 10 -> 5: (1, 1, 4.5, 4.5) -> rows/cols 2, 3, 4
  m = loc.boxes_to_mask([[2.9, 2, 9, 9.7]], 10, map_size=5)
  expected = np.zeros((5, 5), bool)
  expected[2:5, 2:5] = True
  np.testing.assert_array_equal(m, expected)
  # non-square image (h=20, w=10) onto 5x5: y * 5/20, x * 5/10 -> (1, 0.5, 4, 3) -> rows 2, 3; cols 1, 2
  m = loc.boxes_to_mask([[4, 1, 16, 6]], (20, 10), map_size=5)
  expected = np.zeros((5, 5), bool)
  expected[2:4, 1:3] = True
  np.testing.assert_array_equal(m, expected)
  # union of two boxes
  assert loc.boxes_to_mask([[0, 0, 2, 2], [2, 2, 4, 4]], 4).sum() == 2


def test_mask_iou_and_wsd_iou_by_hand():
  a = np.array([[1, 1, 0], [0, 0, 0]], bool)
  b = np.array([[0, 1, 1], [0, 0, 1]], bool)
  assert loc.mask_iou(a, b) == pytest.approx(1 / 4)
  assert math.isnan(loc.mask_iou(np.zeros((2, 2)), np.zeros((2, 2))))
  cam = np.array([[0.0, 1.0], [1.0, 2.0]])  # -> bottom-right 2x2 block of a 4x4 map
  assert loc.wsd_iou(cam, [[1, 1, 4, 4]], 4) == 1.0  # strict mask: rows/cols 2, 3
  assert loc.wsd_iou(cam, [[0, 0, 4, 4]], 4) == pytest.approx(4 / 9)  # mask rows/cols 1..3
  # boxes in original-image pixels (8x8), map 4x4: (2,2,8,8) -> (1,1,4,4)
  assert loc.wsd_iou(cam, [[2, 2, 8, 8]], 8, map_size=4) == 1.0
  np.testing.assert_allclose(loc.wsd_iou_batch([cam, cam], [[[1, 1, 4, 4]], [[0, 0, 4, 4]]], 4), [1, 4 / 9])
  np.testing.assert_allclose(
    loc.wsd_iou_batch([cam, cam], [[[2, 2, 8, 8]], [[1, 1, 4, 4]]], [[8, 8], [4, 4]], map_size=4), [1, 1]
  )


def test_voc_pixel_boxes_inverts_tfds_voc():
  h, w = 375, 500
  voc = np.array([[48, 12, 200, 300]], float)  # 1-based VOC ints, (ymin, xmin, ymax, xmax)
  np.testing.assert_array_equal(loc.voc_pixel_boxes((voc - 1) / [h, w, h, w], (h, w)), voc)


def test_pointing_game_hit_miss_and_constant_maps():
  s = np.zeros((4, 4))
  s[1, 2] = 5.0  # centre (1.5, 2.5)
  assert loc.pointing_game_hit(s, [[0, 2, 2, 4]])
  assert not loc.pointing_game_hit(s, [[2, 0, 4, 2]])
  assert loc.pointing_game_hit(s, [[2, 0, 4, 2], [1, 2, 2, 3]])  # any box of the class
  assert not loc.pointing_game_hit(s, [[2, 3, 4, 4]])
  assert loc.pointing_game_hit(s, [[2, 3, 4, 4]], tolerance=0.5)
  assert not loc.pointing_game_hit(np.zeros((4, 4)), [[0, 0, 4, 4]])  # all-zero map: miss
  assert not loc.pointing_game_hit(np.full((4, 4), 3.0), [[0, 0, 4, 4]])  # constant map: miss
  # a 2x2 map on an 8x8 image: argmax cell (0, 1) has centre (2, 6) in image pixels
  assert loc.pointing_game_hit(np.array([[0, 1], [0, 0]]), [[0, 4, 4, 8]], image_size=8)
  assert not loc.pointing_game_hit(np.array([[0, 1], [0, 0]]), [[0, 0, 4, 4]], image_size=8)
  np.testing.assert_array_equal(loc.pointing_game_batch([s, np.zeros((4, 4))], [[[0, 2, 2, 4]]] * 2), [1, 0])


def test_energy_pointing_game_by_hand():
  s = np.array([[1.0, 3.0], [0.0, -5.0]])  # positive mass 4, of which 3 in cell (0, 1)
  assert loc.energy_pointing_game(s, [[0, 1, 1, 2]]) == pytest.approx(0.75)
  # the 2x2 map covers a 4x4 image: box (0, 2, 2, 4) is the same cell
  assert loc.energy_pointing_game(s, [[0, 2, 2, 4]], image_size=4) == pytest.approx(0.75)
  assert loc.energy_pointing_game(-np.ones((2, 2)), [[0, 0, 2, 2]]) == 0.0
  np.testing.assert_allclose(
    loc.energy_pointing_game_batch([s, s], [[[0, 1, 1, 2]], [[1, 0, 2, 2]]]), [0.75, 0]
  )


if __name__ == "__main__":
  import sys

  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
