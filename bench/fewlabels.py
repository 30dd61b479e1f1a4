"""Few-label study: supervised baseline vs ATCON (two_stage) on the synthetic house_numbers benchmark.

For every N (labeled images per class) and seed, one `trainers.finetune` two_stage run: stage 1 trains the
baseline on N labels per class (best checkpoint by validation loss), stage 2 fine-tunes that checkpoint with the
ATCON loss (the authors' protocol, docs/method.md). Both checkpoints are evaluated on the same test images:
macro-F1 and the WSD IoU (docs/method.md, on the images both models classify correctly) with bootstrap 90% CIs
and the evaluator's paired p-values per run, then means over seeds with a 90% t-interval.

  python bench/fewlabels.py --out=DIR                 # the study: N in {2, 8}, seeds 0,1,2 (GPU machine advised)
  python bench/fewlabels.py --quick --out=/tmp/fl     # sanity run: tiny sizes, a few minutes on 2 CPU cores
  python bench/fewlabels.py --out=DIR --study_labels=2,4,8,16 --seeds=0,1,2,3,4 --image_size=64 \\
      --house_numbers_config=multi --epochs=60 --atcon_epochs=40

Every trainer flag works here (they are generated from `trainers.config.Config`); the study's defaults are the
`fewlabels` preset (`fewlabels_quick` with --quick). Its own flags: --out, --study_labels, --seeds, --quick.

Writes DIR/results.md (the markdown tables, also printed) and DIR/results.json; each run keeps its workdir in
DIR/runs/N<n>_seed<s>/ and a finished run is reused when the study is restarted (so it can be resumed).
house_numbers is SYNTHETIC (not SVHN): it measures relative effects, not the paper's numbers.
"""

import json
import math
import os
import time

from atcon_tf import quiet

quiet.tensorflow_logs()  # before TensorFlow is imported: no CUDA / oneDNN start-up noise

import numpy as np  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from trainers import config as config_lib  # noqa: E402

BASELINE, ATCON = "supervised (stage 1)", "atcon (stage 2)"
_PER_RUN = ("labels_per_class", "seed", "workdir", "schedule")  # set by the study for each run

config_lib.define_flags(skip=_PER_RUN)
flags.DEFINE_string("out", None, "Output folder (results.md, results.json, runs/).")
flags.DEFINE_list(
  "study_labels", ["2", "8"], "Labeled images per class, one two_stage run per value and seed."
)
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (>= 3 for the study).")
flags.DEFINE_boolean("quick", False, "Tiny sanity run: the fewlabels_quick preset instead of fewlabels.")
flags.mark_flag_as_required("out")
FLAGS = flags.FLAGS


def study_config():
  """The study's Config: the (fewlabels or --config) preset, then every trainer flag given explicitly."""
  name = FLAGS.config if FLAGS["config"].present else ("fewlabels_quick" if FLAGS.quick else "fewlabels")
  return config_lib.config_from_flags(FLAGS, preset_name=name, dataset="house_numbers", schedule="two_stage")


def run_config(base, out, n, seed):
  return base.replace(labels_per_class=n, seed=seed, workdir=os.path.join(out, "runs", f"N{n}_seed{seed}"))


def one_run(base, out, n, seed):
  """metrics.json of the (n, seed) run, training it unless a finished one is on disk."""
  import keras

  from trainers import finetune

  cfg = run_config(base, out, n, seed)
  path = os.path.join(cfg.workdir, finetune.METRICS_FILE)
  if os.path.isfile(path):
    with open(path) as f:
      metrics = json.load(f)
    if metrics.get("evaluation", {}).get("models"):
      return metrics, True
  keras.backend.clear_session()
  return finetune.run(cfg), False


def _get(model_metrics, key, field="estimate"):
  m = model_metrics.get(key) or {}
  return m.get(field)


def row_of(n, seed, metrics):
  ev = metrics["evaluation"]
  base, atcon = ev["models"][BASELINE]["metrics"], ev["models"][ATCON]["metrics"]
  cmp_ = ev["comparison"]["metrics"]
  row = {"n": n, "seed": seed}
  for name, m in (("baseline", base), ("atcon", atcon)):
    for key in ("macro_f1", "accuracy", "wsd_iou_both_correct", "pointing_game", "consistency"):
      row[f"{name}_{key}"] = _get(m, key)
      row[f"{name}_{key}_ci"] = [_get(m, key, "lower"), _get(m, key, "upper")]
  if row["baseline_accuracy"] is None:  # multi-label: share of images whose top-1 class is a label
    for name, m in (("baseline", base), ("atcon", atcon)):
      row[f"{name}_accuracy"] = _get(m, "top1_in_labels")
  row["p_f1"] = cmp_["macro_f1"]["p_value"]
  row["p_iou"] = cmp_.get("wsd_iou", {}).get("p_value")
  row["n_both_correct"] = cmp_.get("wsd_iou", {}).get("n_both_correct")
  row["p_pointing"] = cmp_.get("pointing_game", {}).get("p_value")
  row["labeled"] = metrics["split_sizes"]["labeled"]
  row["seconds"] = metrics.get("seconds", {}).get("total")
  return row


def t_interval(values, level=0.90):
  """Mean and two-sided t-interval over seeds (None when fewer than 2 finite values)."""
  from scipy import stats

  v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
  if len(v) == 0:
    return None, None, None
  mean = float(v.mean())
  if len(v) < 2:
    return mean, None, None
  half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
  return mean, mean - half, mean + half


def _fmt(value, lo=None, hi=None, signed=False):
  if value is None:
    return "-"
  text = f"{value:+.3f}" if signed else f"{value:.3f}"
  if lo is not None and hi is not None:
    text += f" [{lo:+.3f}, {hi:+.3f}]" if signed else f" [{lo:.3f}, {hi:.3f}]"
  return text


def _diff(a, b):
  return None if a is None or b is None else b - a


def tables(rows, cfg, tests="") -> str:
  lines = [
    f"## Few-label study: supervised baseline vs ATCON (two_stage), house_numbers/{cfg.house_numbers_config}"
    " (SYNTHETIC, not SVHN)",
    "",
    f"{cfg.backbone} ({'width ' + str(cfg.resnet_width) if cfg.backbone == 'small_resnet' else cfg.weights}"
    f"), {cfg.image_size} px; supervised {cfg.epochs}x{cfg.steps_per_epoch} steps, batch "
    f"{cfg.batch_size}, lr {cfg.lr:g}; ATCON {cfg.atcon_epochs}x{cfg.atcon_steps_per_epoch} steps, lr "
    f"{cfg.atcon_lr:g}, w={cfg.mask_intensity:g}, on the {cfg.unlabeled} images; best checkpoint of each "
    "stage by validation supervised loss.",
    "",
    "### Mean over seeds (90% t-interval over seeds)",
    "",
    "| N/class | seeds | baseline F1 | ATCON F1 | ΔF1 | baseline IoU | ATCON IoU | ΔIoU | ATCON F1 > baseline |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  for n in sorted({r["n"] for r in rows}):
    rs = [r for r in rows if r["n"] == n]
    cells = []
    for key in ("macro_f1", "wsd_iou_both_correct"):
      b = t_interval([r[f"baseline_{key}"] for r in rs])
      a = t_interval([r[f"atcon_{key}"] for r in rs])
      d = t_interval([_diff(r[f"baseline_{key}"], r[f"atcon_{key}"]) for r in rs])
      cells += [_fmt(*b), _fmt(*a), _fmt(*d, signed=True)]
    wins = sum(1 for r in rs if (_diff(r["baseline_macro_f1"], r["atcon_macro_f1"]) or 0) > 0)
    lines.append(f"| {n} | {len(rs)} | " + " | ".join(cells) + f" | {wins}/{len(rs)} |")
  chance = [r for r in rows if r["baseline_accuracy"] is not None and r["baseline_accuracy"] < 1.5 / 10]
  lines += ["", "IoU: WSD IoU (docs/method.md) on the test images both checkpoints classify correctly."]
  if chance:
    lines += [
      "",
      f"**Note:** the baseline's accuracy is at chance level (< 1.5/10) in {len(chance)} of {len(rows)} "
      "runs: with so few labels a network trained from scratch memorises its training images, and F1 / IoU "
      "differences then measure noise. Use more labels, more steps or a pretrained backbone "
      "(--backbone=resnet50 --weights=PATH) for a meaningful comparison.",
    ]
  lines += [
    "",
    f"### Per run (test-set bootstrap 90% CI; p-values: {tests or 'see results.json'})",
    "",
    "| N | seed | baseline F1 | ATCON F1 | p(F1) | baseline IoU | ATCON IoU | p(IoU) | both correct | "
    "pointing base→ATCON | consistency base→ATCON |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for r in sorted(rows, key=lambda r: (r["n"], r["seed"])):
    p = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    lines.append(
      f"| {r['n']} | {r['seed']} | {_fmt(r['baseline_macro_f1'], *r['baseline_macro_f1_ci'])} | "
      f"{_fmt(r['atcon_macro_f1'], *r['atcon_macro_f1_ci'])} | {p(r['p_f1'])} | "
      f"{_fmt(r['baseline_wsd_iou_both_correct'])} | {_fmt(r['atcon_wsd_iou_both_correct'])} | {p(r['p_iou'])} | "
      f"{r['n_both_correct']} | {p(r['baseline_pointing_game'])}→{p(r['atcon_pointing_game'])} | "
      f"{p(r['baseline_consistency'])}→{p(r['atcon_consistency'])} |"
    )
  return "\n".join(lines)


def _tests_used(metrics) -> str:
  """Which test gave each p-value, as the evaluator recorded it."""
  tests = metrics["evaluation"]["comparison"].get("tests") or {}
  return "; ".join(f"{k}: {v}" for k, v in tests.items()) if isinstance(tests, dict) else str(tests)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  base, out = study_config(), FLAGS.out
  os.makedirs(out, exist_ok=True)
  grid = [(int(n), int(s)) for n in FLAGS.study_labels for s in FLAGS.seeds]
  print(f"few-label study: {len(grid)} two_stage runs -> {out} (preset {base.config})", flush=True)
  settings = dict(
    json.loads(json.dumps(base.__dict__, default=list)), study_labels=FLAGS.study_labels, seeds=FLAGS.seeds
  )
  start = time.time()
  rows = []
  for i, (n, seed) in enumerate(grid, 1):
    t0 = time.time()
    print(f"[{i}/{len(grid)}] N={n} seed={seed} ...", flush=True)
    metrics, reused = one_run(base, out, n, seed)
    row = row_of(n, seed, metrics)
    rows.append(row)
    print(
      f"[{i}/{len(grid)}] N={n} seed={seed} {'reused' if reused else 'done'} in {time.time() - t0:.0f} s: "
      f"F1 {row['baseline_macro_f1']:.3f} -> {row['atcon_macro_f1']:.3f} (p={row['p_f1']:.3f}), "
      f"IoU {_fmt(row['baseline_wsd_iou_both_correct'])} -> {_fmt(row['atcon_wsd_iou_both_correct'])}; "
      f"elapsed {time.time() - start:.0f} s",
      flush=True,
    )
    with open(os.path.join(out, "results.json"), "w") as f:  # partial results survive an interruption
      json.dump({"settings": settings, "runs": rows}, f, indent=2)
  text = tables(rows, base, _tests_used(metrics))
  with open(os.path.join(out, "results.md"), "w") as f:
    f.write(text + "\n")
  summary = {}
  for n in sorted({r["n"] for r in rows}):
    rs = [r for r in rows if r["n"] == n]
    summary[str(n)] = {
      f"{who}_{key}": dict(zip(("mean", "lower", "upper"), t_interval([r[f"{who}_{key}"] for r in rs])))
      for who in ("baseline", "atcon")
      for key in ("macro_f1", "wsd_iou_both_correct", "pointing_game", "consistency")
    }
  with open(os.path.join(out, "results.json"), "w") as f:
    json.dump(
      {"settings": settings, "runs": rows, "summary": summary, "seconds": round(time.time() - start, 1)},
      f,
      indent=2,
    )
  print(
    "\n" + text + f"\n\nWrote {os.path.join(out, 'results.md')} and results.json "
    f"({time.time() - start:.0f} s)",
    flush=True,
  )


if __name__ == "__main__":
  app.run(main)
