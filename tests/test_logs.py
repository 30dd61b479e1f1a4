"""Quiet command lines: TensorFlow's start-up noise filtered (`atcon_tf.quiet`), one clear message when
data is missing, and no workdir left behind by a run that could not start."""

import os
import subprocess
import sys

import pytest

from atcon_tf import quiet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOISE = (
  "I0000 00:00:1796040143.768296   10019 port.cc:153] oneDNN custom operations are on. You may see ...\n"
  "I0000 00:00:1796040143.772301   10019 cudart_stub.cc:31] Could not find cuda drivers on your machine.\n"
  "W0000 00:00:1796040143.772301   10019 some_file.cc:12] a warning\n"
)
ERROR = "E0000 00:00:1796040169.572652   10409 cuda_platform.cc:52] failed call to cuInit: ... (303)\n"
BANNER = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"


def _env(**overrides):
  env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLED_DEVICE_TYPES")}
  env["PYTHONPATH"] = ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")
  env.update(overrides)
  return env


def test_filter_drops_the_lines_below_the_level_and_keeps_the_rest():
  text = BANNER + NOISE + ERROR + "Traceback (most recent call last):\n  a Python line\n"
  kept = quiet.filter_startup_lines(text, 2)
  assert kept == ERROR + "Traceback (most recent call last):\n  a Python line\n"
  assert quiet.filter_startup_lines(text, 1).count("\n") == kept.count("\n") + 1  # the warning stays
  assert quiet.filter_startup_lines(text, 0) == text  # TF_CPP_MIN_LOG_LEVEL=0: everything


def test_tfds_info_and_warnings_are_dropped_and_its_errors_kept(monkeypatch):
  import logging

  monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
  from absl import logging as absl_logging

  absl_logger = absl_logging.get_absl_logger()
  monkeypatch.setattr(absl_logger, "filters", list(absl_logger.filters))  # restored after the test
  quiet.quiet_tfds_logs()
  quiet.quiet_tfds_logs()  # once only
  assert sum(isinstance(f, quiet._TfdsBelowError) for f in absl_logger.filters) == 1

  def record(level, path):
    return logging.LogRecord("absl", level, path, 1, "message", None, None)

  tfds_file = os.path.join("site-packages", "tensorflow_datasets", "core", "reader.py")
  assert not absl_logger.filter(record(logging.INFO, tfds_file))
  assert not absl_logger.filter(record(logging.WARNING, tfds_file))
  assert absl_logger.filter(record(logging.ERROR, tfds_file))
  assert absl_logger.filter(record(logging.INFO, os.path.join("trainers", "finetune.py")))


def test_defaults_never_override_the_users_variables(monkeypatch):
  monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
  monkeypatch.setenv("TF_ENABLED_DEVICE_TYPES", "CPU,GPU")
  monkeypatch.setattr(quiet, "has_accelerator", lambda: False)
  onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
  quiet.tensorflow_logs()  # TensorFlow is imported already here: the environment only
  assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
  assert os.environ["TF_ENABLED_DEVICE_TYPES"] == "CPU,GPU"
  monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
  monkeypatch.delenv("TF_ENABLED_DEVICE_TYPES")
  monkeypatch.setattr(quiet, "has_accelerator", lambda: True)
  quiet.tensorflow_logs()
  assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"
  assert "TF_ENABLED_DEVICE_TYPES" not in os.environ  # a machine with a GPU keeps every device (and error)
  assert os.environ.get("TF_ENABLE_ONEDNN_OPTS") == onednn  # it changes numerics: never touched


def _import_tensorflow(**env):
  code = (
    "from atcon_tf import quiet; quiet.tensorflow_logs(); "
    "import tensorflow as tf; print(float(tf.ones([2]).numpy().sum()))"
  )
  return subprocess.run(
    [sys.executable, "-c", code], env=_env(**env), capture_output=True, text=True, timeout=300, cwd=ROOT
  )


@pytest.mark.slow
def test_importing_tensorflow_prints_no_startup_noise():
  done = _import_tensorflow()
  assert done.returncode == 0, done.stderr
  assert done.stdout.strip() == "2.0"
  assert "absl::InitializeLog" not in done.stderr
  assert not [line for line in done.stderr.splitlines() if line[:1] in "IW" and "] " in line], done.stderr
  if not quiet.has_accelerator():  # the cuInit error is not there to report
    assert done.stderr == ""
  verbose = _import_tensorflow(TF_CPP_MIN_LOG_LEVEL="0")  # the user's level wins
  assert "absl::InitializeLog" in verbose.stderr


@pytest.mark.slow
def test_missing_tfds_data_gives_one_message_and_no_workdir(tmp_path):
  workdir = tmp_path / "run"
  (tmp_path / "data").mkdir()
  done = subprocess.run(
    [
      sys.executable,
      "-m",
      "trainers.finetune",
      "--dataset=svhn",
      "--evaluate=false",
      f"--data_dir={tmp_path / 'data'}",
      f"--workdir={workdir}",
    ],
    env=_env(),
    capture_output=True,
    text=True,
    timeout=300,
    cwd=ROOT,
  )
  assert done.returncode != 0
  assert not workdir.exists()
  assert "Variant folder" not in done.stderr and "Constructing tf.data.Dataset" not in done.stderr
  messages = [line for line in done.stderr.splitlines() if line[:1] not in "IWE" or "] " not in line]
  assert messages[0].startswith("ERROR: tfds dataset 'svhn_cropped' is not prepared"), done.stderr
  if not quiet.has_accelerator():
    assert done.stderr.startswith("ERROR: tfds dataset"), done.stderr
