"""Dataset loading through the real code paths: tfds mock_data for svhn_cropped and voc, folders of PNGs,
the offline house_numbers builder, box conventions and preprocessing."""

import os
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from atcon_tf.data import augmentation, box_conventions, canonical, datasets, tfds_sources
from atcon_tf.data import house_numbers as hn

ELEMENT_KEYS = {"image", "label", "boxes", "box_labels", "size", "index"}


def _elements(source, indices=None):
  return list(source.dataset(indices).as_numpy_iterator())


def test_svhn_cropped_through_mock_data():
  with tfds.testing.mock_data(num_examples=12):
    splits = datasets.load("svhn", 16)
    raw = list(tfds.load("svhn_cropped", split="train", shuffle_files=False).as_numpy_iterator())
    assert splits.info.num_classes == 10 and not splits.info.multi_label and not splits.info.has_boxes
    assert splits.validation is None  # carved from train by the trainer, never from test
    assert splits.train.num_examples == 12 and splits.test.num_examples == 12
    np.testing.assert_array_equal(splits.train.labels, [int(r["label"]) for r in raw])
    chosen = _elements(splits.train, [2, 5, 7])
    assert [int(e["index"]) for e in chosen] == [2, 5, 7]
    for e in chosen:
      assert set(e) == ELEMENT_KEYS
      assert e["image"].shape == (16, 16, 3) and e["image"].dtype == np.uint8
      assert int(e["label"]) == int(raw[int(e["index"])]["label"])
      assert e["boxes"].shape == (0, 4)
      np.testing.assert_array_equal(e["size"], [32, 32])


@pytest.mark.parametrize("name, tfds_name", [("voc2007", "voc/2007"), ("voc2012", "voc/2012")])
def test_voc_through_mock_data_ignores_difficult_for_labels_and_keeps_all_boxes(name, tfds_name):
  with tfds.testing.mock_data(num_examples=6):
    splits = datasets.load(name, 24)
    split = "train+validation" if name == "voc2007" else "train"
    raw = list(tfds.load(tfds_name, split=split, shuffle_files=False).as_numpy_iterator())
    info = splits.info
    assert info.multi_label and info.has_boxes and info.num_classes == 20 and info.box_convention == "voc"
    assert splits.train.labels.shape == (len(raw), 20)
    for e, r in zip(_elements(splits.train), raw):
      o = r["objects"]
      n = min(
        len(o["label"]), len(o["is_difficult"]), len(o["bbox"])
      )  # mock lengths differ; real ones do not
      expected = np.zeros(20, np.float32)
      expected[o["label"][:n][~o["is_difficult"][:n]]] = 1
      np.testing.assert_array_equal(e["label"], expected)
      np.testing.assert_array_equal(e["boxes"], o["bbox"][:n])  # difficult boxes kept for §6.2
      np.testing.assert_array_equal(e["box_labels"], o["label"][:n])
      np.testing.assert_array_equal(e["size"], r["image"].shape[:2])
      assert e["image"].shape == (24, 24, 3)
    batch = next(iter(canonical.padded_eval_batches(splits.test.dataset(), 4, 20, True)))
    assert batch["boxes"].shape == (4, canonical.MAX_BOXES, 4) and batch["label"].shape == (4, 20)


def test_voc_multi_hot_by_hand():
  label = tfds_sources.voc_multi_hot(tf.constant([3, 7, 3, 12]), tf.constant([False, True, False, True]))
  expected = np.zeros(20, np.float32)
  expected[3] = 1
  np.testing.assert_array_equal(label.numpy(), expected)
  np.testing.assert_array_equal(
    tfds_sources.voc_multi_hot(tf.constant([5]), tf.constant([True])).numpy(), np.zeros(20)
  )


def test_missing_tfds_data_explains_how_to_provide_it(tmp_path):
  with pytest.raises(datasets.DataUnavailableError) as error:
    datasets.load("svhn", 16, data_dir=str(tmp_path))
  text = str(error.value)
  assert "tfds build svhn_cropped" in text and str(tmp_path) in text and "--data_dir" in text


def _write_pngs(folder, classes=("cat", "dog", "emu"), per_class=5, size=(20, 24)):
  rng = np.random.default_rng(0)
  for c in classes:
    os.makedirs(os.path.join(folder, c), exist_ok=True)
    for i in range(per_class):
      Image.fromarray(rng.integers(0, 255, size=size + (3,), dtype=np.uint8)).save(
        os.path.join(folder, c, f"{c}_{i}.png")
      )


def test_folder_dataset_holds_out_a_fixed_test_set(tmp_path):
  _write_pngs(str(tmp_path))
  splits = datasets.load(f"folder:{tmp_path}", 16)
  assert splits.info.class_names == ["cat", "dog", "emu"] and not splits.info.has_boxes
  assert splits.train.num_examples + splits.test.num_examples == 15 and splits.test.num_examples == 3
  train, test = _elements(splits.train), _elements(splits.test)
  assert [int(e["index"]) for e in train] == list(range(12))
  np.testing.assert_array_equal([int(e["label"]) for e in train], splits.train.labels)
  images = lambda es: {e["image"].tobytes() for e in es}  # noqa: E731
  assert not images(train) & images(test)
  assert train[0]["image"].shape == (16, 16, 3) and train[0]["image"].dtype == np.uint8
  np.testing.assert_array_equal(train[0]["size"], [20, 24])  # the original (height, width)
  again = datasets.load(f"folder:{tmp_path}", 16)  # the held-out test set does not move
  assert images(_elements(again.test)) == images(test)


def test_folder_dataset_uses_train_test_subfolders(tmp_path):
  _write_pngs(str(tmp_path / "train"), per_class=4)
  _write_pngs(str(tmp_path / "test"), per_class=2)
  splits = datasets.load(f"folder:{tmp_path}", 16)
  assert splits.train.num_examples == 12 and splits.test.num_examples == 6 and splits.validation is None
  np.testing.assert_array_equal(np.bincount(splits.train.labels), [4, 4, 4])


def test_house_numbers_canonical_elements_match_the_generator(tmp_path):
  splits = datasets.load(
    "house_numbers",
    24,
    data_dir=str(tmp_path),
    house_numbers_config="multi",
    house_numbers_sizes={"train": 12, "validation": 4, "test": 6},
  )
  assert splits.info.multi_label and splits.validation.num_examples == 4
  assert splits.train.labels.shape == (12, 10)
  for e in _elements(splits.train, [0, 3, 11]):
    cfg = hn.derive_config("multi", 24, {"train": 12, "validation": 4, "test": 6})
    ex = hn.generate_example(cfg, "train", int(e["index"]))
    np.testing.assert_array_equal(e["image"], ex["image"])
    np.testing.assert_array_equal(e["label"], ex["label"].astype(np.float32))
    np.testing.assert_allclose(e["boxes"], ex["bbox"], atol=1e-6)
    np.testing.assert_allclose(box_conventions.edge_boxes(e["boxes"], 24, "edge"), ex["boxes"], atol=1e-4)


def test_box_conventions_by_hand():
  # house_numbers: pixel-edge box rows 2..5, cols 4..7 of a 10 px image.
  edge = np.array([[0.2, 0.4, 0.6, 0.8]])
  np.testing.assert_allclose(box_conventions.edge_boxes(edge, 10, "edge"), [[2, 4, 6, 8]])
  np.testing.assert_allclose(box_conventions.wsd_boxes(edge, 10, "edge"), [[1, 3, 6, 8]])
  from atcon_tf.metrics import boxes_to_mask

  mask = boxes_to_mask(box_conventions.wsd_boxes(edge, 10, "edge"), 10, strict=True)
  expected = np.zeros((10, 10), bool)
  expected[2:6, 4:8] = True
  np.testing.assert_array_equal(mask, expected)  # the strict §6.2 rule covers exactly the box's pixels
  # tfds voc: (pixel - 1) / size for a 1-based VOC box xmin=11..xmax=30 on a 50x100 (h x w) image.
  voc = np.array([[(6 - 1) / 50, (11 - 1) / 100, (20 - 1) / 50, (30 - 1) / 100]])
  np.testing.assert_allclose(box_conventions.wsd_boxes(voc, (50, 100), "voc"), [[6, 11, 20, 30]])
  np.testing.assert_allclose(box_conventions.edge_boxes(voc, (50, 100), "voc"), [[5, 10, 20, 30]])


@pytest.mark.parametrize("policy", ["none", "digits", "flip", "voc"])
def test_augment_keeps_shape_and_dtype(policy):
  image = tf.constant(np.random.default_rng(1).integers(0, 256, size=(16, 16, 3), dtype=np.uint8))
  out = augmentation.augment(image, policy)
  assert out.shape == (16, 16, 3) and out.dtype == tf.uint8
  if policy == "none":
    np.testing.assert_array_equal(out.numpy(), image.numpy())


if __name__ == "__main__":
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
