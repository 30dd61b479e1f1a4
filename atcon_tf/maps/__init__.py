"""Attention maps as pure TensorFlow functions: batched, tf.function-safe, differentiable."""

from atcon_tf.maps.explanation import Explanation, displayed, explain
from atcon_tf.maps.gradcam import GradCamResult, gradcam
from atcon_tf.maps.guided_backprop import guided_backprop
from atcon_tf.maps.guided import GuidedReport, guided_relus
from atcon_tf.maps.integrated_gradients import integrated_gradients
from atcon_tf.maps.processing import channel_magnitude, normalize_01, soft_mask, zscore
from atcon_tf.maps.smoothgrad import smoothgrad
from atcon_tf.maps.targets import ClassTarget, SumOfLogits, top1_classes
