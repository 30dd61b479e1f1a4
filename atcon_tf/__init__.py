"""ATCON attention-consistency training for TensorFlow / Keras 3.

Main entry points:
- `ATCONModel`: wrap a Keras classifier and `fit` it with the consistency loss.
- `TappedModel` + `atcon_tf.maps`: differentiable Grad-CAM, guided backprop, IG, SmoothGrad, `explain`.
- `atcon_tf.losses.consistency_loss`: the ATCON loss and its ablation variants.
- `load_model`: any model, model file or run folder -> classifier + its `ServingContract`.

Names are imported on first use (PEP 562), so `import atcon_tf.metrics` or a command's `--help` does not
load TensorFlow.
"""

import importlib

__version__ = "0.2.0"

_EXPORTS = {
  "ATCONModel": "atcon_tf.atcon_model",
  "SCHEDULES": "atcon_tf.atcon_model",
  "TappedModel": "atcon_tf.tapped_model",
  "TargetLayerError": "atcon_tf.model_import",
  "find_target_layer": "atcon_tf.model_import",
  "load_classifier": "atcon_tf.model_import",
  "LogitsError": "atcon_tf.output_activation",
  "load_model": "atcon_tf.loading",
  "ServingContract": "atcon_tf.contract",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
  if name in _EXPORTS:
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
  raise AttributeError(f"module 'atcon_tf' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + __all__)
