"""trainers.evaluation: the comparison's tests and table on hand-made per-image values, the settings each
model records, and one end-to-end run of two tiny models on a hand-built dataset with boxes."""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest

from trainers import evaluation

INFO = types.SimpleNamespace(
  name="toy",
  multi_label=False,
  num_classes=3,
  has_boxes=True,
  class_names=["a", "b", "c"],
  box_convention="edge",
)


def _outputs(pred, labels, pairs=4):
  n = len(labels)
  return {
    "label": np.asarray(labels),
    "pred": np.asarray(pred),
    "index": np.arange(n),
    "pair_image": np.arange(pairs),
    "pair_class": np.zeros(pairs, np.int64),
  }


def _per(correct, consistency, iou, hits):
  return {
    "correct": np.asarray(correct, np.float64),
    "consistency": np.asarray(consistency, np.float64),
    "wsd_iou": np.asarray(iou, np.float64),
    "pointing_game": np.asarray(hits, np.float64),
    "energy_pointing_game": np.asarray(hits, np.float64) * 0.5,
  }


def _pair():
  """10 images: a right on 0-4 and 9, b right on 0-3 and 5-9 -> discordant: only a on 4, only b on 5-8."""
  labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
  pred_a = np.array([0, 1, 2, 0, 1, 0, 1, 2, 0, 0])
  pred_b = np.array([0, 1, 2, 0, 2, 2, 0, 1, 2, 0])
  correct_a, correct_b = (pred_a == labels), (pred_b == labels)
  iou_a = np.array([0.5, 0.4, np.nan, 0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.6])
  iou_b = np.array([0.6, 0.5, 0.7, np.nan, 0.2, 0.3, 0.3, 0.3, 0.3, 0.7])
  out_a, out_b = _outputs(pred_a, labels), _outputs(pred_b, labels)
  per_a = _per(correct_a, np.linspace(0.1, 0.2, 10), iou_a, [1, 0, 0, 1])
  per_b = _per(correct_b, np.linspace(0.3, 0.4, 10), iou_b, [1, 1, 0, 1])
  return out_a, per_a, out_b, per_b


def test_paired_comparison_names_its_tests_and_uses_the_same_images():
  out_a, per_a, out_b, per_b = _pair()
  options = evaluation.EvalOptions(pvalue_resamples=200, seed=0)
  result = evaluation.compare(out_a, per_a, out_b, per_b, INFO, options)
  acc = result["accuracy"]
  assert acc["test"] == "mcnemar" and acc["resamples"] is None
  assert (acc["only_a_correct"], acc["only_b_correct"]) == (1, 4)
  assert acc["difference"] == pytest.approx(0.9 - 0.6)
  # 1 vs 4 discordant: 2 (C(5,0) + C(5,1)) / 2^5
  assert acc["p_value"] == pytest.approx(2 * (math.comb(5, 0) + math.comb(5, 1)) / 2**5)
  for key in ("macro_f1", "wsd_iou", "pointing_game", "energy_pointing_game", "consistency"):
    assert result[key]["test"] == "sign_flip", key
    assert 0.0 < result[key]["p_value"] <= 1.0
  # WSD IoU on the images both classify correctly with both IoUs finite: images 0, 1, 9 (2 and 3 have a NaN)
  iou = result["wsd_iou"]
  assert iou["n_both_correct"] == 3
  assert iou["a_on_both_correct"] == pytest.approx((0.5 + 0.4 + 0.6) / 3)
  assert iou["difference"] == pytest.approx(0.1)
  # 3 differing images, all +0.1: 2^3 = 8 <= 10000 resamples -> exact, only the identity and the full
  # swap reach |mean| = 0.1: p = 2/8
  assert iou["p_value"] == pytest.approx(0.25)
  # pointing: one discordant pair (b hits pair 1): exact p = 2/2 = 1
  assert result["pointing_game"]["p_value"] == 1.0
  # consistency: b is 0.2 higher on every image, 10 images differ: exact 2 / 2^10
  assert result["consistency"]["p_value"] == pytest.approx(2 / 1024)
  out_b["index"] = out_b["index"][::-1]
  with pytest.raises(ValueError, match="same images"):
    evaluation.compare(out_a, per_a, out_b, per_b, INFO, options)


def test_pooled_comparison_is_the_authors_test():
  out_a, per_a, out_b, per_b = _pair()
  options = evaluation.EvalOptions(pvalue_resamples=50, pvalue_test="pooled")
  result = evaluation.compare(out_a, per_a, out_b, per_b, INFO, options)
  assert {v["test"] for v in result.values()} == {"pooled_bootstrap"}
  assert result["macro_f1"]["resamples"] == 50
  assert result["accuracy"]["resamples"] == evaluation.MEAN_PVALUE_RESAMPLES
  with pytest.raises(ValueError, match="pvalue_test"):
    evaluation.EvalOptions(pvalue_test="welch")


def _results(comparison):
  metrics = {"accuracy": {"estimate": 0.6, "lower": 0.3, "upper": 0.9}, "consistency": {"estimate": 0.1}}
  return {
    "dataset": "toy",
    "num_images": 10,
    "ci": 0.9,
    "bootstrap_resamples": 20,
    "loss": {
      "attention": "gb_mask",
      "similarity": "pearson",
      "mask_intensity": 8.0,
      "source": "recorded by 'b'",
    },
    "models": {"a": {"metrics": metrics}, "b": {"metrics": metrics}},
    "comparison": {"metrics": comparison},
  }


def test_table_notes_say_which_test_gave_each_pvalue():
  out_a, per_a, out_b, per_b = _pair()
  paired = evaluation.compare(out_a, per_a, out_b, per_b, INFO, evaluation.EvalOptions(pvalue_resamples=30))
  table = evaluation.format_table(_results(paired))
  accuracy_row = next(line for line in table.splitlines() if line.startswith("| accuracy"))
  assert [c.strip() for c in accuracy_row.split("|")[-3:-1]] == ["+0.300", "0.375"]  # McNemar: 12/32
  assert (
    "p-values: accuracy: exact McNemar test; macro-F1: paired sign-flip permutation test, 30 "
    "resamples; WSD IoU, pointing game, energy pointing, consistency: paired sign-flip permutation "
    "test, 10000 resamples. A sign-flip test enumerates" in table
  )
  assert "WSD IoU difference and p-value on the 3 images both models classify correctly" in table
  assert "attention=gb_mask, similarity=pearson, w=8 (recorded by 'b')" in table
  pooled = evaluation.compare(
    out_a, per_a, out_b, per_b, INFO, evaluation.EvalOptions(pvalue_resamples=30, pvalue_test="pooled")
  )
  table = evaluation.format_table(_results(pooled))
  assert (
    "p-values: accuracy, WSD IoU, pointing game, energy pointing, consistency: the authors' pooled "
    "two-sample bootstrap test (bstrap), 10000 resamples; macro-F1: the authors' pooled two-sample "
    "bootstrap test (bstrap), 30 resamples." in table
  )


def test_loss_and_preprocessing_come_from_the_recorded_contracts():
  from atcon_tf.contract import ServingContract
  from atcon_tf.losses import ConsistencyConfig

  first = ServingContract(preprocessing="scale_0_1", mask_intensity=20.0, similarity="ssim")
  last = ServingContract(preprocessing="imagenet_torch", mask_intensity=40.0)
  config, source = evaluation.loss_config({"a": first, "b": last})
  assert config == ConsistencyConfig(mask_intensity=40.0) and source == "recorded by 'b'"
  override = {"attention": "gb_map", "similarity": None}
  config, source = evaluation.loss_config({"a": first, "b": last}, override)
  assert config == ConsistencyConfig(attention="gb_map", mask_intensity=40.0)
  assert source == "recorded by 'b', overridden: attention=gb_map"
  explicit = ConsistencyConfig(similarity="ssim")
  assert evaluation.loss_config({"b": last}, explicit) == (explicit, "override")
  assert evaluation.preprocessing_for("a", first) == "scale_0_1"
  assert evaluation.preprocessing_for("a", first, "imagenet_torch") == "imagenet_torch"
  with pytest.raises(ValueError, match="--preprocessing=NAME"):
    evaluation.preprocessing_for("plain", ServingContract())
  with pytest.raises(ValueError, match="Unknown preprocessing"):
    evaluation.preprocessing_for("a", first, "imagenet")


# ------------------------------------------------------------------------------------------ end to end

SIZE = 16


def _toy_dataset(n=8):
  """Canonical elements: a bright square per image, its box, class = which quadrant it is in (of 3)."""
  import tensorflow as tf

  from atcon_tf.data import canonical

  rng = np.random.default_rng(0)
  images = rng.integers(0, 60, size=(n, SIZE, SIZE, 3)).astype(np.uint8)
  boxes, labels = np.zeros((n, 1, 4), np.float32), np.zeros(n, np.int32)
  for i in range(n):
    c = i % 3
    y, x = (0, 0) if c == 0 else (0, 8) if c == 1 else (8, 4)
    images[i, y : y + 8, x : x + 8] = 230
    boxes[i, 0] = np.array([y, x, y + 8, x + 8]) / SIZE
    labels[i] = c
  ds = tf.data.Dataset.from_tensor_slices(
    {
      "image": images,
      "label": labels,
      "boxes": boxes,
      "box_labels": labels[:, None],
      "size": np.full((n, 2), SIZE, np.int32),
      "index": np.arange(n, dtype=np.int64),
    }
  )
  info = canonical.DatasetInfo(
    name="toy", num_classes=3, class_names=["a", "b", "c"], multi_label=False, has_boxes=True
  )
  return ds, info


def test_evaluate_models_end_to_end_with_recorded_contracts(tmp_path):
  import tensorflow as tf

  import atcon_tf
  from atcon_tf import preprocessing
  from atcon_tf.losses import consistency_per_image
  from atcon_tf.testing import tiny_cnn

  ds, info = _toy_dataset()
  before = atcon_tf.ATCONModel(tiny_cnn(SIZE, classes=3, seed=1), preprocessing="scale_0_1")
  after = atcon_tf.ATCONModel(
    tiny_cnn(SIZE, classes=3, seed=2), preprocessing="scale_0_1", mask_intensity=20.0
  )
  after(np.zeros((1, SIZE, SIZE, 3), np.float32))  # built, so its weights are saved
  path = str(tmp_path / "after.keras")
  after.save(path)
  options = evaluation.EvalOptions(batch_size=3, bootstrap=20, pvalue_resamples=20, num_grid_images=2)
  grid = str(tmp_path / "grid.png")
  results = evaluation.evaluate_models(
    {"before": before, "after": path}, ds, info, options=options, grid_path=grid
  )
  assert results["preprocessing"] == "scale_0_1" and results["num_images"] == 8
  assert results["num_pointing_pairs"] == 8
  assert results["loss"]["mask_intensity"] == 20.0 and results["loss"]["source"] == "recorded by 'after'"
  assert results["models"]["after"]["path"] == path
  assert results["models"]["before"]["target_layer"] == "features"
  comparison = results["comparison"]
  assert comparison["pvalue_test"] == "paired"
  assert comparison["tests"]["accuracy"] == "mcnemar" and comparison["tests"]["consistency"] == "sign_flip"
  for name in ("before", "after"):
    m = results["models"][name]["metrics"]
    assert {
      "accuracy",
      "macro_f1",
      "wsd_iou",
      "wsd_iou_both_correct",
      "pointing_game",
      "pointing_agnostic_baseline",
      "consistency",
    } <= set(m)
  # the consistency metric is -cost of the loss itself, under the last model's recorded w = 20
  x = preprocessing.apply(np.stack([e["image"] for e in ds.as_numpy_iterator()]), "scale_0_1")
  costs = tf.function(lambda x: consistency_per_image(before.tapped, x, mask_intensity=20.0).costs)(x)
  assert results["models"]["before"]["metrics"]["consistency"]["estimate"] == pytest.approx(
    float(-np.mean(costs.numpy())), abs=1e-5
  )
  assert results["grid"] == grid
  with open(grid, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  table = evaluation.format_table(results)
  assert "| consistency (-L_atcon)" in table and "accuracy: exact McNemar test" in table
  print(table)
  plain = tiny_cnn(SIZE, classes=3, seed=3)  # records no preprocessing
  with pytest.raises(ValueError, match="records no preprocessing"):
    evaluation.evaluate_models({"plain": plain}, ds, info, options=options)
  alone = evaluation.evaluate_models({"plain": plain}, ds, info, "scale_0_1", options)
  assert "comparison" not in alone and alone["models"]["plain"]["metrics"]["accuracy"]["n"] == 8


if __name__ == "__main__":
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
