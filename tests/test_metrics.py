"""Metrics on hand-computed cases (method.md §4.2, §6.1-6.3)."""

import math

import numpy as np
import pytest

from atcon_tf.metrics import bootstrap, classification as cls, localization as loc


# ---------------------------------------------------------------------------------------------- classification

def test_single_label_macro_f1_counts_undefined_classes_as_zero():
    y_true = [0, 0, 1, 1, 2]
    y_pred = [0, 1, 1, 1, 0]
    # class 0: TP1 FP1 FN1 -> P=R=1/2, F1=1/2; class 1: TP2 FP1 FN0 -> P=2/3 R=1, F1=0.8;
    # class 2: TP0 FP0 FN1 -> P=0/0 -> undefined; class 3: absent and never predicted -> undefined.
    f1 = cls.per_class_f1(y_true, y_pred, num_classes=4)
    np.testing.assert_allclose(f1[:2], [0.5, 0.8])
    assert np.isnan(f1[2]) and np.isnan(f1[3])
    assert cls.macro_f1(y_true, y_pred, num_classes=4) == pytest.approx((0.5 + 0.8) / 4)
    assert cls.accuracy(y_true, y_pred) == pytest.approx(3 / 5)


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


# --------------------------------------------------------------------------------------------------- bootstrap

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
    assert bootstrap.bootstrap_ci(cls.accuracy, y, y.copy(), n_resamples=50, seed=5) == \
        bootstrap.bootstrap_ci(cls.accuracy, y, y.copy(), n_resamples=50, seed=5)


def test_bootstrap_pvalue_small_for_different_large_for_identical():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.0, 1.0, 100), rng.normal(1.0, 1.0, 100)
    assert bootstrap.paired_bootstrap_pvalue(np.mean, a, b, n_resamples=2000) < 0.01
    # identical samples: t = 0 and almost every resample has |m(x) - m(y)| > 0
    assert bootstrap.paired_bootstrap_pvalue(np.mean, a, a.copy(), n_resamples=500) > 0.9
    constant = np.ones(20)
    assert bootstrap.paired_bootstrap_pvalue(np.mean, constant, constant.copy(), n_resamples=200) == 1.0
    # tuples of arrays feed metric_fn(*data): same labels, two prediction vectors
    y = rng.integers(0, 10, 200)
    good, bad = y.copy(), rng.integers(0, 10, 200)
    p = bootstrap.paired_bootstrap_pvalue(lambda t, q: cls.macro_f1(t, q, 10), (y, good), (y, bad), n_resamples=300)
    assert p < 0.01


# ------------------------------------------------------------------------------------------------ localization

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
        loc.wsd_iou_batch([cam, cam], [[[2, 2, 8, 8]], [[1, 1, 4, 4]]], [[8, 8], [4, 4]], map_size=4), [1, 1])


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
    np.testing.assert_allclose(loc.energy_pointing_game_batch([s, s], [[[0, 1, 1, 2]], [[1, 0, 2, 2]]]), [0.75, 0])


if __name__ == "__main__":
  import sys
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
