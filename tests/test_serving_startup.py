"""Misconfigured local servers stop at once with one clear line and a non-zero exit (not a server that
logs "No versions found" every second, nor a traceback).
"""

import os
import shutil
import subprocess
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from serving import config as config_lib  # noqa: E402
from serving.server import LocalServer  # noqa: E402
from serving.server import startup  # noqa: E402
from tests.conftest import REPO  # noqa: E402


def _message(base_path):
  with pytest.raises(startup.StartupError) as info:
    startup.check_base_path("m", str(base_path))
  return str(info.value)


def test_base_path_problems_are_named(serving_setup, tmp_path):
  version = serving_setup["path"]
  assert "does not exist" in _message(tmp_path / "missing")
  (tmp_path / "empty").mkdir()
  assert "no versions under" in _message(tmp_path / "empty")
  assert "1/saved_model.pb" in _message(tmp_path / "empty")
  (tmp_path / "unfinished" / "1").mkdir(parents=True)  # a version folder without its SavedModel
  assert "no versions under" in _message(tmp_path / "unfinished")
  message = _message(version)
  assert "is a version folder" in message and os.path.dirname(version) in message
  startup.check_base_path("tiny", os.path.dirname(version))  # the right folder passes


def test_a_port_in_use_is_one_clear_error(serving_setup):
  used = int(serving_setup["server"].target.rsplit(":", 1)[1])
  config = config_lib.models_config([("tiny", os.path.dirname(serving_setup["path"]))])
  with pytest.raises(startup.StartupError) as info:
    LocalServer(config, port=used)
  assert f"cannot listen on 127.0.0.1:{used} for gRPC" in str(info.value)


@pytest.mark.slow
def test_the_command_exits_non_zero_with_one_line(serving_setup, tmp_path):
  copy = tmp_path / "exports" / "tiny" / "1"
  shutil.copytree(serving_setup["path"], copy)
  result = subprocess.run(
    [sys.executable, "-m", "serving.server", f"--model_base_path={copy}", "--port=0"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert result.returncode == 1, result.stderr
  assert lines == [
    f"ERROR: model 1: {copy} is a version folder (it holds saved_model.pb); pass its parent "
    f"{copy.parent} as the base path."
  ], result.stderr
  assert "Serving" not in result.stdout


if __name__ == "__main__":
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
