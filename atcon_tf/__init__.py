"""ATCON attention-consistency training for TensorFlow / Keras 3.

Main entry points:
- `ATCONModel`: wrap a Keras classifier and `fit` it with the consistency loss.
- `TappedModel` + `atcon_tf.maps`: differentiable Grad-CAM, guided backprop, IG, SmoothGrad.
- `atcon_tf.losses.consistency_loss`: the ATCON loss and its ablation variants.
"""
from atcon_tf.atcon_model import ATCONModel, SCHEDULES
from atcon_tf.model_import import TargetLayerError, find_target_layer, load_classifier
from atcon_tf.tapped_model import TappedModel

__version__ = "0.1.0"
