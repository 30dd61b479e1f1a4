"""Where the ATCON step's time goes: each part of the fused loss timed against one forward pass.

  python bench/atcon_passes.py [--model=small_resnet --image_size=32 --batch=32 --repeats=10 --rounds=7]

Rows, each a `tf.function` timed in interleaved rounds (median) in one process:
- forward: the classifier in inference mode (the unit of the table);
- guided pass: forward of x plus the guided input gradient (logits, class, Grad-CAM, guided backprop);
- loss forward: the whole ATCON loss (guided pass, soft mask, forward of x * M, similarity), no gradient;
- loss + weight gradients: what the ATCON train step computes (the optimizer update aside);
- supervised loss + weight gradients: cross-entropy with BatchNorm in training mode, the baseline of
  `bench/train_step.py`.
Counted in network passes (a backward costs about two forwards: input and weight gradients), the ATCON
step is 3 forward-like passes (x, the guided input gradient, x * M) plus the backward through all three
(about 6), 9 in all, against 3 for a supervised step: the printed 'passes' column checks that count.
"""

import argparse
import time


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="small_resnet", help="small_resnet or a keras.applications name")
  parser.add_argument("--image_size", type=int, default=32)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--rounds", type=int, default=7)
  args = parser.parse_args()

  from atcon_tf import quiet

  quiet.tensorflow_logs()  # before TensorFlow is imported
  import keras
  import numpy as np
  import tensorflow as tf

  import atcon_tf
  from atcon_tf import losses
  from atcon_tf.maps import targets
  from atcon_tf.maps.guided_pass import guided_pass
  import train_step  # the sibling script (this folder is first on sys.path when run as a script)

  size, batch = args.image_size, args.batch
  classifier = train_step.build_classifier(args.model, size)
  tapped = atcon_tf.ATCONModel(classifier, schedule="atcon").tapped
  config = losses.ConsistencyConfig()
  rng = np.random.default_rng(0)
  x = tf.constant(rng.normal(size=(batch, size, size, 3)).astype(np.float32))
  y = tf.constant(rng.integers(0, 10, size=batch).astype(np.int32))
  variables = classifier.trainable_variables

  @tf.function
  def forward():
    return classifier(x, training=False)

  @tf.function
  def guided():
    return guided_pass(tapped, x, targets.as_target(None, None)).guided_backprop

  @tf.function
  def loss_forward():
    return losses.consistency_loss(tapped, x, config)

  @tf.function
  def loss_and_gradients():
    with tf.GradientTape() as tape:
      loss = losses.consistency_loss(tapped, x, config)
    return tape.gradient(loss, variables)

  @tf.function
  def supervised_and_gradients():
    with tf.GradientTape() as tape:
      logits = classifier(x, training=True)
      loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
    return tape.gradient(loss, variables)

  rows = [
    ("forward", forward, 1),
    ("guided pass", guided, 2),
    ("loss forward", loss_forward, 3),
    ("loss + weight gradients (ATCON step)", loss_and_gradients, 9),
    ("supervised loss + weight gradients", supervised_and_gradients, 3),
  ]

  def run(fn):
    [t.numpy() for t in tf.nest.flatten(fn()) if t is not None]

  for _, fn, _ in rows:
    for _ in range(3):
      run(fn)
  times = {name: [] for name, _, _ in rows}
  for _ in range(args.rounds):
    for name, fn, _ in rows:
      start = time.perf_counter()
      for _ in range(args.repeats):
        run(fn)
      times[name].append((time.perf_counter() - start) / args.repeats * 1e3)
  median = {name: sorted(v)[len(v) // 2] for name, v in times.items()}
  unit = median["forward"]
  print(f"{args.model} {size} px, batch {batch}, TF {tf.__version__}; median of {args.rounds} rounds\n")
  print("| part | ms | x forward | passes (count) |")
  print("|---|---:|---:|---:|")
  for name, _, passes in rows:
    print(f"| {name} | {median[name]:.2f} | {median[name] / unit:.2f} | {passes} |")
  ratio = median["loss + weight gradients (ATCON step)"] / median["supervised loss + weight gradients"]
  print(f"\nATCON step / supervised step: {ratio:.2f}x (pass count: 9 / 3 = 3x)")


if __name__ == "__main__":
  main()
