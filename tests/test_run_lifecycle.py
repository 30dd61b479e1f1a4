"""`trainers.finetune.run` around its stages: no workdir left by a failed start, a whole-run progress line."""

import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from atcon_tf.data.tfds_sources import DataUnavailableError  # noqa: E402
from trainers import config as config_lib  # noqa: E402
from trainers import finetune  # noqa: E402
from trainers import stages as stages_lib  # noqa: E402


def _svhn(tmp_path, workdir):
  empty = tmp_path / "no_data"
  empty.mkdir(exist_ok=True)
  return config_lib.preset(
    "smoke", dataset="svhn", data_dir=str(empty), workdir=str(workdir), evaluate=False, verbose=0
  )


def test_a_run_that_fails_before_its_first_stage_leaves_no_new_workdir(tmp_path):
  workdir = tmp_path / "run"
  with pytest.raises(DataUnavailableError):
    finetune.run(_svhn(tmp_path, workdir))
  assert not workdir.exists()


def test_a_workdir_that_existed_before_the_run_is_kept(tmp_path):
  workdir = tmp_path / "mine"
  workdir.mkdir()
  (workdir / "notes.txt").write_text("keep me")
  with pytest.raises(DataUnavailableError):
    finetune.run(_svhn(tmp_path, workdir))
  assert (workdir / "notes.txt").read_text() == "keep me"


def test_progress_line_estimates_from_the_finished_stages_only():
  stages = [
    stages_lib.Stage("supervised", "supervised", 2, 0.1, 10),
    stages_lib.Stage("atcon", "atcon", 3, 0.01, 20),
  ]
  assert (
    finetune._progress_line(1, stages, 75.4, []) == "[run] stage 2 of 2 (atcon) starting; 1 min 15 s elapsed"
  )
  line = finetune._progress_line(1, stages, 192, [(20.0, 20)])  # 1 s/step, 60 steps left
  assert line.startswith(
    "[run] stage 2 of 2 (atcon) starting; 3 min 12 s elapsed, about 1 min 0 s of training left"
  )
  assert "estimate" in line and "60 steps" in line
  assert finetune._duration(7300) == "2 h 1 min"


def test_two_stage_smoke_run_prints_the_progress_line(tmp_path, capsys):
  cfg = config_lib.preset(
    "smoke",
    workdir=str(tmp_path / "run"),
    data_dir=str(tmp_path / "data"),
    evaluate=False,
    viz_every=0,
    verbose=0,
  )
  assert cfg.schedule == "two_stage"
  finetune.run(cfg)
  out = capsys.readouterr().out
  lines = [line for line in out.splitlines() if line.startswith("[run] ")]
  assert len(lines) == 1, out
  assert re.fullmatch(
    r"\[run\] stage 2 of 2 \(atcon\) starting; \d+ (min \d+ )?s elapsed, about \d+ (min \d+ )?s of training "
    r"left \(estimate: \d+ steps at the [0-9.e-]+ s/step measured so far\)",
    lines[0],
  ), lines[0]
  # The stage line comes before the atcon stage's own header.
  assert out.index("[run] stage 2 of 2") < out.index("[atcon] schedule=atcon")
