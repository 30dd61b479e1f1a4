"""Every name a user can choose, and every default that more than one module needs, in one place.

Plain Python on purpose (no TensorFlow, no Keras): command lines build their flags and `--help` from these
without loading TensorFlow, and the modules that implement each choice validate against the same tuples.
"""

# The ATCON loss (docs/method.md). Defaults are the authors'.
ATTENTIONS = ("gb_mask", "gb_map", "gb_pooled", "cam_mask", "smoothgrad", "ig_mask")
SIMILARITIES = ("pearson", "cross_correlation", "ssim")
DEFAULT_ATTENTION = "gb_mask"
DEFAULT_SIMILARITY = "pearson"
MASK_INTENSITY = 8.0  # w of the soft mask sigmoid(w (G - sigma)); the authors also used 20, 40, 100
CAM_MASK_INTENSITY = 32.0  # the cam_mask variant's own w
IG_STEPS = 5
SMOOTHGRAD_SAMPLES = 25
SMOOTHGRAD_NOISE = 0.15

# Training schedules: ATCONModel's, plus the trainer's two_stage (supervised, then ATCON).
MODEL_SCHEDULES = ("supervised", "atcon", "alternating", "combining")
TRAINER_SCHEDULES = MODEL_SCHEDULES + ("two_stage",)

# Raw pixels in [0, 255] -> model input (atcon_tf.preprocessing holds the formulas).
PREPROCESSING = ("imagenet_torch", "imagenet_caffe", "scale_-1_1", "scale_0_1", "none")
AUGMENTATIONS = ("none", "digits", "flip", "voc")

# Model factories (atcon_tf.backbones) and the preprocessing each one was designed for.
BACKBONES = ("small_resnet", "resnet50", "mobilenet_v2", "vgg16")
BACKBONE_PREPROCESSING = {
  "small_resnet": "imagenet_torch",
  "resnet50": "imagenet_caffe",
  "mobilenet_v2": "scale_-1_1",
  "vgg16": "imagenet_caffe",
}
# Grad-CAM layers chosen for a backbone instead of the automatic rule: VGG16's last conv, not block5_pool
# (a 2x2 map at 64 px leaves the loss little to work with).
BACKBONE_TARGET_LAYER = {"vgg16": "block5_conv3"}
# --weights: named choices; anything else is a file path.
WEIGHTS = ("auto", "imagenet", "hed", "none")

# Map faithfulness without boxes (atcon_tf.metrics.faithfulness): what removed pixels become.
FAITHFULNESS_BASELINES = ("blur", "mean")

STRATEGIES = ("default", "mirrored", "multi_worker")
# keras.mixed_precision policies: bfloat16 for CPUs/TPUs, float16 (with loss scaling) for GPUs.
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
DATASETS = ("house_numbers", "svhn", "fashion_mnist", "voc2007", "voc2012", "folder:PATH")
HOUSE_NUMBERS_CONFIGS = ("single", "multi")


def check(kind: str, value, allowed) -> None:
  """Raises a ValueError naming the bad value and the allowed ones."""
  if value not in allowed:
    raise ValueError(f"Unknown {kind} {value!r}; choose one of {list(allowed)}.")
