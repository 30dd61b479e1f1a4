"""What a trained model needs to be served right, recorded with the model itself.

A classifier's weights are not enough to serve it: the export must apply the same preprocessing, explain the
same Grad-CAM layer and report consistency with the same loss settings the model was trained with. The trainer
records these on the `ATCONModel` it saves (`ATCONModel.contract`), so they travel inside the `.keras` file;
`serving.export` reads them back, and writes them into the export's info file and metadata for clients.
Plain Python (no TensorFlow) so that clients can read a contract cheaply.
"""

from __future__ import annotations

import dataclasses
import logging

from atcon_tf import choices

log = logging.getLogger(__name__)


class ContractError(ValueError):
  """A model lacks something serving needs, and nothing said what it is."""


@dataclasses.dataclass(frozen=True)
class ServingContract:
  """Everything an export needs besides the weights. `None` means "not recorded"."""

  preprocessing: str | None = None
  image_size: tuple | None = None  # (height, width) of the model input
  target_layer: str | None = None  # Grad-CAM layer path, `outer/inner` for nested models
  logits_layer: str | None = None  # the layer whose output is the logits, when the user named one
  class_names: tuple | None = None
  multi_label: bool = False
  attention: str = choices.DEFAULT_ATTENTION
  similarity: str = choices.DEFAULT_SIMILARITY
  mask_intensity: float = choices.MASK_INTENSITY

  def __post_init__(self):
    if self.preprocessing is not None:
      choices.check("preprocessing", self.preprocessing, choices.PREPROCESSING)
    choices.check("attention variant", self.attention, choices.ATTENTIONS)
    choices.check("similarity", self.similarity, choices.SIMILARITIES)
    if self.image_size is not None:
      object.__setattr__(self, "image_size", tuple(int(s) for s in self.image_size))
    if self.class_names is not None:
      object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
    object.__setattr__(self, "mask_intensity", float(self.mask_intensity))
    object.__setattr__(self, "multi_label", bool(self.multi_label))

  def to_json(self) -> dict:
    data = dataclasses.asdict(self)
    for key in ("image_size", "class_names"):
      if data[key] is not None:
        data[key] = list(data[key])
    return data

  @classmethod
  def from_json(cls, data: dict | None) -> "ServingContract":
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in (data or {}).items() if k in known})

  def with_overrides(self, source: str = "flag", **overrides) -> "ServingContract":
    """A copy with the given (non-None) fields replaced; each change of a recorded value is logged."""
    changes = {k: v for k, v in overrides.items() if v is not None}
    for key, value in changes.items():
      recorded = getattr(self, key)
      if recorded is not None and recorded != value:
        log.warning("%s %s=%r overrides the model's recorded %s=%r.", source, key, value, key, recorded)
    return dataclasses.replace(self, **changes)

  def require_preprocessing(self, what: str = "this model") -> str:
    if self.preprocessing is None:
      raise ContractError(
        f"{what} records no preprocessing, and serving it with a guessed one gives wrong predictions. Pass "
        f"the one it was trained with: --preprocessing=NAME (one of {list(choices.PREPROCESSING)}), or "
        "contract=ServingContract(preprocessing=...) in Python. Models saved by trainers.finetune record it."
      )
    return self.preprocessing

  def consistency_settings(self) -> dict:
    """Keyword arguments of `atcon_tf.losses.ConsistencyConfig`."""
    return {"attention": self.attention, "similarity": self.similarity, "mask_intensity": self.mask_intensity}
