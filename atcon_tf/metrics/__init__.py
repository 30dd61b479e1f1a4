"""Evaluation metrics as the ATCON authors compute them (docs/method.md §4.2, §6), numpy only.

`classification`: accuracy, macro-F1 (single- and multi-label); `bootstrap`: bstrap-style CIs, the authors'
pooled p-value and paired tests for two models on the same images; `localization`: the paper's
weakly-supervised-detection IoU and the pointing games; `faithfulness`: deletion / insertion AUC (maps without
boxes).
No TensorFlow here, so reading results or recomputing a table stays cheap.
"""

from atcon_tf.metrics.bootstrap import (
  BootstrapCI,
  bootstrap_ci,
  mcnemar_pvalue,
  paired_permutation_pvalue,
  pooled_bootstrap_pvalue,
)
from atcon_tf.metrics.classification import (
  accuracy,
  ABSENT_CLASS_RULES,
  absent_classes,
  macro_f1,
  macro_f1_multilabel,
  per_class_f1,
  per_class_f1_multilabel,
)
from atcon_tf.metrics.faithfulness import (
  baseline_images,
  curve_auc,
  deletion_insertion_auc,
  perturbation_curves,
)
from atcon_tf.metrics.localization import (
  binarize_cam,
  boxes_to_mask,
  energy_pointing_game,
  energy_pointing_game_batch,
  mask_iou,
  pointing_game_batch,
  pointing_game_hit,
  upsample_nearest,
  voc_pixel_boxes,
  wsd_iou,
  wsd_iou_batch,
  wsd_map,
)

__all__ = [
  "BootstrapCI",
  "bootstrap_ci",
  "mcnemar_pvalue",
  "paired_permutation_pvalue",
  "pooled_bootstrap_pvalue",
  "accuracy",
  "ABSENT_CLASS_RULES",
  "absent_classes",
  "macro_f1",
  "macro_f1_multilabel",
  "per_class_f1",
  "per_class_f1_multilabel",
  "baseline_images",
  "curve_auc",
  "deletion_insertion_auc",
  "perturbation_curves",
  "binarize_cam",
  "boxes_to_mask",
  "energy_pointing_game",
  "energy_pointing_game_batch",
  "mask_iou",
  "pointing_game_batch",
  "pointing_game_hit",
  "upsample_nearest",
  "voc_pixel_boxes",
  "wsd_iou",
  "wsd_iou_batch",
  "wsd_map",
]
