"""One way to turn "a model" into a classifier plus the contract recorded with it.

Every tool (trainer, evaluator, export, pictures) accepts a Keras model, an `ATCONModel`, a `.keras`/`.h5`
file or a trainer's run folder, and goes through `load_model`, so an `ATCONModel` is unwrapped the same way
everywhere and its `ServingContract` (preprocessing, Grad-CAM layer, loss settings, class names) is never
dropped on the way.
"""

from __future__ import annotations

import collections
import json
import os

import keras

from atcon_tf import atcon_model  # noqa: F401 - registers ATCONModel, so its .keras files deserialise
from atcon_tf import contract as contract_lib
from atcon_tf import model_import

LoadedModel = collections.namedtuple("LoadedModel", ["classifier", "contract", "path"])

RUN_CONFIG_FILE = "config.json"  # written by trainers.finetune into its run folder


def resolve_model_path(path) -> str:
  """A `.keras`/`.h5` file, or a run folder holding `best.keras` (or exactly one `.keras`)."""
  path = os.fspath(path)
  if os.path.isdir(path):
    best = os.path.join(path, "best.keras")
    if os.path.isfile(best):
      return best
    candidates = sorted(f for f in os.listdir(path) if f.endswith(".keras"))
    if len(candidates) == 1:
      return os.path.join(path, candidates[0])
    raise FileNotFoundError(
      f"Run folder {path!r} has no best.keras"
      + (
        f" and several .keras files ({', '.join(candidates)}): name one."
        if candidates
        else " and no other .keras file."
      )
    )
  if not os.path.exists(path):
    raise FileNotFoundError(f"No model file or run folder at {path!r}.")
  return path


def run_config(model_path: str) -> dict:
  """The trainer's config.json next to the model file, or one folder up (stage folders)."""
  folder = os.path.dirname(os.path.abspath(model_path))
  for candidate in (folder, os.path.dirname(folder)):
    path = os.path.join(candidate, RUN_CONFIG_FILE)
    if os.path.isfile(path):
      with open(path) as f:
        return json.load(f)
  return {}


def load_model(model_or_path) -> LoadedModel:
  """(classifier, contract, path) from a model, an ATCONModel, a model file or a run folder.

  An `ATCONModel` is unwrapped to its `.classifier`; its contract (preprocessing, Grad-CAM layer, loss
  settings, class names) comes with it. A model file without a recorded preprocessing takes the one of the
  trainer's config.json beside it, if any. The input size always comes from the classifier itself.
  """
  path = None
  model = model_or_path
  if not isinstance(model, keras.Model):
    path = os.path.abspath(resolve_model_path(model_or_path))
    model = model_import.load_classifier(path)
  recorded = getattr(model, "contract", None)
  classifier = getattr(model, "classifier", model) if recorded is not None else model
  contract = recorded if recorded is not None else contract_lib.ServingContract()
  if contract.preprocessing is None and path is not None:
    run = run_config(path)
    if run.get("preprocessing"):
      contract = contract.with_overrides(source=RUN_CONFIG_FILE, preprocessing=run["preprocessing"])
  shape = tuple(getattr(classifier, "input_shape", None) or ())
  if contract.image_size is None and len(shape) == 4 and None not in shape[1:3]:
    contract = contract.with_overrides(image_size=(int(shape[1]), int(shape[2])))  # a plain model: read it
  return LoadedModel(classifier, contract, path)
