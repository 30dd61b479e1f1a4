"""Training-step time: supervised vs the ATCON step (fused and pass by pass), float32 / mixed precision / XLA.

Every row runs in its own process, so its peak memory is its own (host RSS on CPU, TensorFlow's peak
allocation on a GPU). Ratios are against the supervised step of the same model, precision and compiler,
measured in the same run.

  python bench/train_step.py                    # CPU suite: small_resnet 32 px b32, ResNet-50 96 px b8
  python bench/train_step.py --suite=gpu        # ResNet-50 224 px b32 on an accelerator (float32, fp16, XLA)
  python bench/train_step.py --suite=quick      # small_resnet only, seconds
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

# (model, image size, batch) per suite; precisions and XLA per suite.
SUITES = {
  "quick": dict(models=[("small_resnet", 32, 32)], precisions=["float32"], xla=False, per_image=False),
  "cpu": dict(
    models=[("small_resnet", 32, 32), ("resnet50", 96, 8)], precisions=["float32", "mixed_bfloat16"], xla=True,
    per_image=True,
  ),
  "gpu": dict(models=[("resnet50", 224, 32)], precisions=["float32", "mixed_float16"], xla=True, per_image=False),
}  # fmt: skip
STEPS = ("supervised", "atcon_fused", "atcon_unfused")


def _row(spec):
  """Runs one row in this process: {'ms': ..., 'peak_mb': ...}."""
  from atcon_tf import quiet

  quiet.tensorflow_logs()
  import keras
  import numpy as np
  import tensorflow as tf

  import atcon_tf
  from atcon_tf import backbones

  keras.mixed_precision.set_global_policy(spec["precision"])
  size, batch = spec["size"], spec["batch"]
  if spec["model"] == "small_resnet":
    classifier = backbones.small_resnet(image_size=size, classes=10, seed=0)
  else:
    classifier = backbones.application(spec["model"], size, 10, weights=None)
  step = spec["step"]
  schedule = "supervised" if step == "supervised" else "atcon"
  model = atcon_tf.ATCONModel(classifier, schedule=schedule, fused=step != "atcon_unfused")
  model.compile(optimizer=keras.optimizers.Adam(1e-5), jit_compile=spec["xla"])
  rng = np.random.default_rng(0)
  x = tf.constant(rng.normal(size=(batch, size, size, 3)).astype(np.float32))
  y = tf.constant(rng.integers(0, 10, size=batch).astype(np.int32))
  if step == "per_image_eager":
    from atcon_tf import losses

    def run():
      grads = None
      for i in range(batch):
        with tf.GradientTape() as tape:
          loss = losses.consistency_loss(model.tapped, x[i : i + 1], model.consistency_config) / batch
        g = tape.gradient(loss, model.trainable_variables)
        grads = g if grads is None else [a if b is None else a + b for a, b in zip(grads, g)]
      model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
  else:
    data = (x, y) if step == "supervised" else x
    train = tf.function(model.train_step, jit_compile=spec["xla"])
    run = lambda: train(data)  # noqa: E731
  run()
  run()
  repeats = spec["repeats"]
  start = time.perf_counter()
  for _ in range(repeats):
    out = run()
  if out is not None:
    [v.numpy() for v in tf.nest.flatten(out)]
  seconds = (time.perf_counter() - start) / repeats
  if tf.config.list_physical_devices("GPU"):
    peak = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
  else:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  return {"ms": seconds * 1e3, "peak_mb": peak}


def _rows(suite, repeats):
  spec = SUITES[suite]
  for model, size, batch in spec["models"]:
    for precision in spec["precisions"]:
      for step in STEPS:
        yield dict(
          model=model, size=size, batch=batch, precision=precision, xla=False, step=step, repeats=repeats
        )
    if spec["xla"]:
      for step in ("supervised", "atcon_fused"):
        yield dict(
          model=model, size=size, batch=batch, precision="float32", xla=True, step=step, repeats=repeats
        )
    if spec["per_image"] and model == "small_resnet":
      yield dict(
        model=model, size=size, batch=batch, precision="float32", xla=False, step="per_image_eager", repeats=1
      )


def _in_subprocess(spec):
  out = subprocess.run(
    [sys.executable, __file__, "--row", json.dumps(spec)], capture_output=True, text=True, check=False
  )
  lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
  if out.returncode or not lines:
    return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1][:120]}
  return json.loads(lines[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--suite", choices=sorted(SUITES), default="cpu")
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--row", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.row:
    print(json.dumps(_row(json.loads(args.row))), flush=True)
    return
  import tensorflow as tf

  device = "GPU: " + ", ".join(d.name for d in tf.config.list_physical_devices("GPU"))
  if device == "GPU: ":
    device = "CPU only"
    if args.suite == "gpu":
      sys.exit("--suite=gpu: TensorFlow sees no GPU (on Linux: pip install 'tensorflow[and-cuda]==2.21.0').")
  print(f"suite {args.suite}: {os.cpu_count()} CPU cores, {device}, TF {tf.__version__}\n", flush=True)
  print("| model | input, batch | precision | XLA | step | ms/step | images/s | vs supervised | peak MiB |")
  print("|---|---|---|---|---|---:|---:|---:|---:|")
  base = {}
  for spec in _rows(args.suite, args.repeats):
    result = _in_subprocess(spec)
    key = (spec["model"], spec["precision"], spec["xla"])
    head = f"| {spec['model']} | {spec['size']} px, b{spec['batch']} | {spec['precision']} | {spec['xla']} | {spec['step']}"
    if "error" in result:
      print(f"{head} | failed: {result['error']} | | | |", flush=True)
      continue
    if spec["step"] == "supervised":
      base[key] = result["ms"]
    ratio = result["ms"] / base[key] if key in base else float("nan")
    images = spec["batch"] / result["ms"] * 1e3
    print(
      f"{head} | {result['ms']:.1f} | {images:.0f} | {ratio:.2f}x | {result['peak_mb']:.0f} |", flush=True
    )


if __name__ == "__main__":
  main()
