"""`ATCONModel`: a Keras model whose `train_step` optimises attention consistency.

Wraps any classifier (weights shared, not copied). Schedules (docs/method.md §2):
- `supervised`: cross-entropy on labeled batches `(x, y)`.
- `atcon`: unsupervised fine-tuning; batches are `x` (labels, if present, are ignored).
- `alternating`: batches are dicts from `training_data.alternating_dataset`: each batch is
  labeled (supervised step) or not (ATCON step); `alpha` oversamples the labeled set there.
- `combining`: dicts from `training_data.combining_dataset`; loss = L_sup + alpha * L_atcon.
Supervised steps run BatchNorm in training mode; the ATCON loss runs it in inference mode.
Training logs hold only what the schedule's steps update (supervised: loss, supervised_loss and the compiled
metrics; atcon: loss, consistency_loss, mask_mean, mask_logit_std; alternating and combining: all of them, the
mask statistics over the ATCON steps); validation (`test_step`) reports every loss for every schedule.
Losses are divided by the number of replicas, so gradients summed by `tf.distribute`
equal the single-device gradient of the global batch mean.
The model also records what serving needs (`contract`: preprocessing, class names, Grad-CAM layer,
loss settings), so a saved `.keras` file can be exported without being told again.
"""

import keras
import tensorflow as tf

from atcon_tf import choices
from atcon_tf import contract as contract_lib
from atcon_tf import heads
from atcon_tf import model_import
from atcon_tf import tapped_model
from atcon_tf import training_data
from atcon_tf.losses import consistency

SCHEDULES = choices.MODEL_SCHEDULES
MASKED_ATTENTIONS = ("gb_mask", "ig_mask", "cam_mask")  # those whose consistency loss builds a soft mask


@keras.saving.register_keras_serializable(package="atcon_tf")
class ATCONModel(keras.Model):
  """Fine-tunes `classifier` so its Grad-CAM and guided-backprop attention agree."""

  def __init__(
    self,
    classifier,
    target_layer=None,
    schedule="atcon",
    alpha=1.0,
    multi_label=False,
    attention=choices.DEFAULT_ATTENTION,
    similarity=choices.DEFAULT_SIMILARITY,
    mask_intensity=choices.MASK_INTENSITY,
    preprocessing=None,
    class_names=None,
    logits_layer=None,
    fused=True,
    **kwargs,
  ):
    super().__init__(**kwargs)
    choices.check("schedule", schedule, SCHEDULES)
    if preprocessing is not None:
      choices.check("preprocessing", preprocessing, choices.PREPROCESSING)
    self.classifier = model_import.load_classifier(classifier)
    self.schedule = schedule
    self.alpha = float(alpha)
    self.multi_label = bool(multi_label)
    self.tapped = tapped_model.TappedModel(
      self.classifier, target_layer, multi_label=self.multi_label, logits_layer=logits_layer
    )
    self.consistency_config = consistency.ConsistencyConfig(
      attention=attention, similarity=similarity, mask_intensity=mask_intensity
    )
    self.preprocessing = preprocessing
    self.fused = bool(fused)  # one forward of x for Grad-CAM and guided backprop (losses.consistency)
    self.class_names = None if class_names is None else [str(c) for c in class_names]
    self.loss_tracker = keras.metrics.Mean(name="loss")
    self.supervised_loss_tracker = keras.metrics.Mean(name="supervised_loss")
    self.consistency_tracker = keras.metrics.Mean(name="consistency_loss")
    self.mask_mean_tracker = keras.metrics.Mean(name="mask_mean")
    self.mask_spread_tracker = keras.metrics.Mean(name="mask_logit_std")
    # Built with its classifier: saving then needs no first call, and loading builds the optimizer
    # (Keras' compile_from_config does so only for a built model) so its saved state is restored.
    self.built = self.classifier.built

  # --- Keras plumbing -------------------------------------------------------------
  def call(self, inputs, training=False):
    if isinstance(inputs, dict):  # Keras may build the model on a schedule's dict batch.
      inputs = inputs["image"]
    return self.classifier(inputs, training=training)

  def build(self, input_shape):
    if not self.classifier.built:
      self.classifier.build(input_shape)
    self.built = True

  @property
  def contract(self):
    """What serving needs besides the weights (`atcon_tf.contract.ServingContract`)."""
    shape = tuple(self.classifier.input_shape)
    return contract_lib.ServingContract(
      preprocessing=self.preprocessing,
      image_size=shape[1:3] if None not in shape[1:3] else None,
      target_layer=self.tapped.target_layer_path,
      logits_layer=self.tapped.logits_layer_path,
      class_names=self.class_names,
      multi_label=self.multi_label,
      attention=self.consistency_config.attention,
      similarity=self.consistency_config.similarity,
      mask_intensity=self.consistency_config.mask_intensity,
    )

  @property
  def metrics(self):
    own = [
      self.loss_tracker,
      self.supervised_loss_tracker,
      self.consistency_tracker,
      self.mask_mean_tracker,
      self.mask_spread_tracker,
    ]
    # Built by their first update: an atcon fit (which never updates them) before any evaluate has none yet.
    if self.compiled and self._compile_metrics is not None and self._compile_metrics.built:
      own.append(self._compile_metrics)
    return own

  def get_config(self):
    config = super().get_config()
    config.update(
      {
        "classifier": keras.saving.serialize_keras_object(self.classifier),
        "target_layer": self.tapped.target_layer_path,
        "logits_layer": self.tapped.logits_layer_path,
        "schedule": self.schedule,
        "alpha": self.alpha,
        "multi_label": self.multi_label,
        "attention": self.consistency_config.attention,
        "similarity": self.consistency_config.similarity,
        "mask_intensity": self.consistency_config.mask_intensity,
        "preprocessing": self.preprocessing,
        "class_names": self.class_names,
        "fused": self.fused,
      }
    )
    return config

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    config["classifier"] = keras.saving.deserialize_keras_object(config["classifier"])
    return cls(**config)

  def _maybe_symbolic_build(self, iterator=None, data_batch=None):
    """Builds metrics from one replica's `(images, labels)` instead of an all-reduced batch.

    Keras all-reduces a whole data batch only to learn its shapes; under
    MultiWorkerMirroredStrategy that eager reduction fails on PerReplica inputs.
    """
    strategy = self._distribute_strategy
    if strategy is None or iterator is None:
      return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
    for _, _, it in iterator:
      batch = next(it)
      data_batch = tf.nest.map_structure(
        lambda v: (
          strategy.experimental_local_results(v)[0] if isinstance(v, tf.distribute.DistributedValues) else v
        ),
        batch,
      )
      break
    if isinstance(data_batch, dict):  # Schedule dicts: Keras only knows (x, y) batches.
      data_batch = (data_batch["image"], data_batch.get("label"))
    with strategy.scope():
      self._symbolic_build(data_batch=data_batch)

  def _step_logs(self, trackers=None, compiled=True):
    """Metric results (of `trackers` and, if `compiled`, the compiled metrics; default: all of
    `self.metrics`); rank-1 under multi-worker strategies.

    Keras reduces step outputs across workers with `reduce(MEAN, v, axis=0)`, which
    rejects the scalars every train_step returns; a shape-[1] value reduces to a scalar.
    """
    if trackers is None:
      logs = self.get_metrics_result()
    else:
      logs = {tracker.name: tracker.result() for tracker in trackers}
      if compiled and self.compiled and self._compile_metrics is not None and self._compile_metrics.built:
        logs.update(self._compile_metrics.result())
    if isinstance(self.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
      logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
    return logs

  # --- losses ---------------------------------------------------------------------
  def _replicas(self):
    return tf.distribute.get_strategy().num_replicas_in_sync

  @property
  def guided_report(self):
    """Which activations guided backprop changes, and which it leaves plain (`maps.GuidedReport`)."""
    return self.tapped.guided_report

  def probabilities(self, logits):
    return heads.probabilities(logits, self.multi_label)

  def _supervised(self, x, y, training):
    logits = self.tapped.logits(x, training=training)
    return tf.reduce_mean(heads.supervised_loss(y, logits, self.multi_label)), logits

  def _consistency(self, x):
    result = consistency.consistency_per_image(self.tapped, x, self.consistency_config, fused=self.fused)
    return tf.reduce_mean(result.costs), result

  @property
  def _has_mask(self):
    return self.consistency_config.attention in MASKED_ATTENTIONS

  def _mask_stats(self, result):
    """[mean of the soft mask, mean over images of the std of its logits], or [] for maskless attentions."""
    if (result.mask is not None) != self._has_mask:
      raise AssertionError(
        f"MASKED_ATTENTIONS is out of date: attention {self.consistency_config.attention!r} "
        f"{'builds' if result.mask is not None else 'builds no'} mask"
      )
    if result.mask is None:
      return []
    spread = tf.math.reduce_std(result.mask_logits, axis=[1, 2])
    return [tf.reduce_mean(result.mask), tf.reduce_mean(spread)]

  def _track_mask(self, stats, weight=1.0):
    for tracker, value in zip((self.mask_mean_tracker, self.mask_spread_tracker), stats):
      tracker.update_state(value, sample_weight=weight)

  def _train_trackers(self):
    """The trackers a training step of this schedule updates (Keras logs exactly these, no idle zeros)."""
    trackers = [self.loss_tracker]
    if self.schedule != "atcon":
      trackers.append(self.supervised_loss_tracker)
    if self.schedule != "supervised":
      trackers.append(self.consistency_tracker)
      if self._has_mask:
        trackers += [self.mask_mean_tracker, self.mask_spread_tracker]
    return trackers

  def _gradients(self, loss_fn):
    with tf.GradientTape() as tape:
      outputs = loss_fn()
      scaled = outputs[0] / tf.cast(self._replicas(), outputs[0].dtype)
      # mixed_float16: Keras wraps the optimizer in a LossScaleOptimizer, which unscales in apply_gradients.
      scaled = self.optimizer.scale_loss(scaled)
    grads = tape.gradient(scaled, self.trainable_variables)
    grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, self.trainable_variables)]
    return grads, outputs

  def _update_metrics(self, x, y, logits, weight=None):
    if y is not None and self._compile_metrics is not None:
      sample_weight = None if weight is None else tf.fill(tf.shape(logits)[:1], weight)
      self._compile_metrics.update_state(y, self.probabilities(logits), sample_weight)

  # --- steps ----------------------------------------------------------------------
  def train_step(self, data):
    schedule = self.schedule
    if schedule == "supervised":
      x, y = _unpack_labeled(data)
      grads, (loss, logits) = self._gradients(lambda: self._supervised(x, y, True))
      self.supervised_loss_tracker.update_state(loss)
      self._update_metrics(x, y, logits)
    elif schedule == "atcon":
      x, _ = training_data.split_batch(data)
      grads, (loss, result) = self._gradients(lambda: self._consistency(x))
      self.consistency_tracker.update_state(loss)
      self._track_mask(self._mask_stats(result))
    elif schedule == "combining":
      x, y, x_unlabeled = data["image"], data["label"], data["unlabeled_image"]

      def combined():
        sup, logits = self._supervised(x, y, True)
        cons, result = self._consistency(x_unlabeled)
        return sup + self.alpha * cons, sup, cons, logits, result

      grads, (loss, sup, cons, logits, result) = self._gradients(combined)
      self.supervised_loss_tracker.update_state(sup)
      self.consistency_tracker.update_state(cons)
      self._track_mask(self._mask_stats(result))
      self._update_metrics(x, y, logits)
    else:  # alternating
      x, y = data["image"], data["label"]
      labeled = tf.reshape(tf.cast(data["is_labeled"], tf.bool), [-1])[0]
      n_stats = 2 if self._has_mask else 0  # mask statistics: zeros on supervised steps, weighted out

      def supervised_branch():
        grads, (loss, logits) = self._gradients(lambda: self._supervised(x, y, True))
        return grads + [loss, logits] + [tf.zeros([], loss.dtype)] * n_stats

      def consistency_branch():
        grads, (loss, result) = self._gradients(lambda: self._consistency(x))
        return grads + [loss, result.logits] + self._mask_stats(result)

      outputs = tf.cond(labeled, supervised_branch, consistency_branch)
      n_grads = len(self.trainable_variables)
      grads, (loss, logits), stats = outputs[:n_grads], outputs[n_grads : n_grads + 2], outputs[n_grads + 2 :]
      weight = tf.cast(labeled, loss.dtype)
      self.supervised_loss_tracker.update_state(loss, sample_weight=weight)
      self.consistency_tracker.update_state(loss, sample_weight=1.0 - weight)
      self._track_mask(stats, weight=1.0 - weight)
      self._update_metrics(x, y, logits, weight=weight)
    self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
    self.loss_tracker.update_state(loss)
    return self._step_logs(self._train_trackers(), compiled=schedule != "atcon")

  def test_step(self, data):
    """Inference-mode supervised loss and metrics (if labeled) and the consistency loss."""
    if isinstance(data, dict):
      x, y = data["image"], data.get("label")
    else:
      x, y = training_data.split_batch(data)
    cons, result = self._consistency(x)
    self.consistency_tracker.update_state(cons)
    self._track_mask(self._mask_stats(result))
    loss = cons
    if y is not None:
      sup = tf.reduce_mean(heads.supervised_loss(y, result.logits, self.multi_label))
      self.supervised_loss_tracker.update_state(sup)
      self._update_metrics(x, y, result.logits)
      loss = (
        sup
        if self.schedule == "supervised"
        else (sup + self.alpha * cons if self.schedule == "combining" else cons)
      )
    self.loss_tracker.update_state(loss)
    return self._step_logs()

  def predict_step(self, data):
    x, _ = training_data.split_batch(data)
    return self.probabilities(self.tapped.logits(x))


def _unpack_labeled(data):
  if isinstance(data, dict):
    return data["image"], data["label"]
  if isinstance(data, (tuple, list)) and len(data) >= 2:
    return data[0], data[1]
  raise ValueError("The supervised schedule needs (images, labels) batches.")
