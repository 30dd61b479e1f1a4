"""Fashion-MNIST through both offline sources: tfds `fashion_mnist` (mock_data: the real loading code) and the
Debian idx files (small idx files written here, so no package is needed), plus the one-sentence error."""

import gzip
import os
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from atcon_tf.data import datasets, fashion_mnist
from atcon_tf.data.tfds_sources import DataUnavailableError


def _write_idx(path, array, compress):
  array = np.asarray(array, np.uint8)
  header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">i4").tobytes()
  opener = gzip.open if compress else open
  with opener(path, "wb") as f:
    f.write(header + array.tobytes())


def _idx_folder(folder, n_train=6, n_test=4, compress=True):
  rng = np.random.default_rng(0)
  arrays = {}
  for split, n in (("train", n_train), ("test", n_test)):
    images = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
    labels = (np.arange(n) * 3) % 10
    images_stem, labels_stem = fashion_mnist.FILES[split]
    suffix = ".gz" if compress else ""
    _write_idx(os.path.join(folder, images_stem + suffix), images, compress)
    _write_idx(os.path.join(folder, labels_stem + suffix), labels, compress)
    arrays[split] = (images, labels)
  return arrays


def test_read_idx_header_and_values(tmp_path):
  values = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
  path = str(tmp_path / "x-idx3-ubyte")
  _write_idx(path, values, compress=False)
  with open(path, "rb") as f:  # the format by hand: 0 0 8 3, then dims 2 3 4 as big-endian int32
    assert f.read(16) == bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4])
  np.testing.assert_array_equal(fashion_mnist.read_idx(path), values)
  with open(path, "ab") as f:
    f.write(b"\x00")
  with pytest.raises(ValueError, match="values for the shape"):
    fashion_mnist.read_idx(path)


@pytest.mark.parametrize("compress", [True, False])
def test_idx_files_become_rgb_canonical_elements(tmp_path, compress):
  arrays = _idx_folder(str(tmp_path), compress=compress)
  splits = fashion_mnist.fashion_mnist_splits(14, data_dir=str(tmp_path / "no_tfds"), folder=str(tmp_path))
  assert splits.info.num_classes == 10 and splits.validation is None and not splits.info.has_boxes
  assert "idx files" in splits.info.description
  assert splits.train.num_examples == 6 and splits.test.num_examples == 4
  np.testing.assert_array_equal(splits.train.labels, arrays["train"][1])
  elements = list(splits.test.dataset([1, 3]).as_numpy_iterator())
  assert [int(e["index"]) for e in elements] == [1, 3]
  for e in elements:
    image, label = arrays["test"][0][e["index"]], arrays["test"][1][e["index"]]
    assert e["image"].shape == (14, 14, 3) and e["image"].dtype == np.uint8
    # gray repeated over the channels, then resized: the three channels stay equal
    np.testing.assert_array_equal(e["image"][..., 0], e["image"][..., 2])
    assert int(e["label"]) == int(label)
    np.testing.assert_array_equal(e["size"], [28, 28])
    assert abs(float(e["image"].mean()) - float(image.mean())) < 3.0  # an antialiased resize keeps the mean


def test_same_size_keeps_the_pixels(tmp_path):
  arrays = _idx_folder(str(tmp_path))
  splits = fashion_mnist.fashion_mnist_splits(28, data_dir=str(tmp_path / "no_tfds"), folder=str(tmp_path))
  first = next(splits.train.dataset().as_numpy_iterator())
  np.testing.assert_array_equal(first["image"][..., 1], arrays["train"][0][0])


def test_tfds_fashion_mnist_is_preferred_when_prepared():
  with tfds.testing.mock_data(num_examples=8):
    splits = datasets.load("fashion_mnist", 16)
    raw = list(tfds.load("fashion_mnist", split="test", shuffle_files=False).as_numpy_iterator())
    assert "tfds" in splits.info.description
    assert splits.train.num_examples == 8 and splits.test.num_examples == 8
    elements = list(splits.test.dataset().as_numpy_iterator())
    assert [int(e["label"]) for e in elements] == [int(r["label"]) for r in raw]
    assert elements[0]["image"].shape == (16, 16, 3)
    np.testing.assert_array_equal(elements[0]["size"], raw[0]["image"].shape[:2])


def test_missing_everywhere_says_how_to_get_either(tmp_path, monkeypatch):
  monkeypatch.setenv(fashion_mnist.DIR_ENV, str(tmp_path / "nothing"))
  with pytest.raises(DataUnavailableError) as error:
    datasets.load("fashion_mnist", 16, data_dir=str(tmp_path / "no_tfds"))
  message = str(error.value)
  assert "apt-get install dataset-fashion-mnist" in message and "tfds build fashion_mnist" in message
  assert message.count(". ") == 0 and "\n" not in message  # one sentence


if __name__ == "__main__":
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
