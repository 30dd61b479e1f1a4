"""Few-label study: supervised baseline vs ATCON (two_stage) on the synthetic house_numbers benchmark.

For every N (labelled images per class) and seed, one `trainers.finetune` two_stage run: stage 1 trains the
baseline on N labels per class (best checkpoint by validation loss), stage 2 fine-tunes that checkpoint with the
ATCON loss (the authors' protocol, method.md §2). Both checkpoints are evaluated on the same test images:
macro-F1 and the WSD IoU (method.md §6.2, on the images both models classify correctly) with bootstrap 90% CIs
and bstrap p-values per run, then means over seeds with a 90% t-interval.

  python bench/fewlabels.py --out=DIR                 # the study: N in {2, 8}, seeds 0,1,2 (GPU machine advised)
  python bench/fewlabels.py --quick --out=/tmp/fl     # sanity run: tiny sizes, a few minutes on 2 CPU cores
  python bench/fewlabels.py --out=DIR --labels_per_class=2,4,8,16 --seeds=0,1,2,3,4 --image_size=64 \\
      --house_numbers_config=multi --epochs=60 --atcon_epochs=40

Writes DIR/results.md (the markdown tables, also printed) and DIR/results.json; each run keeps its workdir in
DIR/runs/N<n>_seed<s>/ and a finished run is reused when the study is restarted (so it can be resumed).
house_numbers is SYNTHETIC (not SVHN): it measures relative effects, not the paper's numbers.
"""
import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

BASELINE, ATCON = "supervised (stage 1)", "atcon (stage 2)"

# The study's defaults (argparse defaults below) and the --quick overrides.
QUICK = dict(labels_per_class="2,8", seeds="0,1,2", image_size=32, house_numbers_sizes="400,64,200", epochs=3,
             steps_per_epoch=8, batch_size=16, atcon_epochs=2, atcon_steps_per_epoch=4, resnet_width=8,
             test_size=200, bootstrap=200, pvalue_resamples=200)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--out", required=True, help="Output folder (results.md, results.json, runs/).")
  p.add_argument("--quick", action="store_true", help="Tiny sanity run (overrides the size/epoch flags).")
  p.add_argument("--labels_per_class", default="2,8", help="Comma-separated N values.")
  p.add_argument("--seeds", default="0,1,2", help="Comma-separated seeds (>= 3 for the study).")
  p.add_argument("--house_numbers_config", default="single", choices=["single", "multi"])
  p.add_argument("--house_numbers_sizes", default="14000,500,2000", help="Generated TRAIN,VALIDATION,TEST scenes.")
  p.add_argument("--data_dir", default=None, help="tfds data_dir for the generated scenes.")
  p.add_argument("--image_size", type=int, default=32)
  p.add_argument("--backbone", default="small_resnet", choices=["small_resnet", "resnet50", "mobilenet_v2"])
  p.add_argument("--weights", default="auto", help="imagenet | none | PATH (keras.applications backbones).")
  p.add_argument("--resnet_width", type=int, default=16)
  p.add_argument("--resnet_blocks", default="1,1,1")
  p.add_argument("--batch_size", type=int, default=16)
  p.add_argument("--epochs", type=int, default=40, help="Supervised epochs (validation after each).")
  p.add_argument("--steps_per_epoch", type=int, default=50, help="Supervised steps per epoch.")
  p.add_argument("--lr", type=float, default=1e-3)
  p.add_argument("--atcon_epochs", type=int, default=20)
  p.add_argument("--atcon_steps_per_epoch", type=int, default=25)
  p.add_argument("--atcon_lr", type=float, default=1e-5)
  p.add_argument("--unlabeled", default="labeled", choices=["labeled", "pool"],
                 help="ATCON images: the N labelled ones (the authors' fine-tuning scripts) or the rest of train.")
  p.add_argument("--mask_intensity", type=float, default=8.0)
  p.add_argument("--augment", default="auto", choices=["auto", "none", "digits", "flip"],
                 help="Training augmentation (auto: digits for house_numbers).")
  p.add_argument("--val_size", type=int, default=500)
  p.add_argument("--test_size", type=int, default=0, help="First K test scenes (0: all).")
  p.add_argument("--bootstrap", type=int, default=1000)
  p.add_argument("--pvalue_resamples", type=int, default=1000)
  p.add_argument("--strategy", default="default", choices=["default", "mirrored"])
  p.add_argument("--verbose", type=int, default=0, help="Keras verbosity inside each run.")
  args = p.parse_args(argv)
  if args.quick:
    explicit = {a.split("=")[0].lstrip("-") for a in (argv if argv is not None else sys.argv[1:])}
    for key, value in QUICK.items():
      if key not in explicit:
        setattr(args, key, value)
  return args


def _ints(text):
  return tuple(int(v) for v in str(text).split(",") if v.strip())


def run_config(args, n, seed):
  from trainers import finetune

  return finetune.preset(
      "default", dataset="house_numbers", house_numbers_config=args.house_numbers_config,
      house_numbers_sizes=_ints(args.house_numbers_sizes), data_dir=args.data_dir, image_size=args.image_size,
      labels_per_class=n, unlabeled=args.unlabeled, val_size=args.val_size, test_size=args.test_size, seed=seed,
      schedule="two_stage", mask_intensity=args.mask_intensity, augment=args.augment, backbone=args.backbone,
      weights=args.weights,
      resnet_width=args.resnet_width, resnet_blocks=_ints(args.resnet_blocks), epochs=args.epochs,
      steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size, lr=args.lr,
      atcon_epochs=args.atcon_epochs, atcon_steps_per_epoch=args.atcon_steps_per_epoch, atcon_lr=args.atcon_lr,
      strategy=args.strategy, workdir=os.path.join(args.out, "runs", f"N{n}_seed{seed}"), viz_every=0,
      bootstrap=args.bootstrap, pvalue_resamples=args.pvalue_resamples, verbose=args.verbose)


def one_run(args, n, seed):
  """metrics.json of the (n, seed) run, training it unless a finished one is on disk."""
  import keras

  from trainers import finetune

  cfg = run_config(args, n, seed)
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


def tables(rows, args) -> str:
  lines = [f"## Few-label study: supervised baseline vs ATCON (two_stage), house_numbers/{args.house_numbers_config}"
           " (SYNTHETIC, not SVHN)", "",
           f"{args.backbone} ({'width ' + str(args.resnet_width) if args.backbone == 'small_resnet' else args.weights}"
           f"), {args.image_size} px; supervised {args.epochs}x{args.steps_per_epoch} steps, batch "
           f"{args.batch_size}, lr {args.lr:g}; ATCON {args.atcon_epochs}x{args.atcon_steps_per_epoch} steps, lr "
           f"{args.atcon_lr:g}, w={args.mask_intensity:g}, on the {args.unlabeled} images; best checkpoint of each "
           "stage by validation supervised loss.", "",
           "### Mean over seeds (90% t-interval over seeds)", "",
           "| N/class | seeds | baseline F1 | ATCON F1 | ΔF1 | baseline IoU | ATCON IoU | ΔIoU | ATCON F1 > baseline |",
           "|---|---|---|---|---|---|---|---|---|"]
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
  lines += ["", "IoU: WSD IoU (method.md §6.2) on the test images both checkpoints classify correctly."]
  if chance:
    lines += ["", f"**Note:** the baseline's accuracy is at chance level (< 1.5/10) in {len(chance)} of {len(rows)} "
              "runs: with so few labels a network trained from scratch memorises its training images, and F1 / IoU "
              "differences then measure noise. Use more labels, more steps or a pretrained backbone "
              "(--backbone=resnet50 --weights=PATH) for a meaningful comparison."]
  lines += ["",
            "### Per run (test-set bootstrap 90% CI; p: bstrap pooled bootstrap test)", "",
            "| N | seed | baseline F1 | ATCON F1 | p(F1) | baseline IoU | ATCON IoU | p(IoU) | both correct | "
            "pointing base→ATCON | consistency base→ATCON |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in sorted(rows, key=lambda r: (r["n"], r["seed"])):
    p = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    lines.append(
        f"| {r['n']} | {r['seed']} | {_fmt(r['baseline_macro_f1'], *r['baseline_macro_f1_ci'])} | "
        f"{_fmt(r['atcon_macro_f1'], *r['atcon_macro_f1_ci'])} | {p(r['p_f1'])} | "
        f"{_fmt(r['baseline_wsd_iou_both_correct'])} | {_fmt(r['atcon_wsd_iou_both_correct'])} | {p(r['p_iou'])} | "
        f"{r['n_both_correct']} | {p(r['baseline_pointing_game'])}→{p(r['atcon_pointing_game'])} | "
        f"{p(r['baseline_consistency'])}→{p(r['atcon_consistency'])} |")
  return "\n".join(lines)


def main(argv=None):
  args = parse_args(argv)
  os.makedirs(args.out, exist_ok=True)
  grid = [(n, s) for n in _ints(args.labels_per_class) for s in _ints(args.seeds)]
  print(f"few-label study: {len(grid)} two_stage runs -> {args.out}" + (" (quick)" if args.quick else ""),
        flush=True)
  start = time.time()
  rows = []
  for i, (n, seed) in enumerate(grid, 1):
    t0 = time.time()
    print(f"[{i}/{len(grid)}] N={n} seed={seed} ...", flush=True)
    metrics, reused = one_run(args, n, seed)
    row = row_of(n, seed, metrics)
    rows.append(row)
    print(f"[{i}/{len(grid)}] N={n} seed={seed} {'reused' if reused else 'done'} in {time.time() - t0:.0f} s: "
          f"F1 {row['baseline_macro_f1']:.3f} -> {row['atcon_macro_f1']:.3f} (p={row['p_f1']:.3f}), "
          f"IoU {_fmt(row['baseline_wsd_iou_both_correct'])} -> {_fmt(row['atcon_wsd_iou_both_correct'])}; "
          f"elapsed {time.time() - start:.0f} s", flush=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:  # partial results survive an interruption
      json.dump({"settings": vars(args), "runs": rows}, f, indent=2)
  text = tables(rows, args)
  with open(os.path.join(args.out, "results.md"), "w") as f:
    f.write(text + "\n")
  summary = {}
  for n in sorted({r["n"] for r in rows}):
    rs = [r for r in rows if r["n"] == n]
    summary[str(n)] = {f"{who}_{key}": dict(zip(("mean", "lower", "upper"), t_interval(
        [r[f"{who}_{key}"] for r in rs]))) for who in ("baseline", "atcon")
        for key in ("macro_f1", "wsd_iou_both_correct", "pointing_game", "consistency")}
  with open(os.path.join(args.out, "results.json"), "w") as f:
    json.dump({"settings": vars(args), "runs": rows, "summary": summary,
               "seconds": round(time.time() - start, 1)}, f, indent=2)
  print("\n" + text + f"\n\nWrote {os.path.join(args.out, 'results.md')} and results.json "
        f"({time.time() - start:.0f} s)", flush=True)


if __name__ == "__main__":
  main()
