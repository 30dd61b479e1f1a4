"""Training-step time: supervised vs the ATCON step (fused and pass by pass), float32 / mixed precision / XLA.

The steps of one model, precision and compiler are timed in one process in interleaved rounds (the median
round counts), so load from other processes spreads over all of them and their ratios stay comparable; the
process CPU time per step (all threads) is printed too: the work done, little changed by other load;
ratios are against that group's supervised step. Peak memory comes from a separate process per row that
runs only that step (host RSS on CPU, TensorFlow's peak allocation on a GPU).

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


def build_classifier(model, size):
  """The benchmarked classifier: `small_resnet` or a keras.applications model, 10 classes, random init."""
  from atcon_tf import backbones

  if model == "small_resnet":
    return backbones.small_resnet(image_size=size, classes=10, seed=0)
  return backbones.application(model, size, 10, weights=None)


def _runner(spec, step):
  """A no-argument callable that runs one training step of `step` for the model in `spec`."""
  import keras
  import numpy as np
  import tensorflow as tf

  import atcon_tf

  keras.mixed_precision.set_global_policy(spec["precision"])
  size, batch = spec["size"], spec["batch"]
  classifier = build_classifier(spec["model"], size)
  schedule = "supervised" if step == "supervised" else "atcon"
  model = atcon_tf.ATCONModel(classifier, schedule=schedule, fused=step != "atcon_unfused")
  model.compile(optimizer=keras.optimizers.Adam(1e-5), jit_compile=spec["xla"])
  rng = np.random.default_rng(0)
  x = tf.constant(rng.normal(size=(batch, size, size, 3)).astype(np.float32))
  y = tf.constant(rng.integers(0, 10, size=batch).astype(np.int32))
  if step == "per_image_eager":  # the authors' CAMLoss: each image alone, eagerly, one optimizer step
    from atcon_tf import losses

    def run():
      grads = None
      for i in range(batch):
        with tf.GradientTape() as tape:
          loss = losses.consistency_loss(model.tapped, x[i : i + 1], model.consistency_config) / batch
        g = tape.gradient(loss, model.trainable_variables)
        grads = g if grads is None else [a if b is None else a + b for a, b in zip(grads, g)]
      model.optimizer.apply_gradients(zip(grads, model.trainable_variables))

    return run
  data = (x, y) if step == "supervised" else x
  train = tf.function(model.train_step, jit_compile=spec["xla"])

  def run():
    [v.numpy() for v in tf.nest.flatten(train(data))]  # wait for the step to finish

  return run


def _times(spec):
  """Milliseconds per step of each of `spec['steps']`, measured in interleaved rounds (median), so load
  from other processes spreads over every step of the group."""
  runners = {step: _runner(spec, step) for step in spec["steps"]}
  for run in runners.values():
    run()
    run()
  wall = {step: [] for step in runners}
  cpu = {step: [] for step in runners}
  for _ in range(spec["rounds"]):
    for step, run in runners.items():
      start, start_cpu = time.perf_counter(), time.process_time()
      for _ in range(spec["repeats"]):
        run()
      wall[step].append((time.perf_counter() - start) / spec["repeats"] * 1e3)
      cpu[step].append((time.process_time() - start_cpu) / spec["repeats"] * 1e3)
  median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
  return {step: {"wall": median(wall[step]), "cpu": median(cpu[step])} for step in runners}


def _peak_memory(spec):
  """Peak memory (MiB) of a process that runs only `spec['step']`: host RSS, or the GPU allocator's peak."""
  import tensorflow as tf

  run = _runner(spec, spec["step"])
  for _ in range(3):
    run()
  if tf.config.list_physical_devices("GPU"):
    return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _groups(suite, repeats, rounds):
  """Groups of rows timed together: the same model, precision and compiler."""
  spec = SUITES[suite]
  for model, size, batch in spec["models"]:
    common = dict(model=model, size=size, batch=batch, repeats=repeats, rounds=rounds)
    for precision in spec["precisions"]:
      yield dict(common, precision=precision, xla=False, steps=list(STEPS))
    if spec["xla"]:
      yield dict(common, precision="float32", xla=True, steps=["supervised", "atcon_fused"])
    if spec["per_image"] and model == "small_resnet":
      yield dict(common, precision="float32", xla=False, steps=["per_image_eager"], repeats=1, rounds=1)


def _in_subprocess(mode, spec):
  out = subprocess.run(
    [sys.executable, __file__, f"--{mode}", json.dumps(spec)], capture_output=True, text=True, check=False
  )
  lines = [line for line in out.stdout.splitlines() if line.startswith(("{", "["))] or [""]
  if out.returncode or not lines[-1]:
    return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1][:120]}
  return json.loads(lines[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--suite", choices=sorted(SUITES), default="cpu")
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--times", help=argparse.SUPPRESS)
  parser.add_argument("--memory", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.times or args.memory:
    from atcon_tf import quiet

    quiet.tensorflow_logs()
    result = (
      _times(json.loads(args.times)) if args.times else {"peak_mb": _peak_memory(json.loads(args.memory))}
    )
    print(json.dumps(result), flush=True)
    return
  from atcon_tf import quiet

  quiet.tensorflow_logs()  # before TensorFlow is imported: no CUDA / oneDNN start-up noise
  import tensorflow as tf

  device = "GPU: " + ", ".join(d.name for d in tf.config.list_physical_devices("GPU"))
  if device == "GPU: ":
    device = "CPU only"
    if args.suite == "gpu":
      sys.exit("--suite=gpu: TensorFlow sees no GPU (on Linux: pip install 'tensorflow[and-cuda]==2.21.0').")
  print(f"suite {args.suite}: {os.cpu_count()} CPU cores, {device}, TF {tf.__version__}\n", flush=True)
  print(
    "| model | input, batch | precision | XLA | step | ms/step | images/s | vs supervised | CPU ms/step "
    "| CPU vs supervised | peak MiB |"
  )
  print("|---|---|---|---|---|---:|---:|---:|---:|---:|---:|")
  base = {}
  for group in _groups(args.suite, args.repeats, args.rounds):
    times = _in_subprocess("times", group)
    key = (group["model"], group["precision"], group["xla"])
    for step in group["steps"]:
      head = f"| {group['model']} | {group['size']} px, b{group['batch']} | {group['precision']} | {group['xla']} | {step}"
      if "error" in times:
        print(f"{head} | failed: {times['error']} | | | | | |", flush=True)
        continue
      memory = _in_subprocess("memory", dict(group, step=step)).get("peak_mb", float("nan"))
      ms, cpu_ms = times[step]["wall"], times[step]["cpu"]
      if step == "supervised":
        base[key] = ms, cpu_ms
      ratio, cpu_ratio = (ms / base[key][0], cpu_ms / base[key][1]) if key in base else (float("nan"),) * 2
      images = group["batch"] / ms * 1e3
      print(
        f"{head} | {ms:.1f} | {images:.0f} | {ratio:.2f}x | {cpu_ms:.1f} | {cpu_ratio:.2f}x | {memory:.0f} |",
        flush=True,
      )


if __name__ == "__main__":
  main()
