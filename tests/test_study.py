"""bench/study.py: the smoke study writes its JSON / Markdown / PNG outputs and a rerun trains nothing;
the seed-level statistics (interval, t-test, MDD, pooled McNemar) on hand-computed cases."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import study_report  # noqa: E402


def _run(out, data_dir):
  cmd = [sys.executable, os.path.join(ROOT, "bench", "study.py"), "--config=smoke", f"--out={out}"]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.run(
    cmd + [f"--data_dir={data_dir}"], capture_output=True, text=True, env=env, timeout=600
  )
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return proc.stdout


@pytest.mark.slow
def test_smoke_study_outputs_and_resume(tmp_path):
  out, data_dir = tmp_path / "study", tmp_path / "tfds"
  first = _run(out, data_dir)
  assert "[4/4]" in first and first.count("done in") == 4, first
  cells = sorted((out / "cells").rglob("*.json"))
  assert len(cells) == 4  # house_numbers x N=2 x simclr x seed 0 x {baseline, 3 arms}
  baseline = json.loads((out / "cells/house_numbers/simclr/N2/seed0/baseline.json").read_text())
  assert len(baseline["pred"]) == 40 and len(baseline["deletion"]) == 8 and 0 <= baseline["accuracy"] <= 1
  arm = json.loads((out / "cells/house_numbers/simclr/N2/seed0/atcon_labeled.json").read_text())
  assert arm["hyper"]["w"] == 8.0 and arm["hyper"]["steps"] in (1, 2)
  control = json.loads((out / "cells/house_numbers/simclr/N2/seed0/more_supervised.json").read_text())
  combining = json.loads((out / "cells/house_numbers/simclr/N2/seed0/combining_pool.json").read_text())
  assert control["hyper"]["w"] is None and control["hyper"]["lr"] == combining["hyper"]["lr"]
  summary = json.loads((out / "study.json").read_text())
  arms = {(r["backbone"], r["arm"]) for r in summary["rows"]}
  names = (
    "baseline",
    "atcon_labeled",
    "combining_pool",
    "more_supervised",
    "combining_pool vs more_supervised",
  )
  assert arms == {("simclr", a) for a in names}
  assert set(summary["sweeps"]) == {"house_numbers/simclr"} and "house_numbers" in summary["probes"]
  md = (out / "study.md").read_text()
  assert "ΔF1 [90% CI]" in md and "| 2 | simclr | combining_pool | 1 |" in md and "sweep" in md
  for png in (out / "study.png", out / "maps/house_numbers_simclr_N2.png"):
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert not list((out / "weights").iterdir())  # baseline weights are dropped once their arms are done

  mtimes = {p: p.stat().st_mtime_ns for p in cells}
  second = _run(out, data_dir)
  assert "done in" not in second and second.count("reused") == 4, second
  assert {p: p.stat().st_mtime_ns for p in cells} == mtimes


def test_over_seeds_interval_t_test_and_mdd():
  s = study_report.over_seeds([0.01, 0.03, 0.02, 0.04, 0.00])
  sd = float(np.std([0.01, 0.03, 0.02, 0.04, 0.00], ddof=1))  # 0.0158
  assert s["mean"] == pytest.approx(0.02) and s["sd"] == pytest.approx(sd)
  half = 2.131847 * sd / math.sqrt(5)  # t_0.95 with 4 degrees of freedom
  assert (s["lower"], s["upper"]) == pytest.approx((0.02 - half, 0.02 + half), rel=1e-5)
  assert s["mdd"] == pytest.approx((1.959964 + 0.841621) * sd / math.sqrt(5), rel=1e-6)
  assert s["p"] == pytest.approx(0.0474, abs=2e-4)  # t = 2.828, 4 df, two-sided
  assert study_report.over_seeds([0.5])["lower"] is None


def test_pooled_mcnemar_counts_discordant_images_of_all_seeds():
  comps = [{"discordant": [0, 4]}, {"discordant": [0, 4]}]  # 8 images only the arm gets right
  assert study_report.pooled_mcnemar(comps) == pytest.approx(2 / 2**8)
  assert study_report.pooled_mcnemar([{"discordant": [3, 3]}]) == 1.0
  assert study_report.pooled_mcnemar([{"discordant": [0, 0]}]) == 1.0


def test_per_seed_comparison_is_arm_minus_baseline():
  y = np.array([0, 1, 2, 0, 1, 2])
  base = {
    "pred": "000000",
    "macro_f1": 0.2,
    "accuracy": 2 / 6,
    "deletion": [0.5, 0.5],
    "consistency": [0.1, 0.1],
  }
  arm = {
    "pred": "012012",
    "macro_f1": 1.0,
    "accuracy": 1.0,
    "deletion": [0.3, 0.3],
    "consistency": [0.3, 0.3],
  }
  c = study_report.per_seed(base, arm, y, 3, resamples=200, seed=0)
  assert c["d_f1"] == pytest.approx(0.8) and c["discordant"] == [0, 4]
  assert c["p_mcnemar"] == pytest.approx(2 / 16) and c["d_deletion"] == pytest.approx(-0.2)
  assert c["d_consistency"] == pytest.approx(0.2) and c["p_deletion"] == pytest.approx(0.5)
