"""TF Serving's folder layout: `BASE/VERSION/` SavedModels, published atomically, plus our info file."""

import json
import os
import re
import shutil
import tempfile

EXPORT_INFO_FILE = "atcon_serving.json"  # in VERSION/assets.extra/, next to TF Serving's warm-up file
# GetModelMetadata field under which the local server (serving.server) answers the info file's "contract".
CONTRACT_METADATA_FIELD = "atcon_contract"


def version_dirs(base_path):
  """{version: path} of the numeric sub-folders of `base_path` (TF Serving's layout)."""
  found = {}
  if not os.path.isdir(base_path):
    return found
  for entry in os.listdir(base_path):
    full = os.path.join(base_path, entry)
    if re.fullmatch(r"\d+", entry) and os.path.isdir(full):
      found[int(entry)] = full
  return found


def next_version(base_path):
  """1 + the largest existing version under `base_path` (1 if none)."""
  return max(version_dirs(base_path), default=0) + 1


def read_export_info(version_path):
  """The `assets.extra/atcon_serving.json` written by `export_model` (None if absent)."""
  path = os.path.join(version_path, "assets.extra", EXPORT_INFO_FILE)
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f)


def write_export_info(version_path, info):
  folder = os.path.join(version_path, "assets.extra")
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, EXPORT_INFO_FILE), "w") as f:
    json.dump(info, f, indent=2)


def check_version(base_path, version):
  """An explicit version number, refused if negative or already there."""
  version = int(version)
  if version < 0:
    raise ValueError(f"version must be >= 0, got {version}.")
  if os.path.exists(os.path.join(base_path, str(version))):
    raise FileExistsError(f"Version {version} already exists in {base_path!r}.")
  return version


def publish(base_path, write, info, version=None):
  """Writes a version with `write(staging_path)` in a hidden folder, then renames it into place.

  A model server polling `base_path` never sees a half-written version. Without an explicit `version`, the
  next free number is taken at rename time (another export may have taken one meanwhile).
  """
  os.makedirs(base_path, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".export-tmp-", dir=base_path)
  try:
    staged = os.path.join(tmp, "model")
    write(staged)
    while True:
      chosen = next_version(base_path) if version is None else version
      write_export_info(staged, dict(info, version=chosen))
      target = os.path.join(base_path, str(chosen))
      try:
        os.rename(staged, target)  # Atomic: a poller sees all of the version or none of it.
        return target
      except OSError:
        if version is not None or not os.path.exists(target):
          raise
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
