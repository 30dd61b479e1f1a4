"""trainers.finetune / trainers.evaluate on the tiny `smoke` preset: every schedule, resume after an interrupted
fit, the CLIs end to end (JSON, PNG, TensorBoard summaries), export hook, flags and presets."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from atcon_tf import backbones, visualize
from tests.callbacks import EpochRecorder, Interrupt
from tests.conftest import read_history, smoke_config
from trainers import config as config_lib
from trainers import data as data_lib
from trainers import finetune, models, stages

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(
  os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")
)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """One tfds data_dir for the whole module: the smoke house_numbers scenes are generated once."""
  return str(tmp_path_factory.mktemp("tfds"))


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["alternating", "combining"])  # supervised: the resume test
def test_schedule_trains_a_few_steps(tmp_path, data_dir, schedule):
  metrics = finetune.run(smoke_config(tmp_path, data_dir, schedule=schedule))
  workdir = tmp_path / "run"
  assert metrics["stages"][0]["schedule"] == schedule and metrics["stages"][0]["epochs"] == 2
  rows = read_history(workdir / "history.csv")
  assert [int(r["epoch"]) for r in rows] == [0, 1]
  assert all(np.isfinite(float(r["val_supervised_loss"])) for r in rows)
  if schedule == "combining":
    assert float(rows[-1]["consistency_loss"]) != 0.0  # both losses in every step
  model = keras.saving.load_model(workdir / "best.keras", compile=False)
  assert model.schedule == schedule and model.classifier.output_shape == (None, 10)
  assert not (workdir / "backup").exists()  # BackupAndRestore cleans up after a finished fit
  with open(workdir / "metrics.json") as f:
    assert json.load(f)["split_sizes"]["labeled"] == 20


@pytest.mark.slow
def test_atcon_schedule_fine_tunes_an_imported_model(tmp_path, data_dir):
  path = str(tmp_path / "imported.keras")
  backbones.small_resnet(16, 10, width=4, blocks=(1, 1), seed=3).save(path)
  metrics = finetune.run(
    smoke_config(
      tmp_path,
      data_dir,
      schedule="atcon",
      model=path,
      unlabeled="labeled",
      evaluate=True,
      preprocessing="imagenet_torch",
    )
  )
  assert metrics["split_sizes"]["unlabeled_mode"] == "labeled" and metrics["split_sizes"]["unlabeled"] == 20
  evaluation = metrics["evaluation"]
  assert list(evaluation["models"]) == ["before (imported)", "atcon"]
  assert "consistency" in evaluation["comparison"]["metrics"]
  imported = keras.saving.load_model(path, compile=False)
  tuned = keras.saving.load_model(tmp_path / "run" / "best.keras", compile=False).classifier
  assert not np.allclose(
    imported.get_layer("logits").kernel.numpy(), tuned.get_layer("logits").kernel.numpy()
  )


@pytest.mark.slow
def test_multi_label_voc_through_mock_data_two_stage_with_evaluation(tmp_path):
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=24):
    metrics = finetune.run(
      config_lib.preset(
        "smoke",
        dataset="voc2007",
        labels_per_class=0,
        unlabeled="labeled",
        val_size=8,
        test_size=8,
        epochs=1,
        workdir=str(tmp_path / "run"),
        evaluate=True,
        viz_every=0,
        verbose=0,
      )
    )
  sizes = metrics["split_sizes"]
  assert sizes["validation_source"] == "carved from the training split" and sizes["validation"] == 8
  assert sizes["labeled"] + sizes["validation_carved_from_train"] == sizes["train_split"]
  model = metrics["evaluation"]["models"]["atcon (stage 2)"]["metrics"]
  assert {"top1_in_labels", "macro_f1", "wsd_iou", "pointing_game", "consistency"} <= set(model)
  assert metrics["preprocessing"] == "imagenet_torch" and metrics["config"]["augment"] == "auto"
  with open(tmp_path / "run" / "config.json") as f:
    assert json.load(f)["augment"] == "voc"


@pytest.mark.slow
def test_interrupted_fit_resumes_and_finishes_with_the_same_epoch_count(tmp_path, data_dir):
  cfg = smoke_config(tmp_path, data_dir, schedule="supervised", epochs=3, steps_per_epoch=2)
  workdir = tmp_path / "run"
  with pytest.raises(KeyboardInterrupt):
    finetune.run(cfg, extra_callbacks=[Interrupt(after=3)])  # in the second epoch
  assert (workdir / "backup" / "training_metadata.json").exists()
  with open(workdir / "backup" / "training_metadata.json") as f:
    assert json.load(f)["epoch"] == 1
  assert not (workdir / stages.STAGE_DONE_FILE).exists()

  recorder = EpochRecorder()
  metrics = finetune.run(cfg, extra_callbacks=[recorder])
  assert recorder.epochs == [1, 2]  # continued where the backup left off
  assert [int(r["epoch"]) for r in read_history(workdir / "history.csv")] == [0, 1, 2]
  assert metrics["stages"][0]["epochs"] == 3
  assert not (workdir / "backup").exists()
  model = keras.saving.load_model(workdir / "best.keras", compile=False)
  assert model.classifier.output_shape == (None, 10)

  again = EpochRecorder()  # a finished stage is not trained again
  finetune.run(cfg, extra_callbacks=[again])
  assert again.epochs == []


def _run_cli(args, timeout=300):
  result = subprocess.run(
    [sys.executable, "-m"] + args, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout
  )
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return result.stdout


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, data_dir):
  """`python -m trainers.finetune --config=smoke` (two_stage), once for the CLI tests."""
  workdir = str(tmp_path_factory.mktemp("cli") / "run")
  stdout = _run_cli(
    ["trainers.finetune", "--config=smoke", f"--workdir={workdir}", f"--data_dir={data_dir}", "--verbose=2"]
  )
  return workdir, stdout


@pytest.mark.slow
def test_finetune_cli_end_to_end(cli_run):
  workdir, stdout = cli_run
  for text in (
    "[supervised]",
    "[atcon]",
    "| accuracy",
    "| macro-F1",
    "WSD IoU",
    "pointing game",
    "consistency",
    "p-value",
  ):
    assert text in stdout
  with open(os.path.join(workdir, "metrics.json")) as f:
    metrics = json.load(f)
  assert [s["stage"] for s in metrics["stages"]] == ["supervised", "atcon"]
  evaluation = metrics["evaluation"]
  assert list(evaluation["models"]) == ["supervised (stage 1)", "atcon (stage 2)"]
  for model in evaluation["models"].values():
    m = model["metrics"]
    assert 0.0 <= m["accuracy"]["lower"] <= m["accuracy"]["estimate"] <= m["accuracy"]["upper"] <= 1.0
    assert {"macro_f1", "wsd_iou", "pointing_game", "energy_pointing_game", "consistency"} <= set(m)
  assert 0.0 <= evaluation["comparison"]["metrics"]["macro_f1"]["p_value"] <= 1.0
  for path in (
    "best.keras",
    "config.json",
    "supervised/best.keras",
    "atcon/best.keras",
    "supervised/done.json",
    "eval_grid.png",
    "supervised/attention/epoch_001.png",
  ):
    assert os.path.isfile(os.path.join(workdir, path)), path
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["preprocessing"] == "imagenet_torch"


@pytest.mark.slow
def test_tensorboard_logs_hold_scalars_and_attention_images(cli_run):
  workdir, _ = cli_run
  summaries = visualize.read_summaries(os.path.join(workdir, "logs", "supervised"))
  tags = {(tag, plugin) for tag, _, plugin, _ in summaries}
  assert ("epoch_supervised_loss", "scalars") in tags
  assert ("attention/grid", "images") in tags and ("attention/gradcam", "images") in tags
  steps = sorted({step for tag, step, _, _ in summaries if tag == "attention/grid"})
  assert steps == [1, 2]  # one image summary per epoch
  png = next(v for tag, _, _, v in summaries if tag == "attention/mask")[0]
  assert png[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_evaluate_cli_writes_json_and_png(cli_run, tmp_path):
  workdir, _ = cli_run
  output = str(tmp_path / "eval.json")
  stdout = _run_cli(
    [
      "trainers.evaluate",
      f"--workdir={workdir}",
      f"--compare={os.path.join(workdir, 'supervised', 'best.keras')}",
      f"--output={output}",
      "--bootstrap=20",
      "--pvalue_resamples=20",
      "--num_grid_images=3",
    ]
  )
  assert "| macro-F1" in stdout and "p-value" in stdout
  with open(output) as f:
    results = json.load(f)
  assert set(results["models"]) == {"model", "compare"}
  assert results["num_images"] == 32 and results["preprocessing"] == "imagenet_torch"
  comparison = results["comparison"]["metrics"]
  assert {"accuracy", "macro_f1", "wsd_iou", "pointing_game", "consistency"} <= set(comparison)
  grid = Image.open(str(tmp_path / "eval_grid.png"))
  assert grid.format == "PNG" and grid.size[0] > grid.size[1] / 3


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(tmp_path, data_dir):
  stdout = _run_cli(
    [
      "trainers.finetune",
      "--config=smoke",
      "--strategy=mirrored",
      "--cpu_devices=2",
      "--schedule=alternating",
      "--evaluate=false",
      "--viz_every=0",
      f"--data_dir={data_dir}",
      f"--workdir={tmp_path / 'run'}",
      "--verbose=0",
    ]
  )
  assert "Done in" in stdout
  with open(tmp_path / "run" / "config.json") as f:
    assert json.load(f)["num_replicas"] == 2


def _free_ports(n):
  import socket

  sockets = [socket.socket() for _ in range(n)]
  for sock in sockets:
    sock.bind(("localhost", 0))
  ports = [sock.getsockname()[1] for sock in sockets]
  for sock in sockets:
    sock.close()
  return ports


@pytest.mark.slow
def test_multi_worker_strategy_with_two_local_workers(tmp_path, data_dir):
  workers = [f"localhost:{p}" for p in _free_ports(2)]
  procs = []
  for index in range(2):
    env = dict(
      ENV, TF_CONFIG=json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
    )
    procs.append(
      subprocess.Popen(
        [
          sys.executable,
          "-m",
          "trainers.finetune",
          "--config=smoke",
          "--strategy=multi_worker",
          "--schedule=combining",
          "--evaluate=false",
          "--viz_every=0",
          f"--data_dir={data_dir}",
          f"--workdir={tmp_path / 'run'}",
          "--verbose=0",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
      )
    )
  outputs = [p.communicate(timeout=300)[0] for p in procs]
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-3000:]
  with open(tmp_path / "run" / "config.json") as f:
    assert json.load(f)["num_replicas"] == 2
  assert (tmp_path / "run" / "best.keras").exists()  # the chief writes the run folder
  assert (tmp_path / "run" / "worker-1" / "best.keras").exists()  # the other worker a scratch copy


def test_flags_preset_and_explicit_overrides():
  from absl import flags

  fv = flags.FlagValues()
  config_lib.define_flags(fv)
  fv(["prog", "--config=smoke", "--epochs=5", "--schedule=combining", "--resnet_blocks=2,1"])
  cfg = config_lib.config_from_flags(fv)
  assert cfg.epochs == 5 and cfg.schedule == "combining"  # explicit flags win
  assert cfg.image_size == 16 and cfg.batch_size == 8  # the rest comes from the preset
  assert cfg.resnet_blocks == (2, 1) and cfg.house_numbers_sizes == (96, 16, 32)
  default = flags.FlagValues()
  config_lib.define_flags(default)
  default(["prog"])
  assert config_lib.config_from_flags(default) == config_lib.Config()
  with pytest.raises(flags.IllegalFlagValueError):  # enum choices come from atcon_tf.choices
    fv(["prog", "--attention=gb_masks"])


def test_imagenet_weights_unavailable_error_explains_what_to_do(monkeypatch):
  from keras.src.utils import file_utils

  def no_network(*args, **kwargs):
    raise Exception("URL fetch failure: Name or service not known")

  monkeypatch.setattr(file_utils, "get_file", no_network)
  cfg = config_lib.preset("smoke", backbone="mobilenet_v2", weights="imagenet", image_size=32)
  with pytest.raises(backbones.WeightsUnavailableError) as error:
    models.choose_model(cfg, 10)
  assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5" in str(error.value)
  assert "--weights=none" in str(error.value)
  choice = models.choose_model(cfg.replace(weights="none"), 10)
  assert choice.classifier.output_shape == (None, 10) and choice.preprocessing == "scale_-1_1"


def test_steps_per_epoch_follow_the_authors_rules(tmp_path, data_dir):
  cfg = smoke_config(tmp_path, data_dir, steps_per_epoch=0, atcon_steps_per_epoch=0, batch_size=4, alpha=2.0)
  data = data_lib.prepare_data(cfg, "imagenet_torch")
  s, u = data.sizes["labeled"], data.sizes["unlabeled"]
  assert (s, u) == (20, 76)
  two = stages.plan_stages(cfg, data)
  assert [(st.schedule, st.steps_per_epoch) for st in two] == [("supervised", 5), ("atcon", 19)]
  alternating = stages.plan_stages(cfg.replace(schedule="alternating"), data)
  assert alternating[0].steps_per_epoch == int(2.0 * 20 / 4 + 76 / 4)


if __name__ == "__main__":
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
