"""A classifier whose Grad-CAM layer and logits are read in one forward pass."""

import contextlib

from atcon_tf import heads
from atcon_tf import layer_patching
from atcon_tf import model_import
from atcon_tf import output_activation
from atcon_tf.maps import cam_shortcut
from atcon_tf.maps import guided


class TappedModel:
  """Wraps a Keras classifier (not a copy: weights are shared) for attention maps.

  - `features_and_logits(x, tape)`: activations A of the target layer and logits z,
    with A watched by `tape` so `tape.gradient(z, A)` works even with a frozen backbone.
  - `logits(x, guided=..., training=...)`: logits, optionally through guided activations.
  - `forward(x, training, patches)`: logits with extra layer patches applied (what the fused passes use).
  Logits: the final softmax/sigmoid/log-softmax, however written, is found on a probe batch and
  bypassed (`output_activation.detect`), or `logits_layer=` names the layer whose output is the logits.
  `guided_report` says which activations guided backprop changes and which it cannot.
  Maps are computed in inference mode (BatchNorm uses moving statistics, as the
  authors do for the ATCON loss; gamma/beta still receive gradients).
  """

  def __init__(self, model, target_layer=None, multi_label=None, logits_layer=None):
    self.model = model_import.load_classifier(model)
    if target_layer:
      self.target_layer = model_import.check_target_layer(self.model, target_layer)
      self.target_layer_path = target_layer
    else:
      self.target_layer_path = model_import.find_target_layer(self.model)
      self.target_layer = model_import.get_layer_by_path(self.model, self.target_layer_path)
    self.logits_layer_path = logits_layer
    if logits_layer:
      self.logits_layer = model_import.get_layer_by_path(self.model, logits_layer)
      source = output_activation.LogitsSource(where=f"output of layer {logits_layer!r}")
    else:
      self.logits_layer = None
      source = output_activation.detect(self.model)
    self.logits_source = source
    self.logit_patches = list(source.patches)
    self.output_activation = source.activation
    self.guided_patches, self.guided_report = guided.plan(
      self.model, exclude=[(layer, name) for layer, name, _ in self.logit_patches]
    )
    self.guided_report.warn_if_incomplete(self.model.name)
    # Grad-CAM needs no backward pass when the logits are Dense(GAP(target)) (`maps.cam_shortcut`).
    self.linear_head = cam_shortcut.linear_head(self)
    # A final sigmoid says multi-label; the caller's word (e.g. a recorded contract) wins.
    self.multi_label = self.output_activation == "sigmoid" if multi_label is None else bool(multi_label)

  @contextlib.contextmanager
  def _capture(self, layer, tape=None):
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

  def forward(self, x, training=False, patches=()):
    """Logits of `x` (at least float32) with `patches` (e.g. guided activations) on top of the logits bypass."""
    with contextlib.ExitStack() as stack:
      stack.enter_context(layer_patching.patched_many(list(patches)))
      stack.enter_context(layer_patching.patched_many(self.logit_patches))
      if self.logits_layer is None:
        logits = self.model(x, training=training)
      else:
        captured = stack.enter_context(self._capture(self.logits_layer))
        self.model(x, training=training)
        logits = captured[-1]
    # float32 under mixed precision: softmax, cross-entropy and the target's gradient need the range.
    return cam_shortcut.full_precision(logits)

  def logits(self, x, guided=False, training=False):
    """Logits of `x` (the final softmax/sigmoid, if any, bypassed)."""
    return self.forward(x, training, self.guided_patches if guided else ())

  def features_and_logits(self, x, tape=None):
    """Target-layer activations (B, h, w, k) and logits (B, classes), inference mode."""
    with self._capture(self.target_layer, tape) as captured:
      logits = self.logits(x)
    if not captured:
      raise model_import.TargetLayerError(
        f"Target layer {self.target_layer_path!r} was not called in the forward pass."
      )
    return captured[-1], logits

  def probabilities(self, logits):
    """Softmax, or per-class sigmoids for a multi-label head (`heads.probabilities`)."""
    return heads.probabilities(logits, self.multi_label)
