"""SimCLR (Chen et al. 2020) as a Keras model: two augmented views, a projection head, the NT-Xent loss.

Why a `keras.Model` with its own `train_step`: `fit` then gives resuming (BackupAndRestore), TensorBoard,
CSV logs and progress bars for free, as in the fine-tuning stages. Views are drawn inside the step from raw
[0, 255] pixels (vectorised over the batch, so the input pipeline stays the trainer's) and preprocessed the
way the fine-tuned model will be, so the encoder learns on the inputs it will see.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from atcon_tf import preprocessing as preprocessing_lib


def nt_xent(z1, z2, temperature: float = 0.5):
  """Normalised-temperature cross-entropy of SimCLR, mean over the 2N views.

  Each view's positive is the other view of its image; the 2N - 2 views of the other images are its
  negatives; similarities are cosines / temperature, a view's similarity with itself is left out.
  """
  z = tf.math.l2_normalize(tf.concat([z1, z2], axis=0), axis=1)
  n = tf.shape(z1)[0]
  logits = tf.matmul(z, z, transpose_b=True) / temperature
  logits = logits - tf.eye(2 * n, dtype=logits.dtype) * 1e9  # no self-similarity
  positives = tf.concat([tf.range(n, 2 * n), tf.range(0, n)], axis=0)
  losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=positives, logits=logits)
  accuracy = tf.reduce_mean(
    tf.cast(tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), positives), tf.float32)
  )
  return tf.reduce_mean(losses), accuracy


def augment(
  images, crop_scale=(0.2, 1.0), jitter: float = 0.4, jitter_prob: float = 0.8, gray_prob: float = 0.2
):
  """One SimCLR view per image of a (B, S, S, 3) batch in [0, 255]: random resized crop (area `crop_scale`,
  aspect 3/4-4/3), horizontal flip, colour jitter (brightness, contrast, saturation by up to +-`jitter`, with
  probability `jitter_prob`) and grayscale (probability `gray_prob`). Float32 out, in [0, 255]."""
  x = tf.cast(images, tf.float32)
  b, size = tf.shape(x)[0], tf.shape(x)[1:3]

  def uniform(low, high, shape=None):
    return tf.random.uniform(shape if shape is not None else [b], low, high)

  area = uniform(*crop_scale)
  ratio = tf.exp(uniform(tf.math.log(3.0 / 4.0), tf.math.log(4.0 / 3.0)))
  h, w = tf.minimum(tf.sqrt(area / ratio), 1.0), tf.minimum(tf.sqrt(area * ratio), 1.0)
  y0, x0 = uniform(0.0, 1.0) * (1.0 - h), uniform(0.0, 1.0) * (1.0 - w)
  boxes = tf.stack([y0, x0, y0 + h, x0 + w], axis=1)
  x = tf.image.crop_and_resize(x, boxes, tf.range(b), size)
  x = tf.where(uniform(0.0, 1.0)[:, None, None, None] < 0.5, tf.reverse(x, axis=[2]), x)

  def per_image(values):
    return values[:, None, None, None]

  jittered = x * per_image(uniform(1 - jitter, 1 + jitter))  # brightness
  mean = tf.reduce_mean(jittered, axis=[1, 2, 3], keepdims=True)
  jittered = (jittered - mean) * per_image(uniform(1 - jitter, 1 + jitter)) + mean  # contrast
  jittered_gray = tf.reduce_mean(jittered, axis=3, keepdims=True)
  jittered = jittered_gray + (jittered - jittered_gray) * per_image(
    uniform(1 - jitter, 1 + jitter)
  )  # saturation
  x = tf.where(per_image(uniform(0.0, 1.0)) < jitter_prob, jittered, x)
  gray = tf.reduce_mean(x, axis=3, keepdims=True)
  x = tf.where(per_image(uniform(0.0, 1.0)) < gray_prob, tf.broadcast_to(gray, tf.shape(x)), x)
  return tf.clip_by_value(x, 0.0, 255.0)


class SimCLRModel(keras.Model):
  """encoder (input -> feature map) + GAP + projection head, trained on pairs of views of unlabeled images.

  The encoder's layers are the fine-tuning classifier's (shared weights), so after `fit` the classifier
  holds the pretrained backbone.
  """

  def __init__(self, encoder, preprocessing: str, projection_dim=64, hidden_dim=0, temperature=0.5, **kwargs):
    super().__init__(**kwargs)
    self.encoder = encoder
    self.preprocessing = preprocessing
    self.temperature = float(temperature)
    features = int(encoder.output.shape[-1])
    self.head = keras.Sequential(
      [
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(hidden_dim or features, activation="relu"),
        keras.layers.Dense(projection_dim),
      ],
      name="projection_head",
    )
    self.loss_tracker = keras.metrics.Mean(name="loss")
    self.accuracy_tracker = keras.metrics.Mean(name="contrastive_accuracy")

  @property
  def metrics(self):
    return [self.loss_tracker, self.accuracy_tracker]

  def call(self, images, training=False):
    """Projections of raw [0, 255] images (no augmentation)."""
    return self.head(self.encoder(preprocessing_lib.apply(images, self.preprocessing), training=training))

  def train_step(self, images):
    views = [preprocessing_lib.apply(augment(images), self.preprocessing) for _ in range(2)]
    with tf.GradientTape() as tape:
      z1, z2 = (self.head(self.encoder(v, training=True), training=True) for v in views)
      loss, accuracy = nt_xent(z1, z2, self.temperature)
    variables = self.trainable_variables
    self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    self.loss_tracker.update_state(loss)
    self.accuracy_tracker.update_state(accuracy)
    return {m.name: m.result() for m in self.metrics}
