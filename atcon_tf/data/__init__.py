"""Datasets. Importing this package registers the offline tfds builder `house_numbers`."""

from atcon_tf.data import house_numbers, house_numbers_tfds
from atcon_tf.data.house_numbers import HouseNumbersConfig, generate_example
from atcon_tf.data.house_numbers_tfds import HouseNumbers

__all__ = ["house_numbers", "house_numbers_tfds", "HouseNumbers", "HouseNumbersConfig", "generate_example"]

# Trainer datasets and few-label splits (see datasets.py / subsets.py).
from atcon_tf.data import datasets, subsets  # noqa: E402
from atcon_tf.data.subsets import SplitPlan, balanced_multilabel_subset, plan_splits, single_label_subset  # noqa: E402,E501

__all__ += [
  "datasets",
  "subsets",
  "SplitPlan",
  "balanced_multilabel_subset",
  "plan_splits",
  "single_label_subset",
]
