"""The trainer's data: dataset splits -> labeled / unlabeled / validation pipelines and the test selection.

Pipelines yield preprocessed model inputs (`atcon_tf.preprocessing.apply`, the formula the saved model
records for serving); evaluation and pictures get raw uint8 images and preprocess them the same way.
"""

from __future__ import annotations

import dataclasses

from trainers.config import Config


@dataclasses.dataclass
class Data:
  info: object  # canonical.DatasetInfo
  splits: object  # canonical.Splits
  plan: object  # subsets.SplitPlan
  preprocessing: str
  augment: str
  labeled: object  # tf.data: (x, y) batches, infinite
  unlabeled: object  # tf.data: x batches, infinite (None when there is no pool)
  validation: object  # tf.data: (x, y) batches, finite
  validation_source: object  # (Source, indices) of the validation images
  test_source: object  # (Source, indices) of the test images
  viz_images: object  # uint8 validation images for the attention pictures
  viz_labels: object
  sizes: dict


def resolve_augment(cfg: Config) -> str:
  if cfg.augment != "auto":
    return cfg.augment
  if cfg.dataset.startswith("voc"):
    return "voc"
  return "digits" if cfg.dataset in ("house_numbers", "svhn") else "none"


def _pipeline(source, indices, preprocessing, augment, batch_size, seed, with_labels=True, cache=True):
  """Infinite, shuffled, batched training pipeline of (x, y) or x, from canonical elements."""
  import tensorflow as tf

  from atcon_tf import preprocessing as preprocessing_lib
  from atcon_tf.data import augmentation

  ds = source.dataset(indices)
  ds = ds.map(lambda e: (e["image"], e["label"]), num_parallel_calls=tf.data.AUTOTUNE)
  if cache:
    ds = ds.cache()
  ds = ds.shuffle(min(len(indices), 20000), seed=seed, reshuffle_each_iteration=True).repeat()

  def finish(image, label):
    x = preprocessing_lib.apply(augmentation.augment(image, augment), preprocessing)
    return (x, label) if with_labels else x

  ds = ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def _cacheable(count, image_size, limit_mb=2048):
  return count * image_size * image_size * 3 < limit_mb * 2**20


SUBSET_SEED = 20231  # fixed: every run (whatever its --seed) evaluates the same test images


def split_labels(source):
  """The labels of every image of a split (read once if the split did not keep them)."""
  import numpy as np

  if source.labels is None:
    source.labels = np.stack(list(source.dataset().map(lambda e: e["label"]).as_numpy_iterator()))
  return source.labels


def evaluation_subset(source, size: int):
  """Indices of `size` images of a split (all for size <= 0), seeded and stratified by class."""
  import numpy as np

  from atcon_tf.data import subsets

  if size <= 0 or size >= source.num_examples:
    return np.arange(source.num_examples)
  return subsets.stratified_subset(split_labels(source), size, seed=SUBSET_SEED)


MAX_AUTO_VALIDATION = 500


def validation_size(cfg: Config, num_classes: int, train_examples: int) -> int:
  """--val_size, or (auto, -1) as many as the labeled training images: N per class, >= 2 per class, <= 500.

  A fixed 500 would take five times the training labels at 10 labels per class; the labeled budget is what
  a user with few labels really has for model selection too.
  """
  if cfg.val_size >= 0:
    return cfg.val_size
  budget = cfg.labels_per_class * num_classes if cfg.labels_per_class > 0 else train_examples
  return int(min(MAX_AUTO_VALIDATION, max(2 * num_classes, budget)))


def picture_subset(source, indices, count: int):
  """`count` of `indices` spread over the classes (seeded), for the attention pictures."""
  import numpy as np

  from atcon_tf.data import subsets

  indices = np.asarray(indices)
  if count <= 0 or len(indices) == 0:
    return indices[:0]
  chosen = subsets.stratified_subset(split_labels(source)[indices], count, seed=SUBSET_SEED)
  return indices[chosen]


def picture_positions(source, indices, count: int):
  """Positions in `indices` (sorted, as `source.dataset(indices)` yields them) of `picture_subset`."""
  import numpy as np

  return np.searchsorted(np.asarray(indices), picture_subset(source, indices, count))


def load_splits(cfg: Config):
  """The dataset's splits (`atcon_tf.data.datasets.Splits`) at the run's image size."""
  from atcon_tf.data import datasets

  sizes = dict(zip(("train", "validation", "test"), cfg.house_numbers_sizes))
  return datasets.load(
    cfg.dataset,
    cfg.image_size,
    data_dir=cfg.data_dir,
    house_numbers_config=cfg.house_numbers_config,
    house_numbers_sizes=sizes,
    download=cfg.download,
    skip_bad_images=cfg.skip_bad_images,
  )


def prepare_data(cfg: Config, preprocessing: str, num_replicas: int = 1, splits=None) -> Data:
  """Draws the labeled / unlabeled / validation split of `splits` (default: loaded) and builds the pipelines.

  num_replicas > 1: validation batches are all full (drop_remainder), because a partial last batch would hand
  some replicas an empty batch, which the ATCON test step cannot take.
  """
  import numpy as np
  import tensorflow as tf

  from atcon_tf import preprocessing as preprocessing_lib
  from atcon_tf.data import subsets

  splits = splits or load_splits(cfg)
  info = splits.info
  val_size = validation_size(cfg, info.num_classes, splits.train.num_examples)
  carve = 0 if splits.validation is not None else val_size
  plan = subsets.plan_splits(
    splits.train.labels,
    cfg.labels_per_class,
    seed=cfg.seed,
    multi_label=info.multi_label,
    fully_balanced=cfg.fully_balanced,
    validation_size=carve,
    unlabeled_mode=cfg.unlabeled,
    unlabeled_limit=None if cfg.unlabeled_limit < 0 else cfg.unlabeled_limit,
    num_classes=info.num_classes,
  )
  if len(plan.labeled) == 0:
    raise ValueError("The labeled subset is empty: check --labels_per_class and the dataset.")
  if splits.validation is not None:
    validation_source = (splits.validation, evaluation_subset(splits.validation, val_size))
  else:
    validation_source = (splits.train, plan.validation)
  test_source = (splits.test, evaluation_subset(splits.test, cfg.test_size))
  n_test = len(test_source[1])

  augment = resolve_augment(cfg)
  batch = min(cfg.batch_size, len(plan.labeled))
  ubs = cfg.unlabeled_batch_size or cfg.batch_size
  labeled = _pipeline(splits.train, plan.labeled, preprocessing, augment, batch, cfg.seed)
  unlabeled = None
  if len(plan.unlabeled):
    unlabeled = _pipeline(
      splits.train,
      plan.unlabeled,
      preprocessing,
      augment,
      min(ubs, len(plan.unlabeled)),
      cfg.seed + 1,
      with_labels=False,
      cache=_cacheable(len(plan.unlabeled), cfg.image_size),
    )
  val_src, val_idx = validation_source
  if len(val_idx) < num_replicas:
    raise ValueError("The validation set is empty: model selection needs --val_size > 0.")
  val_batch, val_batches = cfg.eval_batch_size, -(-len(val_idx) // cfg.eval_batch_size)
  if num_replicas > 1:
    val_batch = max(num_replicas, min(val_batch, len(val_idx)) // num_replicas * num_replicas)
    val_batches = len(val_idx) // val_batch
  validation = (
    val_src.dataset(val_idx)
    .map(
      lambda e: (preprocessing_lib.apply(e["image"], preprocessing), e["label"]),
      num_parallel_calls=tf.data.AUTOTUNE,
    )
    .cache()
    .batch(val_batch, drop_remainder=num_replicas > 1)
    .apply(tf.data.experimental.assert_cardinality(val_batches))
    .prefetch(tf.data.AUTOTUNE)
  )
  viz_idx = picture_subset(val_src, val_idx, cfg.num_viz_images)  # every class, not the first few
  viz = list(val_src.dataset(viz_idx).as_numpy_iterator()) if len(viz_idx) else []
  viz_images = np.stack([e["image"] for e in viz]) if viz else None
  viz_labels = np.stack([e["label"] for e in viz]) if viz else None
  split_sizes = dict(
    plan.summary(),
    validation=int(min(len(val_idx), val_batch * val_batches)),
    test=int(n_test),
    train_split=int(splits.train.num_examples),
    validation_source="own validation split"
    if splits.validation is not None
    else "carved from the training split",
  )
  print(
    f"labels: {len(plan.labeled)} labeled images for training, {split_sizes['validation']} for validation "
    f"({split_sizes['validation_source']}; --val_size={cfg.val_size}"
    + (" = auto: as many as the training labels, 2-500" if cfg.val_size < 0 else "")
    + f"), {len(plan.unlabeled)} for the ATCON loss ({cfg.unlabeled}), {split_sizes['test']} test images",
    flush=True,
  )
  return Data(
    info,
    splits,
    plan,
    preprocessing,
    augment,
    labeled,
    unlabeled,
    validation,
    validation_source,
    test_source,
    viz_images,
    viz_labels,
    split_sizes,
  )
