"""tf.distribute for the trainer: the strategy, who writes the run folder, input sharding, a barrier."""

from __future__ import annotations

import os

from atcon_tf import choices
from trainers.config import Config


def make_strategy(cfg: Config):
  import tensorflow as tf

  if cfg.cpu_devices > 0:
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
      cpus[0], [tf.config.LogicalDeviceConfiguration()] * cfg.cpu_devices
    )
  if cfg.strategy == "default":
    return tf.distribute.get_strategy()
  if cfg.strategy == "mirrored":
    devices = None
    if not tf.config.list_logical_devices("GPU") and cfg.cpu_devices > 0:
      devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=devices)
  if cfg.strategy == "multi_worker":
    if "TF_CONFIG" not in os.environ:
      raise ValueError("--strategy=multi_worker needs the TF_CONFIG environment variable (cluster + task).")
    return tf.distribute.MultiWorkerMirroredStrategy()
  choices.check("--strategy", cfg.strategy, choices.STRATEGIES)


def is_chief(strategy) -> bool:
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not getattr(resolver, "task_type", None):
    return True
  cluster = resolver.cluster_spec().as_dict()
  if "chief" in cluster:
    return resolver.task_type == "chief"
  return resolver.task_type == "worker" and resolver.task_id == 0


def shard_by_data(ds):
  """Multi-worker input sharding by element: every worker reads the same seeded pipeline and keeps its share
  (tfds splits are often a single file, which the default FILE sharding cannot split)."""
  import tensorflow as tf

  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  return ds.with_options(options)


def barrier(strategy):
  """Multi-worker: every worker waits here until the chief has evaluated and exported (a worker that exits
  early makes the chief's coordination service report the cluster as crashed)."""
  import tensorflow as tf

  if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)
