"""Datasets. Importing this package registers the offline tfds builder `house_numbers`."""

from atcon_tf.data import house_numbers
from atcon_tf.data.house_numbers import HouseNumbers, HouseNumbersConfig, generate_example

__all__ = ["house_numbers", "HouseNumbers", "HouseNumbersConfig", "generate_example"]
