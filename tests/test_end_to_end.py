"""Train -> export -> serve with no extra flags: the export serves exactly what the trained model computes.

`python -m trainers.finetune --config=smoke`, then `python -m serving.export --model=RUN` with no other flag:
the SavedModel's probabilities and maps must equal the evaluator's in-memory ones on the same test images.
This is the test that catches an export serving another preprocessing than the training's (it then
serves chance-level predictions with plausible maps). Two backbones whose preprocessing differs.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(
  os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")
)
NUM_IMAGES = 8


def _run(args, timeout=600):
  result = subprocess.run(
    [sys.executable, "-m"] + args, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout
  )
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
  "backbone, extra_flags, preprocessing",
  [
    ("small_resnet", [], "imagenet_torch"),
    ("mobilenet_v2", ["--backbone=mobilenet_v2", "--weights=none", "--image_size=64"], "scale_-1_1"),
  ],
)
def test_exported_model_serves_what_the_evaluator_computes(tmp_path, backbone, extra_flags, preprocessing):
  import tensorflow as tf

  from atcon_tf import loading
  from atcon_tf.losses import ConsistencyConfig
  from atcon_tf.maps import processing
  from trainers import config as config_lib
  from trainers import data as data_lib
  from trainers import evaluation

  run, exports = tmp_path / "run", tmp_path / "exports"
  _run(
    [
      "trainers.finetune",
      "--config=smoke",
      f"--workdir={run}",
      f"--data_dir={tmp_path / 'tfds'}",
      "--evaluate=false",
      "--viz_every=0",
      "--verbose=0",
    ]
    + extra_flags
  )
  path = (
    _run(["serving.export", f"--model={run}", f"--export_dir={exports}", "--name=m"]).strip().splitlines()[-1]
  )
  with open(os.path.join(path, "assets.extra", "atcon_serving.json")) as f:
    contract = json.load(f)["contract"]
  assert contract["preprocessing"] == preprocessing

  # The evaluator's in-memory outputs, on the run's own test images.
  with open(run / "config.json") as f:
    cfg = config_lib.Config(
      **{k: tuple(v) if isinstance(v, list) else v for k, v in json.load(f)["config"].items()}
    )
  splits = data_lib.load_splits(cfg)
  loaded = loading.load_model(str(run))
  assert loaded.contract.preprocessing == preprocessing
  out = evaluation.model_outputs(
    loaded,
    splits.test.dataset(np.arange(NUM_IMAGES)),
    splits.info,
    preprocessing,
    ConsistencyConfig(**loaded.contract.consistency_settings()),
    num_examples=NUM_IMAGES,
  )
  images = out["examples"]["image"]
  assert images.dtype == np.uint8 and len(images) == NUM_IMAGES

  served = tf.saved_model.load(path).signatures["serving_default"](images=tf.constant(images, tf.float32))
  size = images.shape[1:3]
  cam = processing.normalize_01(processing.resize_align_corners(tf.nn.relu(out["cam"]), size)).numpy()
  guided = processing.normalize_01(tf.constant(out["examples"]["guided_backprop"])).numpy()
  np.testing.assert_array_equal(served["class_ids"].numpy(), out["pred"])
  np.testing.assert_allclose(served["probabilities"].numpy(), out["probs"], atol=1e-5)
  np.testing.assert_allclose(served["consistency"].numpy(), out["consistency"], atol=1e-5)
  # Maps are min-max normalised per image, which magnifies float32 rounding of the two graphs (oneDNN picks
  # other kernels for the SavedModel than for the evaluator's tf.function): measured up to 2.2e-5 for
  # MobileNetV2 (CI, a map value of 0.109). Maps lie in [0, 1], so the bound is 1e-4 of the map's range: a
  # wrong layer, class or preprocessing moves map values by 1e-2 or more (and fails on the probabilities).
  np.testing.assert_allclose(served["gradcam"].numpy(), cam, atol=1e-4, rtol=0)
  np.testing.assert_allclose(served["guided_backprop"].numpy(), guided, atol=1e-4, rtol=0)


if __name__ == "__main__":
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
