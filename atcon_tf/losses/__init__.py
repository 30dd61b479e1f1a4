"""The ATCON consistency loss and its similarity measures."""

from atcon_tf.losses.consistency import (
  ATTENTIONS,
  ConsistencyConfig,
  ConsistencyResult,
  consistency_loss,
  consistency_per_image,
)
from atcon_tf.losses.similarity import SIMILARITIES, get_similarity
