"""Runs a short ATCON `fit` under a tf.distribute strategy in its own process.

Logical CPU devices must be configured before TensorFlow runs any op, so distributed
tests start this script as a subprocess. Prints one JSON line: the loss, initial and final weights.
Usage: python -m tests.distributed_job MODE SCHEDULE [OUT]   (MODE: single|mirrored|multi_worker)
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

GLOBAL_BATCH = 8
STEPS = 2


def _configure(mode):
  if mode == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  if mode == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  return tf.distribute.get_strategy()


def _dataset(schedule):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(GLOBAL_BATCH * STEPS, 16, 16, 3)).astype(np.float32)
  y = rng.integers(0, 3, size=GLOBAL_BATCH * STEPS).astype(np.int32)
  from atcon_tf import training_data

  labeled = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
  if schedule == "combining":
    unlabeled = tf.data.Dataset.from_tensor_slices(x[::-1].copy()).batch(GLOBAL_BATCH)
    ds = training_data.combining_dataset(labeled, unlabeled)
  else:
    ds = labeled
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  return ds.with_options(options)


def main(mode, schedule, out=None):
  strategy = _configure(mode)
  import keras
  import atcon_tf
  from atcon_tf import testing

  with strategy.scope():
    # Supervised steps use per-replica BatchNorm batch statistics, which legitimately differ
    # from the global batch's, so BN is only kept where the loss runs it in inference mode.
    classifier = testing.tiny_cnn(image_size=16, classes=3, seed=1, batch_norm=schedule == "atcon")
    model = atcon_tf.ATCONModel(classifier, schedule=schedule, mask_intensity=50.0, alpha=0.5)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
  initial = [w.tolist() for w in model.classifier.get_weights()]
  history = model.fit(_dataset(schedule), epochs=1, verbose=0)
  result = {
    "replicas": strategy.num_replicas_in_sync,
    "loss": history.history["loss"][0],
    "weights": [w.tolist() for w in model.classifier.get_weights()],
    "initial_weights": initial,
  }
  text = json.dumps(result)
  if out:
    with open(out, "w") as f:
      f.write(text)
  print(text)


if __name__ == "__main__":
  main(*sys.argv[1:])
