"""The study's training and scoring: one `Trainer` per (dataset, backbone), weights swapped per cell.

Why one object per backbone: tracing an ATCON step (second-order gradients through VGG16) takes seconds to
minutes on 2 CPU cores. Every cell of a backbone reuses the same traced graphs: the classifier's weights are
set, the optimizer's state is zeroed and its learning rate assigned, then `fit` runs in chunks (each chunk
shuffles with its own seed). Validation is scored with the classifier alone (logits -> loss, macro-F1); the
test images are scored once per final model (`evaluate`).
"""

from __future__ import annotations

import numpy as np

SCHEDULES = {
  "baseline": "supervised",
  "atcon_labeled": "atcon",
  "combining_pool": "combining",
  "more_supervised": "supervised",  # control of combining_pool: its lr and steps without the ATCON term
}
KINDS = {"hed": "vgg16", "simclr": "small_resnet", "scratch": "small_resnet"}


def softmax(logits):
  z = logits - logits.max(axis=1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(axis=1, keepdims=True)


def scores(logits, y, num_classes) -> dict:
  """Validation/test scores of logits: cross-entropy, accuracy, macro-F1 (absent classes excluded)."""
  from atcon_tf.metrics import classification

  p = softmax(np.asarray(logits, np.float64))
  pred = p.argmax(axis=1)
  return {
    "loss": float(-np.log(np.maximum(p[np.arange(len(y)), y], 1e-12)).mean()),
    "accuracy": float((pred == y).mean()),
    "macro_f1": float(classification.macro_f1(y, pred, num_classes=num_classes)),
  }


class Trainer:
  """The classifier of one backbone, its ATCONModels per (schedule, w), and the cell operations."""

  def __init__(self, scfg, arrays, backbone: str, weights: str):
    from atcon_tf import choices

    self.scfg, self.arrays, self.backbone, self.weights = scfg, arrays, backbone, weights
    self.kind = KINDS[backbone]
    self.preprocessing = choices.BACKBONE_PREPROCESSING[self.kind]
    self.target_layer = choices.BACKBONE_TARGET_LAYER.get(self.kind)
    self.lr = scfg.lr_vgg if self.kind == "vgg16" else scfg.lr_resnet
    self.classifier = self._build(0)
    for layer in self.classifier.layers:  # before any trace: read when the graphs are built
      if layer.__class__.__name__ == "BatchNormalization":
        layer.momentum = scfg.bn_momentum
    self.models = {}
    self.x_train = self.pre(arrays.train_x)
    self.x_val, self.y_val = self.x_train[arrays.val_idx], arrays.train_y[arrays.val_idx]
    self.x_test = self.pre(arrays.test_x)

  def pre(self, images):
    from atcon_tf import preprocessing

    return preprocessing.apply_numpy(images, self.preprocessing)

  def _build(self, seed):
    from atcon_tf import backbones

    s = self.scfg
    return backbones.build(
      self.kind,
      s.image_size,
      self.arrays.num_classes,
      weights=self.weights,
      seed=seed,
      resnet_width=s.resnet_width,
      resnet_blocks=tuple(s.resnet_blocks),
    )

  def initial_weights(self, seed):
    """The backbone's starting weights with a head (and, for scratch, a body) drawn with `seed`."""
    return self._build(seed).get_weights()

  def model(self, schedule: str, w: float):
    """The ATCONModel of (schedule, w) on the shared classifier (built and compiled once)."""
    import keras

    import atcon_tf

    key = (schedule, float(w))
    if key not in self.models:
      m = atcon_tf.ATCONModel(
        self.classifier,
        target_layer=self.target_layer,
        schedule=schedule,
        alpha=self.scfg.alpha,
        mask_intensity=float(w),
        preprocessing=self.preprocessing,
        class_names=self.arrays.class_names,
      )
      m.compile(optimizer=keras.optimizers.Adam(self.lr, epsilon=1e-8))
      self.models[key] = m
    return self.models[key]

  @staticmethod
  def _reset(model, lr):
    opt = model.optimizer
    for v in opt.variables:
      v.assign(np.zeros(v.shape, v.dtype))
    opt.learning_rate = lr

  def _dataset(self, schedule, labeled, pool, seed):
    import tensorflow as tf

    from atcon_tf import training_data

    bs = min(self.scfg.batch_size, len(labeled))
    x, y = self.x_train[labeled], self.arrays.train_y[labeled].astype(np.int32)

    def batches(*arrays, s):
      ds = tf.data.Dataset.from_tensor_slices(arrays if len(arrays) > 1 else arrays[0])
      return ds.shuffle(len(arrays[0]), seed=s).repeat().batch(bs, drop_remainder=True)

    if schedule == "supervised":
      return batches(x, y, s=seed)
    if schedule == "atcon":
      return batches(x, s=seed)
    return training_data.combining_dataset(batches(x, y, s=seed), batches(self.x_train[pool], s=seed + 1))

  def validate(self) -> dict:
    logits = self.classifier.predict(self.x_val, batch_size=128, verbose=0)
    return scores(logits, self.y_val, self.arrays.num_classes)

  def run(self, arm, labeled, pool, seed, lr, w, steps, every, select=False) -> tuple:
    """Trains `arm` for `steps` (chunks of `every`) from the current weights; returns (history, weights).

    select=True (the baseline): the returned weights are the best chunk's by validation loss. Otherwise the
    last ones. history: validation scores and the training logs after each chunk."""
    schedule = SCHEDULES[arm]
    model = self.model(schedule, w)
    self._reset(model, lr)
    history, best, best_loss = [], None, np.inf
    for k in range(max(1, steps // every)):
      ds = self._dataset(schedule, labeled, pool, seed * 1009 + k)
      logs = model.fit(ds, steps_per_epoch=every, epochs=1, verbose=0).history
      val = self.validate()
      row = dict(step=(k + 1) * every, **{f"val_{n}": v for n, v in val.items()})
      row.update({n: float(v[-1]) for n, v in logs.items() if n in ("consistency_loss", "mask_logit_std")})
      history.append(row)
      if select and val["loss"] < best_loss:
        best, best_loss = self.classifier.get_weights(), val["loss"]
    return history, (best if select else self.classifier.get_weights())

  def evaluate(self, weights, eval_w, faith_images, faith_steps, grid_images) -> tuple:
    """Scores `weights` on the test images once: per-image predictions, then Grad-CAM deletion / insertion
    AUC and the consistency (at `eval_w`) on the first `faith_images`. Returns (result, grid panels)."""
    import tensorflow as tf

    from atcon_tf import visualize
    from atcon_tf.metrics import faithfulness

    self.classifier.set_weights(weights)
    logits = self.classifier.predict(self.x_test, batch_size=128, verbose=0)
    result = scores(logits, self.arrays.test_y, self.arrays.num_classes)
    result["pred"] = "".join(str(int(p)) for p in logits.argmax(axis=1)) if logits.shape[1] <= 10 else None
    n = min(faith_images, len(self.x_test))
    model = self.model("supervised", eval_w)
    panels = visualize.attention_panels(model, self.x_test[: max(n, grid_images)])
    cls = logits[:n].argmax(axis=1)
    size = self.scfg.image_size
    cam = tf.image.resize(panels["gradcam"][:n, ..., None], (size, size), "bilinear").numpy()[..., 0]

    def score_fn(images):
      p = softmax(self.classifier.predict(self.pre(images), batch_size=128, verbose=0))
      return p[np.arange(len(images)), cls]

    auc = faithfulness.deletion_insertion_auc(
      score_fn, self.arrays.test_x[:n].astype(np.float32), cam, steps=faith_steps
    )
    result.update(
      deletion=[round(float(v), 5) for v in auc["deletion"]],
      insertion=[round(float(v), 5) for v in auc["insertion"]],
      consistency=[round(float(v), 5) for v in panels["consistency"][:n]],
      mask_logit_std=float(np.std(panels["mask_logits"][:n], axis=(1, 2)).mean()),
    )
    grid = {k: panels[k][:grid_images] for k in ("gradcam", "guided_backprop")}
    return result, grid
