"""Deletion / insertion AUC inside trainers.evaluation: computed on the first K test images of each model,
equal to the metric applied by hand to the model's own maps, compared with a paired test, and named in the
table with its baseline and steps."""

import sys

import numpy as np
import pytest

from tests.test_evaluation import SIZE, _toy_dataset
from trainers import evaluation


@pytest.mark.slow
def test_deletion_insertion_in_the_evaluation(tmp_path):
  import tensorflow as tf

  import atcon_tf
  from atcon_tf import maps, preprocessing
  from atcon_tf.metrics import faithfulness
  from atcon_tf.testing import tiny_cnn

  ds, info = _toy_dataset()
  a = atcon_tf.ATCONModel(tiny_cnn(SIZE, classes=3, seed=1), preprocessing="scale_0_1")
  b = atcon_tf.ATCONModel(tiny_cnn(SIZE, classes=3, seed=2), preprocessing="scale_0_1")
  options = evaluation.EvalOptions(
    batch_size=3,
    bootstrap=20,
    pvalue_resamples=20,
    num_grid_images=0,
    faithfulness_steps=4,
    faithfulness_images=5,
  )
  results = evaluation.evaluate_models({"a": a, "b": b}, ds, info, options=options)
  assert results["faithfulness"]["images"] == 5 and results["faithfulness"]["baseline"] == "blur"
  metrics = results["models"]["a"]["metrics"]
  for key in evaluation.faithfulness.KEYS:
    assert metrics[key]["n"] == 5 and 0.0 <= metrics[key]["estimate"] <= 1.0
    assert results["comparison"]["metrics"][key]["n"] == 5
    assert results["comparison"]["tests"][key] == "sign_flip"

  # by hand: guided backprop of the top-1 class, the top-1 probability as the score, first 5 images
  images = np.stack([e["image"] for e in ds.as_numpy_iterator()])[:5]
  x = preprocessing.apply(images, "scale_0_1")
  explanation = tf.function(lambda x: maps.explain(a.tapped, x))(x)
  classes = explanation.class_ids.numpy()
  probs = tf.function(lambda x: a.tapped.probabilities(a.tapped.logits(x)))

  def score(batch):
    return probs(tf.constant(batch)).numpy()[np.arange(5), classes]

  auc = faithfulness.deletion_insertion_auc(score, x.numpy(), explanation.guided_backprop.numpy(), steps=4)
  assert metrics["deletion_guided_backprop"]["estimate"] == pytest.approx(auc["deletion"].mean(), abs=1e-5)
  assert metrics["insertion_guided_backprop"]["estimate"] == pytest.approx(auc["insertion"].mean(), abs=1e-5)

  table = evaluation.format_table(results)
  assert "| deletion AUC Grad-CAM (low)" in table and "insertion AUC guided BP (high)" in table
  assert "4 steps" in table and "Gaussian blur" in table and "first 5 test images" in table
  off = evaluation.evaluate_models(
    {"a": a}, ds, info, options=evaluation.EvalOptions(bootstrap=10, num_grid_images=0, faithfulness_steps=0)
  )
  assert off["faithfulness"] is None and "deletion_gradcam" not in off["models"]["a"]["metrics"]


if __name__ == "__main__":
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
