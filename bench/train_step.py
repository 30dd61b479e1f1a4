"""Training-step throughput: supervised vs batched ATCON vs the authors' per-image loop.

Same model (small ResNet, 32x32x3, 10 classes) and same batch (32) for every row;
ratios are against the supervised step measured in the same run.

  python bench/train_step.py [--batch=32] [--repeats=10] [--loop_repeats=2]
"""

import argparse
import os
import time

from atcon_tf import quiet

quiet.tensorflow_logs()  # before TensorFlow is imported: no CUDA / oneDNN start-up noise

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import atcon_tf  # noqa: E402
from atcon_tf import losses  # noqa: E402
from atcon_tf import backbones  # noqa: E402


def _model(schedule):
  model = atcon_tf.ATCONModel(backbones.small_resnet(image_size=32, classes=10, seed=0), schedule=schedule)
  model.compile(optimizer=keras.optimizers.Adam(1e-5))
  return model


def _time(step, repeats):
  step()  # trace / warm up
  step()
  start = time.perf_counter()
  for _ in range(repeats):
    step()
  return (time.perf_counter() - start) / repeats


def per_image_step(model, x, compiled):
  """The authors' CAMLoss: each image alone (batch 1), loss averaged, one optimizer step."""
  variables = model.trainable_variables

  def one_image_grads(image):
    with tf.GradientTape() as tape:
      loss = losses.consistency_loss(model.tapped, image, model.consistency_config)
      loss = loss / tf.cast(tf.shape(x)[0], loss.dtype)
    return tape.gradient(loss, variables)

  if compiled:
    one_image_grads = tf.function(one_image_grads)

  def step():
    total = [tf.zeros_like(v) for v in variables]
    for i in range(x.shape[0]):
      grads = one_image_grads(x[i : i + 1])
      total = [t if g is None else t + g for t, g in zip(total, grads)]
    model.optimizer.apply_gradients(zip(total, variables))

  return step


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--loop_repeats", type=int, default=2)
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  x = tf.constant(rng.normal(size=(args.batch, 32, 32, 3)).astype(np.float32))
  y = tf.constant(rng.integers(0, 10, size=args.batch).astype(np.int32))

  rows = []
  sup = _model("supervised")
  rows.append(
    ("supervised step (tf.function)", _time(tf.function(lambda: sup.train_step((x, y))), args.repeats))
  )
  atc = _model("atcon")
  rows.append(
    ("ATCON step, batched (tf.function)", _time(tf.function(lambda: atc.train_step(x)), args.repeats))
  )
  rows.append(
    (
      "ATCON, per-image loop (tf.function per image)",
      _time(per_image_step(atc, x, compiled=True), args.loop_repeats),
    )
  )
  rows.append(
    (
      "ATCON, per-image loop (eager, as the authors' code)",
      _time(per_image_step(atc, x, compiled=False), args.loop_repeats),
    )
  )

  base = rows[0][1]
  batched = rows[1][1]
  print(
    f"\nsmall_resnet 32x32x3, batch {args.batch}, {os.cpu_count()} CPU cores, "
    f"TF {tf.__version__}, device: {'GPU' if tf.config.list_physical_devices('GPU') else 'CPU'}\n"
  )
  print("| step | ms/step | images/s | time vs supervised | batched ATCON speed-up |")
  print("|---|---:|---:|---:|---:|")
  for name, seconds in rows:
    print(
      f"| {name} | {seconds * 1e3:.1f} | {args.batch / seconds:.0f} | {seconds / base:.2f}x | "
      f"{seconds / batched:.1f}x |"
    )
  print(
    f"\ntargets: ATCON step <= 3x supervised -> {batched / base:.2f}x; "
    f"batched >= 15x the authors' eager per-image loop -> {rows[3][1] / batched:.1f}x"
  )


if __name__ == "__main__":
  main()
