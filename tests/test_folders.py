"""Folder datasets (`folder:PATH`): every layout, class names, and the early, by-name check of every file.

Tiny PNGs (8-16 px) written with PIL in tmp_path.
"""

import logging
import os
import sys

import numpy as np
import pytest
from PIL import Image

from atcon_tf.data import datasets, folders
from atcon_tf.data.image_check import BadImagesError, check_images

CLASSES = ("cat", "dog", "emu")


def _write(folder, classes=CLASSES, per_class=5, size=(12, 10), seed=0):
  """PATH/<class>/<class>_<i>.png, random pixels; returns the written paths."""
  rng = np.random.default_rng(seed)
  paths = []
  for c in classes:
    os.makedirs(os.path.join(folder, c), exist_ok=True)
    for i in range(per_class):
      path = os.path.join(folder, c, f"{c}_{i}.png")
      Image.fromarray(rng.integers(0, 256, size=size + (3,), dtype=np.uint8)).save(path)
      paths.append(path)
  return paths


def _load(path, **kwargs):
  return datasets.load(f"folder:{path}", 8, **kwargs)


def _elements(source):
  return list(source.dataset().as_numpy_iterator())


def _images(source):
  return {e["image"].tobytes() for e in _elements(source)}


def _class_line(caplog):
  lines = [r.getMessage() for r in caplog.records if "classes:" in r.getMessage()]
  assert len(lines) == 1, [r.getMessage() for r in caplog.records]
  return lines[0]


@pytest.fixture(autouse=True)
def _info_logs(caplog):
  caplog.set_level(logging.INFO, logger="atcon_tf")


def test_train_and_test_folders(tmp_path, caplog):
  _write(str(tmp_path / "train"), per_class=4)
  _write(str(tmp_path / "test"), per_class=2, seed=1)
  splits = _load(tmp_path)
  info = splits.info
  assert info.class_names == list(CLASSES) and info.num_classes == 3 and not info.own_validation
  assert splits.validation is None  # the trainer carves it from train
  assert splits.train.num_examples == 12 and splits.test.num_examples == 6
  train = _elements(splits.train)
  assert [int(e["index"]) for e in train] == list(range(12))
  np.testing.assert_array_equal([int(e["label"]) for e in train], splits.train.labels)
  np.testing.assert_array_equal(splits.train.labels, np.repeat([0, 1, 2], 4))
  e = train[0]
  assert e["image"].shape == (8, 8, 3) and e["image"].dtype == np.uint8 and e["boxes"].shape == (0, 4)
  np.testing.assert_array_equal(e["size"], [12, 10])  # the original (height, width)
  assert _class_line(caplog).endswith(": 3 classes: cat, dog, emu (train 12, test 6)")
  assert "held out" not in info.description


def test_pixels_and_order_match_keras_image_dataset_from_directory(tmp_path):
  import keras

  _write(str(tmp_path / "train"), per_class=3, size=(13, 9))
  _write(str(tmp_path / "test"), per_class=1, seed=1)
  Image.fromarray(np.full((11, 14), 90, np.uint8)).save(tmp_path / "train" / "dog" / "gray.png")
  Image.fromarray(np.full((10, 12, 4), 200, np.uint8)).save(tmp_path / "train" / "emu" / "rgba.png")
  reference = keras.utils.image_dataset_from_directory(
    str(tmp_path / "train"), batch_size=None, shuffle=False, image_size=(8, 8), verbose=False
  )
  expected = [
    (np.clip(np.round(x), 0, 255).astype(np.uint8), int(y)) for x, y in reference.as_numpy_iterator()
  ]
  ours = _elements(_load(tmp_path).train)
  assert len(ours) == len(expected) == 11
  for e, (image, label) in zip(ours, expected):
    np.testing.assert_array_equal(e["image"], image)
    assert int(e["label"]) == label


@pytest.mark.parametrize("val", ["val", "validation"])
def test_train_validation_and_test_folders(tmp_path, caplog, val):
  _write(str(tmp_path / "train"), per_class=4)
  _write(str(tmp_path / val), per_class=1, seed=2)
  _write(str(tmp_path / "test"), per_class=2, seed=1)
  splits = _load(tmp_path)
  assert splits.info.own_validation and splits.validation.num_examples == 3
  np.testing.assert_array_equal(splits.validation.labels, [0, 1, 2])
  assert [int(e["index"]) for e in _elements(splits.validation)] == [0, 1, 2]
  assert splits.test.num_examples == 6 and splits.train.num_examples == 12
  assert f"{{train,{val},test}}" in splits.info.description
  assert _class_line(caplog).endswith("(train 12, validation 3, test 6)")


def test_train_and_val_without_test_carve_a_fixed_test_set_from_train(tmp_path, caplog):
  # Read as class folders before: "ValueError: '0' is not in list".
  _write(str(tmp_path / "train"), classes=("0", "1"), per_class=10)
  _write(str(tmp_path / "val"), classes=("0", "1"), per_class=2, seed=2)
  splits = _load(tmp_path)
  info = splits.info
  assert info.class_names == ["0", "1"] and info.own_validation
  assert "no test/ folder: fixed-seed 20% of train held out as test" in info.description
  assert splits.validation.num_examples == 4
  assert splits.train.num_examples == 16 and splits.test.num_examples == 4
  assert not _images(splits.train) & _images(splits.test)
  assert not (_images(splits.train) | _images(splits.test)) & _images(splits.validation)
  assert _class_line(caplog).endswith("(train 16, validation 4, test 4 = fixed-seed 20% held out)")
  again = _load(tmp_path)  # the carved test set does not move
  assert _images(again.test) == _images(splits.test)


def test_train_only_carves_a_fixed_test_set(tmp_path, caplog):
  _write(str(tmp_path / "train"), per_class=5)
  splits = _load(tmp_path)
  assert splits.validation is None and not splits.info.own_validation
  assert splits.train.num_examples == 12 and splits.test.num_examples == 3
  assert "no test/ folder: fixed-seed 20% of train held out as test" in splits.info.description
  assert "test 3 = fixed-seed 20% held out" in _class_line(caplog)
  assert [int(e["index"]) for e in _elements(splits.test)] == [0, 1, 2]


def test_class_folders_without_split_folders_hold_out_20_percent(tmp_path, caplog):
  # A class may be called "train": without train/<class>/ folders it is a class like the others.
  _write(str(tmp_path), classes=("bus", "car", "train"), per_class=5)
  splits = _load(tmp_path)
  assert splits.info.class_names == ["bus", "car", "train"]
  assert splits.train.num_examples == 12 and splits.test.num_examples == 3 and splits.validation is None
  assert "fixed-seed 20% of them held out as test" in splits.info.description
  assert "3 classes: bus, car, train (train 12, test 3 = fixed-seed 20% held out)" in _class_line(caplog)


def test_class_names_are_train_folders_in_sorted_order(tmp_path, caplog):
  classes = ("zebra", "Apple", "mango", "10", "9")
  _write(str(tmp_path / "train"), classes=classes, per_class=2)
  _write(str(tmp_path / "test"), classes=classes, per_class=1)
  os.makedirs(tmp_path / "train" / ".ipynb_checkpoints")  # hidden: not a class
  splits = _load(tmp_path)
  assert splits.info.class_names == sorted(classes) == ["10", "9", "Apple", "mango", "zebra"]
  assert ": 5 classes: 10, 9, Apple, mango, zebra (" in _class_line(caplog)
  assert [int(e["label"]) for e in _elements(splits.test)] == [0, 1, 2, 3, 4]  # labels index the sorted list


def test_a_test_split_may_lack_classes_of_train(tmp_path):
  _write(str(tmp_path / "train"), per_class=3)
  _write(str(tmp_path / "test"), classes=("emu",), per_class=2)
  os.makedirs(tmp_path / "test" / "cat")  # an empty class folder is the same as a missing one
  splits = _load(tmp_path)
  assert splits.info.class_names == list(CLASSES)
  np.testing.assert_array_equal(splits.test.labels, [2, 2])  # train's class list
  assert [int(e["label"]) for e in _elements(splits.test)] == [2, 2]


def test_a_test_class_that_train_lacks_is_named(tmp_path):
  _write(str(tmp_path / "train"), classes=("cat", "dog"), per_class=3)
  _write(str(tmp_path / "test"), classes=("cat", "dog", "yak"), per_class=1)
  with pytest.raises(folders.FolderDatasetError) as error:
    _load(tmp_path)
  text = str(error.value)
  assert "test split" in text and "yak" in text and str(tmp_path / "train") in text
  assert "cat, dog" in text and "\n" not in text


def test_empty_class_folders_and_no_images_are_one_clear_sentence(tmp_path):
  _write(str(tmp_path / "a" / "train"), per_class=2)
  os.makedirs(tmp_path / "a" / "train" / "fox")
  with pytest.raises(folders.FolderDatasetError, match=r"class folder\(s\) .*fox hold no image files"):
    _load(tmp_path / "a")
  for c in CLASSES:
    os.makedirs(tmp_path / "b" / c)
  (tmp_path / "b" / "cat" / "notes.txt").write_text("not an image")
  with pytest.raises(folders.FolderDatasetError, match=r"no image files \(\.bmp .* in the class folders"):
    _load(tmp_path / "b")
  os.makedirs(tmp_path / "c")
  with pytest.raises(folders.FolderDatasetError, match="has no class sub-folders"):
    _load(tmp_path / "c")
  _write(str(tmp_path / "d" / "train"), per_class=2)
  os.makedirs(tmp_path / "d" / "test" / "cat")
  with pytest.raises(folders.FolderDatasetError, match=r"no image files .* in .*test\.$"):
    _load(tmp_path / "d")


def test_split_folders_without_train_are_not_read_as_classes(tmp_path):
  _write(str(tmp_path / "val"), per_class=1)
  _write(str(tmp_path / "test"), per_class=1)
  with pytest.raises(folders.FolderDatasetError, match=r"only split folders \(test/, val/\)"):
    _load(tmp_path)
  os.makedirs(tmp_path / "train")  # images directly in train/, no class folders
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "train" / "a.png")
  with pytest.raises(folders.FolderDatasetError, match=r"only split folders \(test/, train/, val/\)"):
    _load(tmp_path)
  _write(str(tmp_path / "train"), per_class=2)
  _write(str(tmp_path / "validation"), per_class=1)
  with pytest.raises(folders.FolderDatasetError, match="both validation/ and val/ exist"):
    _load(tmp_path)


def _corrupt(path, keep=60):
  with open(path, "r+b") as f:
    f.truncate(keep)


def test_bad_files_in_train_and_test_are_all_named_before_anything_else(tmp_path):
  train = _write(str(tmp_path / "train"), per_class=3)
  test = _write(str(tmp_path / "test"), per_class=2, seed=1)
  _corrupt(
    train[4]
  )  # a truncated PNG: today "InvalidArgumentError ... Invalid PNG data", late, naming no file
  _corrupt(test[1], keep=0)
  (tmp_path / "train" / "dog" / "readme.jpg").write_text("not an image")
  with pytest.raises(BadImagesError) as error:
    _load(tmp_path)
  assert isinstance(error.value, ValueError)
  text = str(error.value)
  assert f"{train[4]}: not an image (Invalid PNG data" in text
  assert f"{test[1]}: empty file (0 bytes)" in text
  assert f"{tmp_path / 'train' / 'dog' / 'readme.jpg'}: not an image (Unknown image file format" in text
  assert "3 of 16 image files cannot be used" in text and "--skip_bad_images" in text
  assert {p for p, _ in error.value.bad} == {
    train[4],
    test[1],
    str(tmp_path / "train" / "dog" / "readme.jpg"),
  }


def test_skip_bad_images_loads_without_them_and_logs_the_count(tmp_path, caplog):
  train = _write(str(tmp_path / "train"), per_class=3)
  test = _write(str(tmp_path / "test"), per_class=2, seed=1)
  _corrupt(train[4])
  _corrupt(test[1])
  splits = _load(tmp_path, skip_bad_images=True)
  assert splits.train.num_examples == 8 and splits.test.num_examples == 5
  np.testing.assert_array_equal(splits.train.labels, [0, 0, 0, 1, 1, 2, 2, 2])
  assert [int(e["index"]) for e in _elements(splits.train)] == list(range(8))  # positions, after skipping
  assert "2 unusable image files skipped" in splits.info.description
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert any("skipping 2 of 15 image files" in w and train[4] in w and test[1] in w for w in warnings)
  assert _class_line(caplog).endswith("(train 8, test 5)")


def test_skipping_every_image_of_a_class_is_an_error(tmp_path):
  train = _write(str(tmp_path / "train"), per_class=2)
  _write(str(tmp_path / "test"), per_class=1)
  _corrupt(train[2])
  _corrupt(train[3])
  with pytest.raises(folders.FolderDatasetError, match="dog hold no usable images"):
    _load(tmp_path, skip_bad_images=True)


def test_at_most_20_bad_files_are_listed(tmp_path):
  paths = []
  for i in range(25):
    path = tmp_path / f"bad{i:02d}.png"
    path.write_bytes(b"\x89PNG broken")
    paths.append(str(path))
  bad = check_images(paths, verbose=0)
  assert [p for p, _ in bad] == paths
  text = str(BadImagesError("folder dataset X", bad, 30))
  assert "25 of 30 image files" in text and "... and 5 more" in text
  assert paths[19] in text and paths[20] not in text


def test_the_check_shows_a_progress_bar_on_a_terminal(tmp_path, capsys, monkeypatch):
  _write(str(tmp_path / "train"), per_class=2)
  monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
  _load(tmp_path)
  assert "6/6" in capsys.readouterr().out


if __name__ == "__main__":
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
