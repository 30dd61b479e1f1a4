"""Quiet TensorFlow start-up logs for the command lines: `tensorflow_logs()`, before TensorFlow is imported.

Measured with TF 2.21 on a CPU machine without an NVIDIA driver, `import tensorflow` plus one op prints 9
stderr lines; `TF_CPP_MIN_LOG_LEVEL=2` alone leaves 7 of them (only the cpu_feature_guard notice goes):
- `WARNING: All log messages before absl::InitializeLog() is called are written to STDERR`, then
  `port.cc ... oneDNN custom operations are on` and `cudart_stub.cc ... Could not find cuda drivers` (twice
  each, one set per TensorFlow shared library): absl prints what is logged before it is initialised whatever
  the log level, and no environment variable changes that. So the first `import tensorflow` runs with stderr
  (file descriptor 2) captured; then the lines below the requested `TF_CPP_MIN_LOG_LEVEL` severity (and
  absl's banner) are dropped and everything else is written to stderr, in order.
- `cuda_platform.cc ... failed call to cuInit: ... UNKNOWN ERROR (303)`: an ERROR line, logged when the GPU
  device factory probes CUDA. `CUDA_VISIBLE_DEVICES=""` (or -1) does not remove it (cuInit is still called);
  `TF_ENABLED_DEVICE_TYPES=CPU` does (the GPU factory is not registered). It is set only on a machine with
  no accelerator device file at all (no NVIDIA driver, WSL GPU, ROCm or TPU device), so GPU machines keep
  every error.
`TF_ENABLE_ONEDNN_OPTS` is never touched (it changes numerics), nor is any variable the user set:
`TF_CPP_MIN_LOG_LEVEL=0` shows every line, `TF_ENABLED_DEVICE_TYPES=...` keeps the user's device list.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.abc
import importlib.util
import logging
import os
import re
import sys
import tempfile

DEFAULT_LOG_LEVEL = "2"  # TensorFlow's C++ INFO and WARNING hidden, ERROR shown.
# Device files of the accelerators TensorFlow can use: NVIDIA driver, WSL GPU, ROCm, TPU.
ACCELERATOR_FILES = (
  "/proc/driver/nvidia/version",
  "/dev/nvidia*",
  "/dev/dxg",
  "/dev/kfd",
  "/dev/accel*",
  "/dev/vfio/[0-9]*",
)
_ABSL_BANNER = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_LOG_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^ \]]+:\d+\] ")
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}


def has_accelerator() -> bool:
  """True unless this is Linux and no accelerator device file exists (elsewhere: assume one may)."""
  if not sys.platform.startswith("linux"):
    return True
  return any(glob.glob(pattern) for pattern in ACCELERATOR_FILES)


def tensorflow_logs():
  """Sets quiet defaults for TensorFlow's logs; the next first `import tensorflow` filters its start-up lines.

  Call at the top of a command's `__main__`, before anything imports TensorFlow (if it is imported already,
  only the environment defaults are set, and they no longer matter).
  """
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", DEFAULT_LOG_LEVEL)
  quiet_tfds_logs()
  if not has_accelerator():
    os.environ.setdefault("TF_ENABLED_DEVICE_TYPES", "CPU")
  if "tensorflow" not in sys.modules and not any(isinstance(f, _FilteredImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _FilteredImport())


class _TfdsBelowError(logging.Filter):
  """Drops tensorflow_datasets' own INFO / WARNING records (which files it reads, "Using custom data
  configuration ..."): nine lines per run that say nothing to a user. Errors pass."""

  def filter(self, record):
    return record.levelno >= logging.ERROR or f"{os.sep}tensorflow_datasets{os.sep}" not in record.pathname


def quiet_tfds_logs():
  """Installs `_TfdsBelowError` on absl's Python logger (tfds logs through it), unless every line was asked
  for (`TF_CPP_MIN_LOG_LEVEL=0`)."""
  from absl import logging as absl_logging  # first: it makes the "absl" logger an ABSLLogger

  logger = absl_logging.get_absl_logger()
  if min_log_level() > 0 and not any(isinstance(f, _TfdsBelowError) for f in logger.filters):
    logger.addFilter(_TfdsBelowError())


def min_log_level() -> int:
  try:
    return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
  except ValueError:
    return 0


def filter_startup_lines(text: str, level: int) -> str:
  """`text` without the glog-style lines of severity below `level` (TF_CPP_MIN_LOG_LEVEL) and absl's banner.

  Any other line (errors, Python warnings, tracebacks) is kept.
  """
  if level <= 0:
    return text
  kept = []
  for line in text.splitlines(keepends=True):
    if line.rstrip("\r\n") == _ABSL_BANNER:
      continue
    match = _LOG_LINE.match(line)
    if match and _SEVERITY[match.group(1)] < level:
      continue
    kept.append(line)
  return "".join(kept)


@contextlib.contextmanager
def filtered_stderr(level: int):
  """Captures file descriptor 2 (C++ and Python writes); writes back what `filter_startup_lines` keeps."""
  _flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      yield
    finally:
      _flush()
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      kept = filter_startup_lines(captured.read().decode("utf-8", "replace"), level)
      if kept:
        os.write(2, kept.encode("utf-8"))


def _flush():
  if sys.stderr is not None:
    sys.stderr.flush()


class _FilteredImport(importlib.abc.MetaPathFinder):
  """Finds `tensorflow` once (then leaves `sys.meta_path`) and runs its loading inside `filtered_stderr`."""

  def find_spec(self, name, path=None, target=None):
    if name != "tensorflow":
      return None
    sys.meta_path.remove(self)
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
      return spec
    spec.loader = _FilteredLoader(spec.loader)
    return spec


class _FilteredLoader(importlib.abc.Loader):
  def __init__(self, loader):
    self._loader = loader

  def __getattr__(self, name):
    return getattr(self._loader, name)

  def create_module(self, spec):
    return self._loader.create_module(spec)

  def exec_module(self, module):
    try:
      with filtered_stderr(min_log_level()):
        self._loader.exec_module(module)
    finally:  # The module keeps its own loader.
      module.__loader__ = self._loader
      if module.__spec__ is not None:
        module.__spec__.loader = self._loader
