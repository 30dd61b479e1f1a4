"""Labelled-subset rules: determinism for a seed, the authors' greedy balanced rule by hand, disjoint splits."""

import sys

import numpy as np
import pytest

from atcon_tf.data import subsets


def test_single_label_takes_the_first_n_per_class_in_split_order_without_seed():
  labels = np.array([0, 1, 0, 1, 2, 2, 0, 1, 2])
  np.testing.assert_array_equal(subsets.single_label_subset(labels, 2, seed=None), [0, 1, 2, 3, 4, 5])
  np.testing.assert_array_equal(subsets.single_label_subset(labels, 1, seed=None), [0, 1, 4])
  np.testing.assert_array_equal(subsets.single_label_subset(labels, 1, seed=None, exclude=[0, 4]), [1, 2, 5])


def test_single_label_subset_is_deterministic_for_a_seed_and_balanced():
  labels = np.random.default_rng(0).integers(0, 10, size=2000)
  a = subsets.single_label_subset(labels, 8, seed=3)
  b = subsets.single_label_subset(labels, 8, seed=3)
  c = subsets.single_label_subset(labels, 8, seed=4)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert np.all(np.bincount(labels[a], minlength=10) == 8)
  # The seeded order is a plain permutation: the first 8 of each class in that order.
  order = np.random.default_rng(3).permutation(len(labels))
  expected = np.sort(np.concatenate([order[labels[order] == k][:8] for k in range(10)]))
  np.testing.assert_array_equal(a, expected)


def test_single_label_strict_mode_reports_missing_images():
  with pytest.raises(ValueError, match="Class 2 has only 1"):
    subsets.single_label_subset(np.array([0, 0, 1, 1, 2]), 2, seed=None, strict=True)


HAND = np.array(
  [
    [1, 1, 0],  # 0: two labels
    [1, 0, 0],  # 1
    [1, 0, 0],  # 2
    [0, 0, 0],  # 3: no (non-difficult) label
    [0, 1, 0],  # 4
    [0, 0, 1],  # 5
    [0, 0, 1],  # 6
  ]
)


def test_greedy_balanced_rule_fully_balanced_by_hand():
  # Only single-label images; 0 skipped (2 labels), 2 would exceed N=1, 3 has no label; stops after 5.
  np.testing.assert_array_equal(subsets.balanced_multilabel_subset(HAND, 1, True, seed=None), [1, 4, 5])
  np.testing.assert_array_equal(subsets.balanced_multilabel_subset(HAND, 2, True, seed=None), [1, 2, 4, 5, 6])


def test_greedy_balanced_rule_not_fully_balanced_by_hand():
  # 0 -> counts (1,1,0); 1, 2 exceed class 0; 4 exceeds class 1; 5 -> (1,1,1), full.
  np.testing.assert_array_equal(subsets.balanced_multilabel_subset(HAND, 1, False, seed=None), [0, 5])
  # N=2: 0 (1,1,0), 1 (2,1,0), 2 exceeds, 4 (2,2,0), 5 (2,2,1), 6 (2,2,2).
  np.testing.assert_array_equal(
    subsets.balanced_multilabel_subset(HAND, 2, False, seed=None), [0, 1, 4, 5, 6]
  )


def test_greedy_rule_never_exceeds_n_and_follows_the_seed():
  y = (np.random.default_rng(1).uniform(size=(3000, 20)) < 0.08).astype(np.int64)
  for fully in (True, False):
    chosen = subsets.balanced_multilabel_subset(y, 4, fully, seed=7)
    counts = y[chosen].sum(0)
    assert counts.max() <= 4
    if fully:
      assert np.all(y[chosen].sum(1) == 1) and np.all(counts == 4)
    np.testing.assert_array_equal(chosen, subsets.balanced_multilabel_subset(y, 4, fully, seed=7))
  assert not np.array_equal(
    subsets.balanced_multilabel_subset(y, 4, True, seed=7),
    subsets.balanced_multilabel_subset(y, 4, True, seed=8),
  )


@pytest.mark.parametrize("multi_label", [False, True])
def test_plan_splits_is_disjoint_and_deterministic(multi_label):
  rng = np.random.default_rng(2)
  labels = (
    (rng.uniform(size=(900, 6)) < 0.2).astype(np.int64) if multi_label else rng.integers(0, 6, size=900)
  )
  plan = subsets.plan_splits(labels, 5, seed=11, multi_label=multi_label, validation_size=100)
  lab, unl, val = set(plan.labeled), set(plan.unlabeled), set(plan.validation)
  assert len(val) == 100 and not (lab & val) and not (unl & val) and not (lab & unl)
  assert lab | unl | val == set(range(900))  # the pool is the rest of train
  again = subsets.plan_splits(labels, 5, seed=11, multi_label=multi_label, validation_size=100)
  for a, b in zip(
    (plan.labeled, plan.unlabeled, plan.validation), (again.labeled, again.unlabeled, again.validation)
  ):
    np.testing.assert_array_equal(a, b)
  other = subsets.plan_splits(labels, 5, seed=12, multi_label=multi_label, validation_size=100)
  assert not np.array_equal(plan.validation, other.validation)


def test_plan_splits_labeled_mode_and_pool_limit():
  labels = np.random.default_rng(3).integers(0, 4, size=200)
  plan = subsets.plan_splits(labels, 3, seed=0, unlabeled_mode="labeled", validation_size=20)
  np.testing.assert_array_equal(plan.labeled, plan.unlabeled)
  assert len(plan.labeled) == 12 and not set(plan.labeled) & set(plan.validation)
  limited = subsets.plan_splits(labels, 3, seed=0, validation_size=20, unlabeled_limit=50)
  assert len(limited.unlabeled) == 50
  full = subsets.plan_splits(labels, 0, seed=0, validation_size=20)
  assert len(full.labeled) == 180 and len(full.unlabeled) == 0
  with pytest.raises(ValueError, match="unlabeled_mode"):
    subsets.plan_splits(labels, 3, unlabeled_mode="test")


def test_split_plan_check_catches_overlaps():
  with pytest.raises(AssertionError, match="validation"):
    subsets.SplitPlan(np.array([1, 2]), np.array([3]), np.array([2])).check()
  with pytest.raises(AssertionError, match="pool"):
    subsets.SplitPlan(np.array([1, 2]), np.array([2, 3]), np.array([5])).check()


def test_stratified_subset_spreads_a_class_sorted_split_over_every_class():
  labels = np.repeat(np.arange(10), 200)  # sorted by class, as a folder dataset's test split
  chosen = subsets.stratified_subset(labels, 1000, seed=3)
  assert len(chosen) == 1000 and len(set(chosen.tolist())) == 1000
  np.testing.assert_array_equal(np.bincount(labels[chosen], minlength=10), [100] * 10)
  np.testing.assert_array_equal(chosen, subsets.stratified_subset(labels, 1000, seed=3))  # seeded
  assert not np.array_equal(chosen, subsets.stratified_subset(labels, 1000, seed=4))
  # A rare class gives its turns to the others; every image when size >= N.
  rare = np.array([0] * 50 + [1] * 2 + [2] * 50)
  assert np.bincount(rare[subsets.stratified_subset(rare, 20, seed=0)]).tolist() == [9, 2, 9]
  np.testing.assert_array_equal(subsets.stratified_subset(rare, 500, seed=0), np.arange(len(rare)))


def test_stratified_subset_of_multi_label_images_has_every_class():
  rng = np.random.default_rng(0)
  labels = np.zeros((300, 5), np.float32)
  labels[:250, 0] = 1  # class 0 is everywhere; the others are rare and sit at the end
  for c in range(1, 5):
    labels[250 + (c - 1) * 10 : 250 + c * 10, c] = 1
  labels[rng.integers(0, 250, 20), 1] = 1
  chosen = subsets.stratified_subset(labels, 20, seed=1)
  counts = labels[chosen].sum(axis=0)
  # 6 queues (5 classes, then the 10 images without a label) share 20 turns: 4, 4, 3, 3, 3, 3.
  assert len(chosen) == 20 and np.all(counts >= 3), counts
  assert np.count_nonzero(labels[chosen].sum(axis=1) == 0) == 3


if __name__ == "__main__":
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
