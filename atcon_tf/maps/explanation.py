"""Every map of one image batch in as few passes as the network allows: the one composition of the maps.

Serving signatures, evaluation, the PNG/TensorBoard pictures and the reference outputs all call `explain`,
so they cannot drift apart. It returns raw maps (Grad-CAM at the target layer's resolution, |guided
backprop| at the input's); display scaling is `displayed`.

Passes: one forward of x gives the logits, the class, guided backprop and Grad-CAM (`guided_pass`). Then the
consistency: for the authors' `gb_mask` variant, Grad-CAM of the GB-masked x and the similarity of the two
CAMs (the same math as `losses.consistency_per_image`); other variants call the loss itself. The consistency
costs one more forward; `with_consistency=False` skips it (the maps alone: a forward and an input gradient).
"""

import collections

import tensorflow as tf

from atcon_tf.losses import consistency as consistency_lib
from atcon_tf.losses import similarity as similarity_lib
from atcon_tf.maps import processing
from atcon_tf.maps import targets
from atcon_tf.maps.gradcam import gradcam
from atcon_tf.maps.guided_pass import guided_pass

Explanation = collections.namedtuple(
  "Explanation",
  [
    "logits",
    "probabilities",
    "class_ids",
    "gradcam",  # (B, h, w) Grad-CAM without ReLU (as the loss uses it)
    "guided_backprop",  # (B, H, W) sum over channels of |guided backprop|
    "mask",
    "mask_logits",  # (B, H, W) the ATCON soft mask sigmoid(w (G - sigma)) and its logits
    "consistency",  # (B,) -cost: higher = more consistent (Pearson r in [-1, 1] by default)
  ],
)


def explain(tapped, x, class_ids=None, config=None, target=None, with_consistency=True) -> Explanation:
  """All maps of a preprocessed batch `x` (B, H, W, C) for the top-1 class, given classes, or a target.

  `config`: a `losses.ConsistencyConfig` (default: the authors' settings) for the mask and consistency.
  For variants other than gb_mask (and for a non-class `target`) the consistency is that of the loss for
  the explained classes. `with_consistency=False`: mask, mask_logits and consistency are None.
  """
  config = config or consistency_lib.ConsistencyConfig()
  x = tf.convert_to_tensor(x)
  target = targets.as_target(class_ids, target)
  cam, gb, logits, classes = guided_pass(tapped, x, target)
  saliency = processing.channel_magnitude(gb)
  probabilities = tapped.probabilities(logits)
  if not with_consistency:
    return Explanation(logits, probabilities, classes, cam, saliency, None, None, None)
  mask, mask_logits = processing.soft_mask(saliency, config.mask_intensity)
  if config.attention == "gb_mask":
    masked_cam = gradcam(tapped, x * mask[..., None], classes, relu=False).cam
    costs = similarity_lib.get_similarity(config.similarity)(cam, masked_cam)
  else:
    costs = consistency_lib.consistency_per_image(tapped, x, config, class_ids=classes).costs
  return Explanation(logits, probabilities, classes, cam, saliency, mask, mask_logits, -costs)


def displayed(explanation: Explanation, size):
  """The maps as served and shown: ReLU Grad-CAM resized to `size` (bilinear, align_corners) and
  |guided backprop|, each min-max normalised per image to [0, 1]."""
  cam = processing.resize_align_corners(tf.nn.relu(explanation.gradcam), size)
  return processing.normalize_01(cam), processing.normalize_01(explanation.guided_backprop)
