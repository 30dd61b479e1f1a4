"""A classifier whose Grad-CAM layer and logits are read in one forward pass."""

import contextlib

from atcon_tf import heads
from atcon_tf import layer_patching
from atcon_tf import model_import
from atcon_tf.maps.guided_relu import guided_relus


class TappedModel:
  """Wraps a Keras classifier (not a copy: weights are shared) for attention maps.

  - `features_and_logits(x, tape)`: activations A of the target layer and logits z,
    with A watched by `tape` so `tape.gradient(z, A)` works even with a frozen backbone.
  - `logits(x, guided=..., training=...)`: logits, optionally through guided ReLUs.
  Maps are computed in inference mode (BatchNorm uses moving statistics, as the
  authors do for the ATCON loss; gamma/beta still receive gradients).
  """

  def __init__(self, model, target_layer=None, multi_label=None):
    self.model = model_import.load_classifier(model)
    self.target_layer_path = target_layer or model_import.find_target_layer(self.model)
    self.target_layer = model_import.get_layer_by_path(self.model, self.target_layer_path)
    self._logit_patches, self.output_activation = model_import.output_activation_patches(self.model)
    # A final sigmoid says multi-label; the caller's word (e.g. a recorded contract) wins.
    self.multi_label = self.output_activation == "sigmoid" if multi_label is None else bool(multi_label)

  @contextlib.contextmanager
  def _tap(self, tape):
    layer = self.target_layer
    original_call = layer.call
    captured = []

    def call(*args, **kwargs):
      outputs = original_call(*args, **kwargs)
      if tape is not None:
        tape.watch(outputs)
      captured.append(outputs)
      return outputs

    with layer_patching.patched(layer, "call", call):
      yield captured

  def logits(self, x, guided=False, training=False):
    """Logits of `x` (the final softmax/sigmoid, if any, bypassed)."""
    with contextlib.ExitStack() as stack:
      stack.enter_context(layer_patching.patched_many(self._logit_patches))
      if guided:
        stack.enter_context(guided_relus(self.model))
      return self.model(x, training=training)

  def features_and_logits(self, x, tape=None):
    """Target-layer activations (B, h, w, k) and logits (B, classes), inference mode."""
    with self._tap(tape) as captured:
      logits = self.logits(x)
    if not captured:
      raise model_import.TargetLayerError(
        f"Target layer {self.target_layer_path!r} was not called in the forward pass."
      )
    return captured[-1], logits

  def probabilities(self, logits):
    """Softmax, or per-class sigmoids for a multi-label head (`heads.probabilities`)."""
    return heads.probabilities(logits, self.multi_label)
