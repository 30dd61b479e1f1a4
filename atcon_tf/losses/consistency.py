"""The ATCON attention-consistency loss (docs/method.md §1) and the authors' ablation variants.

Attention variants (`attention=`), authors' `resolutionMatch` / `attentionMethod` in brackets:
- `gb_mask` (default, mode 2): Grad-CAM(x) vs Grad-CAM(x * M), M a soft mask of the
  guided-backprop magnitude G of x. Gradients flow through both CAMs and through M (2nd order).
- `gb_map` (mode 0): Grad-CAM upsampled to the input (bilinear, align_corners) vs G.
- `gb_pooled` (mode 1): Grad-CAM vs G average-pooled to the CAM size (by the real ratio).
- `cam_mask` (mode 3): G(x) vs G(x * M_cam), M_cam a soft mask of the upsampled Grad-CAM.
- `smoothgrad` (mode 4): upsampled Grad-CAM vs SmoothGrad magnitude.
- `ig_mask` (attentionMethod 2): like `gb_mask` with Integrated Gradients instead of GB.
Every map is computed in inference mode for the top-1 class of x (no gradient through it).
"""

import collections

import tensorflow as tf

from atcon_tf import choices
from atcon_tf.losses import similarity as similarity_lib
from atcon_tf.maps import processing
from atcon_tf.maps import targets
from atcon_tf.maps.gradcam import gradcam
from atcon_tf.maps.guided_backprop import guided_backprop
from atcon_tf.maps.guided_pass import guided_pass
from atcon_tf.maps.integrated_gradients import integrated_gradients
from atcon_tf.maps.smoothgrad import smoothgrad

ATTENTIONS = choices.ATTENTIONS

ConsistencyResult = collections.namedtuple(
  "ConsistencyResult", ["costs", "logits", "class_ids", "maps1", "maps2", "mask", "mask_logits"]
)


class ConsistencyConfig(
  collections.namedtuple(
    "ConsistencyConfig",
    [
      "attention",
      "similarity",
      "mask_intensity",
      "cam_mask_intensity",
      "ig_steps",
      "smoothgrad_samples",
      "smoothgrad_noise",
    ],
  )
):
  """Hyperparameters of the loss; defaults are the authors' (docs/method.md §3)."""

  def __new__(
    cls,
    attention=choices.DEFAULT_ATTENTION,
    similarity=choices.DEFAULT_SIMILARITY,
    mask_intensity=choices.MASK_INTENSITY,
    cam_mask_intensity=choices.CAM_MASK_INTENSITY,
    ig_steps=choices.IG_STEPS,
    smoothgrad_samples=choices.SMOOTHGRAD_SAMPLES,
    smoothgrad_noise=choices.SMOOTHGRAD_NOISE,
  ):
    choices.check("attention variant", attention, ATTENTIONS)
    choices.check("similarity", similarity, choices.SIMILARITIES)
    return super().__new__(
      cls,
      attention,
      similarity,
      float(mask_intensity),
      float(cam_mask_intensity),
      int(ig_steps),
      int(smoothgrad_samples),
      float(smoothgrad_noise),
    )


def _input_size(x):
  return tf.shape(x)[1:3]


def _masked(x, mask):
  return x * mask[..., None]


def _first_maps(tapped, x, class_ids, config, fused):
  """Grad-CAM of x (no ReLU), logits, classes and, where the variant needs it, guided backprop of x.

  Fused (default): one forward of x gives all of them (`maps.guided_pass`, with the GAP -> Dense CAM
  shortcut). Unfused: a Grad-CAM pass by autodiff and a separate guided pass, as the authors compute them;
  the two agree to float rounding (tests/test_fused_step.py).
  """
  needs_gb = config.attention in ("gb_mask", "gb_map", "gb_pooled", "cam_mask")
  if fused and needs_gb:
    first = guided_pass(tapped, x, targets.as_target(class_ids, None))
    return first.cam, first.logits, first.class_ids, first.guided_backprop
  first = gradcam(tapped, x, class_ids, relu=False, shortcut=fused)
  gb = guided_backprop(tapped, x, first.class_ids) if needs_gb else None
  return first.cam, first.logits, first.class_ids, gb


def consistency_per_image(tapped, x, config=None, class_ids=None, fused=True, **overrides):
  """ATCON costs per example (B,) plus the maps that were compared.

  `config` is a ConsistencyConfig; keyword overrides build one. The loss is
  `mean(costs)`, in [-1, 1] for Pearson. `class_ids` (None / -1 = top-1, the loss's
  definition) lets evaluation and serving report the cost of another class. `fused=False` computes the
  same maps pass by pass (the reference the fused step is tested against).
  """
  if config is None:
    config = ConsistencyConfig(**overrides)
  elif overrides:
    config = config._replace(**overrides)
  x = tf.convert_to_tensor(x)
  cam, logits, classes, gb = _first_maps(tapped, x, class_ids, config, fused)
  mask = mask_logits = None

  if config.attention in ("gb_mask", "ig_mask"):
    if config.attention == "gb_mask":
      attributions = gb
    else:
      attributions = integrated_gradients(tapped, x, classes, steps=config.ig_steps)
    saliency = processing.channel_magnitude(attributions)
    mask, mask_logits = processing.soft_mask(saliency, config.mask_intensity)
    maps1, maps2 = cam, gradcam(tapped, _masked(x, mask), classes, relu=False, shortcut=fused).cam
  elif config.attention == "gb_map":
    saliency = processing.channel_magnitude(gb)
    maps1, maps2 = processing.resize_align_corners(cam, _input_size(x)), saliency
  elif config.attention == "gb_pooled":
    saliency = processing.channel_magnitude(gb)
    pooled = processing.average_pool_to(saliency, cam.shape[1:3])
    maps1, maps2 = cam, pooled
  elif config.attention == "cam_mask":
    upsampled = processing.resize_align_corners(cam, _input_size(x))
    mask, mask_logits = processing.soft_mask(upsampled, config.cam_mask_intensity)
    maps1 = processing.channel_magnitude(gb)
    maps2 = processing.channel_magnitude(guided_backprop(tapped, _masked(x, mask), classes))
  else:  # smoothgrad
    smooth = smoothgrad(
      tapped, x, classes, samples=config.smoothgrad_samples, noise_level=config.smoothgrad_noise
    )
    maps1 = processing.resize_align_corners(cam, _input_size(x))
    maps2 = processing.channel_magnitude(smooth)

  costs = similarity_lib.get_similarity(config.similarity)(maps1, maps2)
  return ConsistencyResult(costs, logits, classes, maps1, maps2, mask, mask_logits)


def consistency_loss(tapped, x, config=None, **overrides):
  """The ATCON loss: mean over the batch of the per-image costs."""
  return tf.reduce_mean(consistency_per_image(tapped, x, config, **overrides).costs)
