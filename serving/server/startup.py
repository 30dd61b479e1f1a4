"""Start-up checks of the local server: a misconfiguration is one clear line and a non-zero exit.

Without them a missing or empty base path, or a version folder given as base path, started a server that
logged "No versions of model X found" every second forever, and a port in use ended in a traceback.
"""

import os

from serving import export as export_lib


class StartupError(Exception):
  """A configuration the server cannot work with; its message is the one line to print."""


def check_base_path(name, base_path):
  """The base path of `name` holds at least one version folder with a SavedModel, else StartupError."""
  if not os.path.exists(base_path):
    raise StartupError(
      f"model {name}: base path {base_path} does not exist (pass EXPORT_DIR/NAME, the folder that holds "
      "the numbered version folders)."
    )
  if not os.path.isdir(base_path):
    raise StartupError(f"model {name}: base path {base_path} is a file, not a folder of version folders.")
  if os.path.isfile(os.path.join(base_path, "saved_model.pb")):
    parent = os.path.dirname(os.path.abspath(base_path).rstrip(os.sep))
    raise StartupError(
      f"model {name}: {base_path} is a version folder (it holds saved_model.pb); pass its parent "
      f"{parent} as the base path."
    )
  versions = [
    v
    for v, path in export_lib.version_dirs(base_path).items()
    if os.path.isfile(os.path.join(path, "saved_model.pb"))
  ]
  if not versions:
    raise StartupError(
      f"model {name}: no versions under {base_path} (expected numbered folders such as "
      f"{os.path.join(base_path, '1', 'saved_model.pb')}; export one with python -m serving.export)."
    )


def check_server_config(server_config):
  """Every model of a ModelServerConfig has a usable base path (see `check_base_path`)."""
  configs = list(server_config.model_config_list.config)
  if not configs:
    raise StartupError("the model config lists no models.")
  for config in configs:
    check_base_path(config.name, config.base_path)


def bind_error(address, what, error=None):
  reason = f" ({error})" if error else ""
  return StartupError(
    f"cannot listen on {address} for {what}: the port is in use or not allowed{reason}; pick another port."
  )
