"""The synthetic `house_numbers` scenes: determinism, disjoint splits, exact boxes, offline tfds build."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from atcon_tf.data import house_numbers as hn
from atcon_tf.data import house_numbers_parts as parts
from atcon_tf.data.house_numbers_tfds import HouseNumbers

S = 48
SPLITS = hn.SPLITS


def _examples(config, split, n=12, size=S, **kw):
  return [hn.generate_example(config, split, i, size, **kw) for i in range(n)]


@pytest.mark.parametrize("config", ["single", "multi"])
def test_same_index_gives_identical_bytes(config):
  a = hn.generate_example(config, "test", 7, S)
  b = hn.generate_example(config, "test", 7, S)
  assert a["image"].tobytes() == b["image"].tobytes()
  np.testing.assert_array_equal(a["boxes"], b["boxes"])
  np.testing.assert_array_equal(a["labels"], b["labels"])
  assert a["image"].shape == (S, S, 3) and a["image"].dtype == np.uint8
  assert hn.generate_example(config, "test", 8, S)["image"].tobytes() != a["image"].tobytes()
  assert hn.generate_example(config, "train", 7, S)["image"].tobytes() != a["image"].tobytes()


def test_parts_are_disjoint_between_splits():
  for i, s in enumerate(SPLITS):
    for t in SPLITS[i + 1 :]:
      assert not set(parts.PHOTOS[s]) & set(parts.PHOTOS[t])
      assert not set(parts.FONTS[s]) & set(parts.FONTS[t])
      assert not set(parts.glyph_pool(s)) & set(parts.glyph_pool(t))
  sizes = [len(parts.glyph_pool(s)) for s in SPLITS]
  assert sum(sizes) == 1797 and min(sizes) > 200
  # every class has handwriting in every split
  targets = load_digits().target
  for s in SPLITS:
    assert set(targets[parts.glyph_pool(s)]) == set(range(10))


@pytest.mark.parametrize("config", ["single", "multi"])
def test_examples_only_use_parts_of_their_split(config):
  for split in SPLITS:
    used_fonts, used_glyphs = set(), set()
    for ex in _examples(config, split, n=15):
      assert ex["meta"]["photo"] in parts.PHOTOS[split]
      used_fonts |= set(ex["meta"]["fonts"])
      used_glyphs |= set(ex["meta"]["glyph_indices"])
    assert used_fonts and used_fonts <= set(parts.FONTS[split])
    assert used_glyphs and used_glyphs <= set(parts.glyph_pool(split).tolist())


@pytest.mark.parametrize("config", ["single", "multi"])
def test_boxes_are_tight_boxes_of_the_digit_alpha(config):
  for ex in _examples(config, "validation", with_alpha=True):
    boxes, alpha = ex["boxes"], ex["alpha"]
    assert len(boxes) == len(ex["labels"]) == len(alpha) >= 1
    assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2:] <= S) and np.all(boxes[:, 2:] > boxes[:, :2])
    np.testing.assert_allclose(ex["bbox"], boxes / S)
    for (y0, x0, y1, x1), a in zip(boxes.astype(int), alpha):
      rows, cols = np.nonzero(a > 0.3)
      assert (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1) == (y0, x0, y1, x1)
      h = y1 - y0
      assert S / 5 * 0.5 <= h <= S / 2.6 * 1.35
    # digit boxes do not overlap each other or a distractor
    all_boxes = np.concatenate([boxes, ex["meta"]["distractor_boxes"]])
    for i in range(len(all_boxes)):
      for j in range(i + 1, len(all_boxes)):
        a, b = all_boxes[i], all_boxes[j]
        assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def test_digits_stand_out_from_their_local_background():
  """Contrast floor: glyph pixels differ in luminance from the box's non-glyph pixels (after blur/noise/JPEG)."""
  luma = np.array([0.299, 0.587, 0.114])
  diffs = []
  for ex in _examples("multi", "train", n=20, size=64, with_alpha=True):
    lum = ex["image"].astype(float) @ luma
    for (y0, x0, y1, x1), a in zip(ex["boxes"].astype(int), ex["alpha"]):
      box_lum, box_a = lum[y0:y1, x0:x1], a[y0:y1, x0:x1]
      if (box_a > 0.8).sum() and (box_a == 0).sum():
        diffs.append(abs(box_lum[box_a > 0.8].mean() - np.median(box_lum[box_a == 0])))
  assert len(diffs) > 20 and np.median(diffs) > 50


def test_single_and_multi_labels():
  for ex in _examples("single", "test", n=20):
    assert isinstance(ex["label"], int) and 0 <= ex["label"] <= 9
    assert ex["labels"].tolist() == [ex["label"]] and len(ex["boxes"]) == 1
  counts = set()
  for ex in _examples("multi", "test", n=30):
    labels = ex["labels"].tolist()
    assert len(set(labels)) == len(labels) and 1 <= len(labels) <= 3
    assert ex["label"].shape == (10,) and ex["label"].sum() == len(labels)
    assert sorted(np.flatnonzero(ex["label"]).tolist()) == sorted(labels)
    assert len(ex["boxes"]) == len(labels)
    counts.add(len(labels))
  assert counts == {1, 2, 3}


def test_tfds_builder_prepares_and_loads_offline(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  kwargs = dict(image_size=32, split_sizes={"train": 6, "validation": 3, "test": 3})
  for config in ("single", "multi"):
    builder = HouseNumbers(config=config, data_dir=str(tmp_path), **kwargs)
    builder.download_and_prepare()
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {
      "train": 6,
      "validation": 3,
      "test": 3,
    }
    assert "synthetic" in builder.info.description.lower() and "not svhn" in builder.info.citation.lower()
    ds = tfds.load(f"house_numbers/{config}", split="test", data_dir=str(tmp_path), builder_kwargs=kwargs)
    spec = ds.element_spec
    assert spec["image"].shape == (32, 32, 3)
    assert spec["objects"]["bbox"].shape.as_list() == [None, 4]
    assert spec["label"].shape == ((10,) if config == "multi" else ())
    for ex in tfds.as_numpy(ds):
      ref = hn.generate_example(builder.builder_config, "test", int(ex["index"]))
      np.testing.assert_array_equal(ex["image"], ref["image"])  # PNG is lossless: bit-for-bit
      np.testing.assert_allclose(ex["objects"]["bbox"], ref["bbox"], atol=1e-6)
      np.testing.assert_array_equal(ex["objects"]["label"], ref["labels"])
      np.testing.assert_array_equal(ex["label"], ref["label"])


if __name__ == "__main__":
  import sys

  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
