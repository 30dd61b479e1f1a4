r"""Few-label study: does ATCON fine-tuning help a pretrained backbone when labels are few?

    python bench/study.py --out=/tmp/study                   # the full study (preset full)
    python bench/study.py --config=quick --out=/tmp/study_q  # <= 10 min on 2 CPU cores
    python bench/study.py --config=smoke --out=/tmp/study_s  # seconds: what tests/test_study.py runs

Grid: dataset x N (labels per class) x backbone (hed / simclr / scratch) x seed; per grid point a supervised
baseline (best validation-loss checkpoint) and each ATCON arm fine-tuned from it, all scored once on the same
fixed test subset. The ATCON stage's hyperparameters (lr, w, steps) are chosen per (dataset, backbone, arm) by
a sweep on the validation split at N = --sweep_labels with a seed outside the study's (`sweep/`). Statistics
are in `study_report`, training in `study_cells`, images in `study_data`, settings in `study_config`.

Resumable cell by cell: each (dataset, N, backbone, seed, arm) result is OUT/cells/.../<arm>.json and is
skipped on a rerun; the baseline's weights wait in OUT/weights/ until its arms are done (then deleted).
Outputs: OUT/study.json, OUT/study.md, OUT/study.png, OUT/maps/*.png (before/after maps, the first seed).
"""

from __future__ import annotations

import json
import os
import sys
import time

from atcon_tf import quiet

quiet.tensorflow_logs()
sys.path.insert(
  0, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)  # `bench` as a namespace package

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from bench import study_config  # noqa: E402
from trainers import config as config_lib  # noqa: E402

config_lib.define_flags(config_class=study_config.StudyConfig)
FLAGS = flags.FLAGS


def _json(path, value=None):
  if value is None:
    with open(path) as f:
      return json.load(f)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "w") as f:
    json.dump(value, f, indent=1)
  os.replace(path + ".tmp", path)
  return value


def _duration(s):
  s = int(round(s))
  return f"{s // 3600} h {s % 3600 // 60} min" if s >= 3600 else f"{s // 60} min {s % 60} s"


def pretrained(scfg, dataset, out):
  """backbone_weights.h5 of a SimCLR small_resnet for `dataset`, trained once (trainers.pretrain) and cached."""
  from trainers import pretrain

  workdir = os.path.join(out, "pretrain", dataset)
  cfg = pretrain.preset(
    "default",
    dataset=dataset,
    image_size=scfg.image_size,
    house_numbers_sizes=tuple(scfg.house_numbers_sizes),
    data_dir=scfg.data_dir or None,
    backbone="small_resnet",
    weights="none",
    resnet_width=scfg.resnet_width,
    resnet_blocks=tuple(scfg.resnet_blocks),
    epochs=1,
    steps_per_epoch=scfg.pretrain_steps,
    batch_size=scfg.pretrain_batch,
    unlabeled_limit=scfg.pretrain_images,
    probe_train_size=min(1000, scfg.candidates),
    probe_test_size=min(500, scfg.test_size),
    workdir=workdir,
    tensorboard=False,
    verbose=0,
  )
  if not os.path.isfile(os.path.join(workdir, pretrain.PROBE_FILE)):
    pretrain.run(cfg)
  return os.path.join(workdir, pretrain.BACKBONE_FILE)


def sweep(scfg, trainer, arrays, out):
  """The ATCON hyperparameters of each arm, chosen on validation at N = sweep_labels (cached in OUT/sweep)."""
  from bench import study_data

  path = os.path.join(out, "sweep", f"{arrays.name}_{trainer.backbone}.json")
  if os.path.isfile(path):
    return _json(path)
  t0 = time.time()
  labeled, pool = study_data.draw(arrays, scfg.sweep_labels, scfg.pool_size, scfg.sweep_seed)
  trainer.classifier.set_weights(trainer.initial_weights(scfg.sweep_seed))
  _, base = trainer.run(
    "baseline", labeled, pool, scfg.sweep_seed, trainer.lr, 8.0, scfg.steps, scfg.eval_every, True
  )
  trainer.classifier.set_weights(base)
  base_val = trainer.validate()
  grid, chosen = [], {}
  for arm in [a for a in scfg.names("arms") if a != "more_supervised"]:
    for factor in scfg.floats("sweep_lr_factors"):
      for w in scfg.floats("sweep_w"):
        trainer.classifier.set_weights(base)
        lr = trainer.lr * factor
        hist, _ = trainer.run(
          arm, labeled, pool, scfg.sweep_seed, lr, w, scfg.atcon_steps, scfg.atcon_eval_every
        )
        grid += [dict(h, arm=arm, lr=lr, w=w) for h in hist]
    rows = [g for g in grid if g["arm"] == arm]
    chosen[arm] = max(rows, key=lambda g: (g["val_macro_f1"], -g["val_loss"], -g["step"]))
    print(f"  sweep {arrays.name}/{trainer.backbone}/{arm}: chose {chosen[arm]}", flush=True)
  return _json(
    path, {"baseline_val": base_val, "grid": grid, "chosen": chosen, "seconds": round(time.time() - t0, 1)}
  )


class Progress:
  def __init__(self, total, start):
    self.total, self.start, self.done, self.trained, self.trained_s = total, start, 0, 0, 0.0

  def line(self, name, seconds, reused):
    self.done += 1
    if not reused:
      self.trained += 1
      self.trained_s += seconds
    left = self.total - self.done
    eta = _duration(self.trained_s / self.trained * left) if self.trained else "?"
    what = "reused" if reused else f"done in {seconds:.0f} s"
    elapsed = _duration(time.time() - self.start)
    print(f"[{self.done}/{self.total}] {name} {what}; elapsed {elapsed}, ETA {eta}", flush=True)


def cell_path(out, dataset, backbone, n, seed, arm):
  return os.path.join(out, "cells", dataset, backbone, f"N{n}", f"seed{seed}", f"{arm}.json")


def run_grid_point(scfg, trainer, arrays, out, n, seed, chosen, progress, eval_w):
  """The baseline and every arm of one (dataset, backbone, N, seed); finished cells are read back."""
  import numpy as np

  from bench import study_data

  ds, bb, arms = arrays.name, trainer.backbone, scfg.names("arms")
  labeled, pool = study_data.draw(arrays, n, scfg.pool_size, seed)
  weights_path = os.path.join(out, "weights", f"{ds}_{bb}_N{n}_seed{seed}.npz")
  maps_dir = os.path.join(out, "maps", "panels")
  grid_n = scfg.grid_images if seed == scfg.seeds[0] else 0
  evaluate = lambda w: trainer.evaluate(w, eval_w, scfg.faithfulness_images, scfg.faithfulness_steps, grid_n)  # noqa: E731
  results, base = {}, None
  for arm in ["baseline"] + arms:
    path = cell_path(out, ds, bb, n, seed, arm)
    name = f"{ds} N={n} {bb} seed={seed} {arm}"
    if os.path.isfile(path):
      results[arm] = _json(path)
      progress.line(name, 0, True)
      continue
    t0 = time.time()
    if arm == "baseline":
      trainer.classifier.set_weights(trainer.initial_weights(seed))
      hist, base = trainer.run(
        arm, labeled, pool, seed, trainer.lr, eval_w, scfg.steps, scfg.eval_every, True
      )
      np.savez(_mkdir(weights_path), *base)
      hyper = dict(lr=trainer.lr, steps=scfg.steps, selected_by="validation loss")
    else:
      if base is None and not os.path.isfile(weights_path):
        print(f"{name}: skipped, its baseline's weights are gone (delete the baseline cell to redo it)")
        progress.line(name, 0, True)
        continue
      if base is None:
        with np.load(weights_path) as z:
          base = [z[f"arr_{i}"] for i in range(len(z.files))]
      c = chosen["combining_pool" if arm == "more_supervised" else arm]
      trainer.classifier.set_weights(base)
      every = min(scfg.atcon_eval_every, c["step"])
      hist, final = trainer.run(arm, labeled, pool, seed, c["lr"], c["w"], c["step"], every)
      hyper = dict(
        lr=c["lr"], w=c["w"], steps=c["step"], alpha=scfg.alpha if arm == "combining_pool" else None
      )
      if arm == "more_supervised":  # combining_pool's lr and steps; no ATCON term, so no w
        hyper["w"] = None
    result, panels = evaluate(base if arm == "baseline" else final)
    if grid_n:
      np.savez(_mkdir(os.path.join(maps_dir, f"{ds}_{bb}_N{n}_{arm}.npz")), **panels)
    result.update(hyper=hyper, history=hist, labeled=int(len(labeled)), pool=int(len(pool)))
    result["seconds"] = round(time.time() - t0, 1)
    results[arm] = _json(path, result)
    progress.line(name, time.time() - t0, False)
  if all(os.path.isfile(cell_path(out, ds, bb, n, seed, a)) for a in arms) and os.path.isfile(weights_path):
    os.remove(weights_path)
  if grid_n:
    save_maps(scfg, arrays, out, bb, n, ["baseline"] + arms)


def _mkdir(path):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  return path


def save_maps(scfg, arrays, out, backbone, n, arms):
  """Before/after grid on the same test images: image, then Grad-CAM overlay and guided backprop per model."""
  import numpy as np

  from atcon_tf import visualize

  files = [os.path.join(out, "maps", "panels", f"{arrays.name}_{backbone}_N{n}_{a}.npz") for a in arms]
  if not all(os.path.isfile(f) for f in files):
    return
  panels = [dict(np.load(f)) for f in files]
  rows = []
  for i, image in enumerate(arrays.test_x[: scfg.grid_images]):
    row = [image]
    for p in panels:
      row += [visualize.overlay(image, p["gradcam"][i]), visualize.colorize(p["guided_backprop"][i], "gray")]
    rows.append(row)
  titles = ["image"] + [f"{a} {k}" for a in arms for k in ("Grad-CAM", "GB")]
  visualize.save_grid(
    os.path.join(out, "maps", f"{arrays.name}_{backbone}_N{n}.png"),
    rows,
    column_titles=titles,
    title=f"{arrays.name}, {backbone}, N={n}, seed {scfg.seeds[0]}: same test images before / after ATCON",
  )


def report(scfg, out, start):
  """study.json, study.md and study.png from every finished cell on disk."""
  from bench import study_data, study_report

  cells, ys, ncls = {}, {}, {}
  for dataset in scfg.names("datasets"):
    if not os.path.isdir(os.path.join(out, "cells", dataset)):
      continue  # nothing finished: no need to read (or generate) its images
    arrays = study_data.load(scfg, dataset, out)
    ys[dataset], ncls[dataset] = arrays.test_y, arrays.num_classes
    for bb in scfg.names("backbones"):
      for n in scfg.labels:
        for seed in scfg.seeds:
          for arm in ["baseline"] + scfg.names("arms"):
            path = cell_path(out, dataset, bb, n, seed, arm)
            if os.path.isfile(path):
              cells[(dataset, bb, n, seed, arm)] = _json(path)
  sweeps = {}
  for dataset in scfg.names("datasets"):
    for bb in scfg.names("backbones"):
      path = os.path.join(out, "sweep", f"{dataset}_{bb}.json")
      if os.path.isfile(path):
        sweeps[(dataset, bb)] = _json(path)
  rows = study_report.summarize(cells, ys, ncls, scfg)
  probes = {}
  for dataset in scfg.names("datasets"):
    path = os.path.join(out, "pretrain", dataset, "probe.json")
    if os.path.isfile(path):
      probes[dataset] = _json(path)
  text = study_report.markdown(rows, sweeps, scfg)
  if probes:
    text += "\n\n### Linear probes of the SimCLR backbones (trainers.pretrain)\n\n" + "\n".join(
      f"- {d}: {json.dumps(p.get('accuracy'))}" for d, p in probes.items()
    )
  seconds = sum(c.get("seconds", 0) for c in cells.values()) + sum(
    s.get("seconds", 0) for s in sweeps.values()
  )
  text += f"\n\nFinished cells: {len(cells)}; their training + scoring time {_duration(seconds)}.\n"
  with open(os.path.join(out, "study.md"), "w") as f:
    f.write(text)
  _json(
    os.path.join(out, "study.json"),
    {
      "settings": scfg.__dict__,
      "rows": rows,
      "sweeps": {f"{d}/{b}": s for (d, b), s in sweeps.items()},
      "probes": probes,
      "cells": len(cells),
      "seconds_this_run": round(time.time() - start, 1),
    },
  )
  if rows:
    study_report.plot(rows, os.path.join(out, "study.png"))
  return text


def run(scfg):
  """The whole study (resuming finished cells); returns the Markdown tables."""
  import keras

  from atcon_tf import choices
  from bench import study_cells, study_data

  out, start = scfg.out, time.time()
  os.makedirs(out, exist_ok=True)
  datasets, backbones, arms = scfg.names("datasets"), scfg.names("backbones"), scfg.names("arms")
  total = len(datasets) * len(backbones) * len(scfg.labels) * len(scfg.seeds) * (1 + len(arms))
  print(f"study: {total} cells -> {out} (preset {scfg.config})", flush=True)
  _json(os.path.join(out, "settings.json"), scfg.__dict__)
  progress = Progress(total, start)
  for dataset in datasets:
    arrays = study_data.load(scfg, dataset, out)
    for bb in backbones:
      paths = [
        cell_path(out, dataset, bb, n, s, a)
        for n in scfg.labels
        for s in scfg.seeds
        for a in ["baseline"] + arms
      ]
      if all(os.path.isfile(p) for p in paths):  # nothing to train: no model, no sweep, no pretraining
        for p in paths:
          progress.line(os.path.relpath(p, out), 0, True)
        continue
      weights = {"hed": "hed", "scratch": "none"}.get(bb) or pretrained(scfg, dataset, out)
      keras.backend.clear_session()
      trainer = study_cells.Trainer(scfg, arrays, bb, weights)
      chosen = sweep(scfg, trainer, arrays, out)["chosen"]
      for n in scfg.labels:
        for seed in scfg.seeds:
          run_grid_point(scfg, trainer, arrays, out, n, seed, chosen, progress, choices.MASK_INTENSITY)
  text = report(scfg, out, start)
  print(
    "\n" + text + f"\nWrote {out}/study.md, study.json, study.png in {_duration(time.time() - start)}",
    flush=True,
  )
  return text


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  scfg = config_lib.config_from_flags(config_class=study_config.StudyConfig, presets=study_config.PRESETS)
  if not scfg.out:
    raise app.UsageError("--out is required.")
  if scfg.report_only:
    print(report(scfg, scfg.out, time.time()))
    return
  run(scfg)


if __name__ == "__main__":
  app.run(main)
