"""Results as JSON files: NumPy numbers and arrays written as plain JSON values, folders created."""

import json
import os


def _plain(value):
  import numpy as np

  if isinstance(value, np.integer):
    return int(value)
  if isinstance(value, np.floating):
    return float(value)
  if isinstance(value, np.ndarray):
    return value.tolist()
  return str(value)


def write_json(path, value) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    json.dump(value, f, indent=2, default=_plain)
  return path
