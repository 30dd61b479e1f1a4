"""The serving contract: recorded on an ATCONModel, saved inside its .keras file, read back by load_model."""

import json
import logging
import sys

import numpy as np
import pytest

from atcon_tf.contract import ContractError, ServingContract


def test_json_round_trip_and_validation():
  contract = ServingContract(
    preprocessing="imagenet_caffe",
    image_size=[32, 24],
    target_layer="a/b",
    class_names=["x", "y"],
    multi_label=True,
    attention="ig_mask",
    similarity="ssim",
    mask_intensity=20,
  )
  data = json.loads(json.dumps(contract.to_json()))
  assert data["image_size"] == [32, 24] and data["class_names"] == ["x", "y"]
  assert ServingContract.from_json(data) == contract
  assert contract.consistency_settings() == {
    "attention": "ig_mask",
    "similarity": "ssim",
    "mask_intensity": 20.0,
  }
  for bad in ({"preprocessing": "zscore"}, {"attention": "gradcam"}, {"similarity": "cosine"}):
    with pytest.raises(ValueError, match="choose one of"):
      ServingContract(**bad)


def test_overrides_are_logged_and_missing_preprocessing_is_refused(caplog):
  recorded = ServingContract(preprocessing="scale_0_1", mask_intensity=8.0)
  with caplog.at_level(logging.WARNING):
    changed = recorded.with_overrides(preprocessing="imagenet_torch", mask_intensity=None, target_layer="f")
  assert (
    changed.preprocessing == "imagenet_torch"
    and changed.mask_intensity == 8.0
    and changed.target_layer == "f"
  )
  assert (
    "preprocessing='imagenet_torch' overrides the model's recorded preprocessing='scale_0_1'" in caplog.text
  )
  assert "target_layer" not in caplog.text  # nothing was recorded there: filling it in is not an override
  with pytest.raises(ContractError, match="--preprocessing=NAME"):
    ServingContract().require_preprocessing("Model 'm'")


def test_atcon_model_saves_its_contract_and_load_model_reads_it(tmp_path):
  import atcon_tf
  from atcon_tf.testing import tiny_cnn

  classifier = tiny_cnn(16, classes=3, seed=1)
  model = atcon_tf.ATCONModel(
    classifier,
    mask_intensity=40.0,
    similarity="cross_correlation",
    preprocessing="scale_-1_1",
    class_names=["a", "b", "c"],
  )
  model(np.zeros((1, 16, 16, 3), np.float32))
  (tmp_path / "run").mkdir()
  model.save(str(tmp_path / "run" / "best.keras"))
  loaded = atcon_tf.load_model(str(tmp_path / "run"))  # a run folder: its best.keras
  assert loaded.path == str(tmp_path / "run" / "best.keras")
  assert loaded.classifier.name == "tiny_cnn" and not isinstance(loaded.classifier, atcon_tf.ATCONModel)
  assert loaded.contract == ServingContract(
    preprocessing="scale_-1_1",
    image_size=(16, 16),
    target_layer="features",
    class_names=("a", "b", "c"),
    similarity="cross_correlation",
    mask_intensity=40.0,
  )
  # A plain Keras file records nothing; a trainer's config.json beside it supplies the preprocessing.
  classifier.save(str(tmp_path / "plain.keras"))
  assert atcon_tf.load_model(str(tmp_path / "plain.keras")).contract.preprocessing is None
  (tmp_path / "config.json").write_text(json.dumps({"preprocessing": "imagenet_torch"}))
  assert atcon_tf.load_model(str(tmp_path / "plain.keras")).contract.preprocessing == "imagenet_torch"


if __name__ == "__main__":
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
