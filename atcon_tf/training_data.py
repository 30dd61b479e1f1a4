"""tf.data pipelines that feed `ATCONModel`'s alternating and combining schedules."""

import tensorflow as tf


def split_batch(element):
  """(images, labels or None) from a batch given as a dict, a tuple, or bare images."""
  if isinstance(element, dict):
    return element["image"], element.get("label")
  if isinstance(element, (tuple, list)):
    return element[0], (element[1] if len(element) > 1 else None)
  return element, None


def alternating_steps(alpha, labeled_size, unlabeled_size, batch_size, unlabeled_batch_size):
  """Steps per epoch of the alternating schedule: int(alpha*S/bs + U/ubs) (docs/method.md §2)."""
  return int(alpha * labeled_size / batch_size + unlabeled_size / unlabeled_batch_size)


def labeled_probability(alpha, labeled_size, unlabeled_size):
  """p = alpha*S / (alpha*S + U): chance that a step of the alternating schedule is supervised."""
  return alpha * labeled_size / (alpha * labeled_size + unlabeled_size)


def alternating_dataset(labeled, unlabeled, alpha, labeled_size, unlabeled_size, seed=0):
  """Batches drawn from `labeled` with probability p, else from `unlabeled`, forever.

  Both inputs are *batched* datasets: `labeled` of `(x, y)`, `unlabeled` of `x` or `(x, ...)`.
  Each output batch is `{"image", "label", "is_labeled"}`; unlabeled batches carry zero
  labels that the model never reads. Use `alternating_steps` as `steps_per_epoch`.
  """
  p = labeled_probability(alpha, labeled_size, unlabeled_size)
  label_spec = labeled.element_spec[1]

  def from_labeled(x, y):
    return {"image": x, "label": y, "is_labeled": tf.ones([tf.shape(x)[0]], tf.bool)}

  def from_unlabeled(*element):
    x, _ = split_batch(element if len(element) > 1 else element[0])
    shape = tf.concat([tf.shape(x)[:1], tf.constant(label_spec.shape[1:].as_list(), tf.int32)], 0)
    return {
      "image": x,
      "label": tf.zeros(shape, label_spec.dtype),
      "is_labeled": tf.zeros([tf.shape(x)[0]], tf.bool),
    }

  return tf.data.Dataset.sample_from_datasets(
    [labeled.repeat().map(from_labeled), unlabeled.repeat().map(from_unlabeled)],
    weights=[p, 1.0 - p],
    seed=seed,
  )


def combining_dataset(labeled, unlabeled):
  """Pairs each labeled batch with an unlabeled one (restarted when exhausted)."""

  def pair(labeled_batch, unlabeled_batch):
    x, y = labeled_batch
    x_u, _ = split_batch(unlabeled_batch)
    return {"image": x, "label": y, "unlabeled_image": x_u}

  return tf.data.Dataset.zip((labeled, unlabeled.repeat())).map(pair)
