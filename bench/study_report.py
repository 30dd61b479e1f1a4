"""The study's statistics and outputs: paired comparisons per seed, intervals over seeds, tables and plot.

Per seed, each ATCON arm is compared with the baseline it started from on the same test images: McNemar on
per-image correctness, a sign-flip permutation test on macro-F1, and one on the mean Grad-CAM deletion AUC.
Over seeds: the mean difference with a 90% t-interval, a two-sided one-sample t-test, and the minimal
detectable difference MDD = (z_0.975 + z_0.80) * sd / sqrt(n) (two-sided 5% test, 80% power, normal
approximation, sd = the seed-level SD of the paired difference; crude for few seeds).
"""

from __future__ import annotations

import math

import numpy as np

Z_MDD = 1.959964 + 0.841621  # z_0.975 + z_0.80


def per_seed(base: dict, arm: dict, test_y, num_classes: int, resamples: int, seed: int) -> dict:
  """Paired comparison of an arm with its baseline on the same test images (arm minus baseline)."""
  from atcon_tf.metrics import bootstrap, classification

  pb = np.asarray([int(c) for c in base["pred"]])
  pa = np.asarray([int(c) for c in arm["pred"]])
  y = np.asarray(test_y)

  def f1(labels, pred):
    return classification.macro_f1(labels, pred, num_classes=num_classes)

  del_b, del_a = np.asarray(base["deletion"]), np.asarray(arm["deletion"])
  return {
    "d_f1": arm["macro_f1"] - base["macro_f1"],
    "d_accuracy": arm["accuracy"] - base["accuracy"],
    "p_mcnemar": bootstrap.mcnemar_pvalue(pb == y, pa == y),
    "p_f1": bootstrap.paired_permutation_pvalue(
      f1, (pb,), (pa,), n_resamples=resamples, seed=seed, shared=(y,)
    ),
    "discordant": [int(np.sum((pb == y) & (pa != y))), int(np.sum((pb != y) & (pa == y)))],
    "d_deletion": float(del_a.mean() - del_b.mean()),
    "p_deletion": bootstrap.paired_permutation_pvalue(
      np.mean, (del_b,), (del_a,), n_resamples=resamples, seed=seed
    ),
    "d_consistency": float(np.mean(arm["consistency"]) - np.mean(base["consistency"])),
  }


def over_seeds(values, level: float = 0.90) -> dict:
  """Mean, 90% t-interval, two-sided t-test p (H0: mean 0), seed SD and MDD of paired differences."""
  from scipy import stats

  v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
  out = {"n": int(len(v)), "mean": float(v.mean()) if len(v) else None}
  if len(v) < 2:
    return dict(out, lower=None, upper=None, p=None, sd=None, mdd=None)
  sd = float(v.std(ddof=1))
  half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * sd / math.sqrt(len(v)))
  p = float(stats.ttest_1samp(v, 0.0).pvalue) if sd > 0 else (1.0 if v.mean() == 0 else 0.0)
  return dict(
    out, lower=out["mean"] - half, upper=out["mean"] + half, p=p, sd=sd, mdd=Z_MDD * sd / math.sqrt(len(v))
  )


def pooled_mcnemar(comparisons) -> float | None:
  """Exact McNemar on the discordant images of every seed together (same test images, paired per seed)."""
  if not comparisons:
    return None
  only_base = sum(c["discordant"][0] for c in comparisons)
  only_arm = sum(c["discordant"][1] for c in comparisons)
  n = only_base + only_arm
  if n == 0:
    return 1.0
  from scipy import stats

  return float(min(1.0, 2 * stats.binom.cdf(min(only_base, only_arm), n, 0.5)))


def summarize(cells: dict, arrays_y: dict, num_classes: dict, scfg) -> list:
  """One row per (dataset, N, backbone, arm) from the finished cells {key tuple: result}."""
  rows = []
  groups = sorted({k[:3] for k in cells})
  for dataset, backbone, n in groups:
    seeds = sorted(k[3] for k in cells if k[:3] == (dataset, backbone, n) and k[4] == "baseline")
    bases = {s: cells[(dataset, backbone, n, s, "baseline")] for s in seeds}
    base_row = dict(dataset=dataset, backbone=backbone, n=n, arm="baseline", seeds=seeds)
    for key in ("accuracy", "macro_f1"):
      base_row[key] = over_seeds([b[key] for b in bases.values()])
    rows.append(base_row)
    for arm in scfg.names("arms"):
      done = [s for s in seeds if (dataset, backbone, n, s, arm) in cells]
      if not done:
        continue
      comps = [
        per_seed(
          bases[s],
          cells[(dataset, backbone, n, s, arm)],
          arrays_y[dataset],
          num_classes[dataset],
          scfg.resamples,
          s,
        )
        for s in done
      ]
      arm_cells = [cells[(dataset, backbone, n, s, arm)] for s in done]
      rows.append(
        dict(
          dataset=dataset,
          backbone=backbone,
          n=n,
          arm=arm,
          seeds=done,
          accuracy=over_seeds([c["accuracy"] for c in arm_cells]),
          macro_f1=over_seeds([c["macro_f1"] for c in arm_cells]),
          baseline_accuracy=over_seeds([bases[s]["accuracy"] for s in done]),
          d_f1=over_seeds([c["d_f1"] for c in comps]),
          d_deletion=over_seeds([c["d_deletion"] for c in comps]),
          d_consistency=over_seeds([c["d_consistency"] for c in comps]),
          p_pooled_mcnemar=pooled_mcnemar(comps),
          per_seed=dict(zip(done, comps)),
          mask_logit_std=_mask_std(arm_cells),
          hyper=arm_cells[0].get("hyper"),
        )
      )
    if "more_supervised" in scfg.names("arms"):
      versus = _versus(
        cells,
        (dataset, backbone, n),
        "combining_pool",
        "more_supervised",
        arrays_y[dataset],
        num_classes[dataset],
        scfg,
      )
      rows += [versus] if versus else []
  return rows


def _mask_std(arm_cells):
  """Spread of the mask logits w (G - sigma) in the arm's last training chunk, at the arm's own w."""
  values = [c["history"][-1].get("mask_logit_std") for c in arm_cells if c.get("history")]
  values = [v for v in values if v is not None]
  return float(np.mean(values)) if values else None


def _versus(cells, key, arm, control, arrays_y, num_classes, scfg):
  """The row of `arm` minus `control` (both fine-tuned from the same baselines), over the seeds of both."""
  dataset, backbone, n = key
  done = sorted(
    k[3] for k in cells if k[:3] == key and k[4] == arm and (dataset, backbone, n, k[3], control) in cells
  )
  if not done:
    return None
  comps = [
    per_seed(cells[key + (s, control)], cells[key + (s, arm)], arrays_y, num_classes, scfg.resamples, s)
    for s in done
  ]
  return dict(
    dataset=dataset,
    backbone=backbone,
    n=n,
    arm=f"{arm} vs {control}",
    seeds=done,
    baseline_accuracy=over_seeds([cells[key + (s, control)]["accuracy"] for s in done]),
    d_f1=over_seeds([c["d_f1"] for c in comps]),
    d_deletion=over_seeds([c["d_deletion"] for c in comps]),
    d_consistency=over_seeds([c["d_consistency"] for c in comps]),
    p_pooled_mcnemar=pooled_mcnemar(comps),
    per_seed=dict(zip(done, comps)),
    mask_logit_std=None,
  )


_ORDER = {"baseline": 0, "atcon_labeled": 1, "combining_pool": 2, "more_supervised": 3}


def _f(v, signed=False, digits=3):
  if v is None:
    return "-"
  return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def _ci(s, signed=True):
  if s["mean"] is None:
    return "-"
  text = _f(s["mean"], signed)
  return text + (f" [{_f(s['lower'], signed)}, {_f(s['upper'], signed)}]" if s["lower"] is not None else "")


def markdown(rows, sweeps: dict, scfg) -> str:
  lines = []
  for dataset in sorted({r["dataset"] for r in rows}):
    synthetic = " (SYNTHETIC scenes, not SVHN)" if dataset == "house_numbers" else ""
    lines += [
      f"### {dataset}{synthetic}",
      "",
      "| N/class | backbone | arm | seeds | baseline acc | baseline F1 | ΔF1 [90% CI] | p (t, seeds) | "
      "p (McNemar, pooled) | per-seed p(F1) | Δ deletion AUC [90% CI] | p (t) | MDD(F1) | mask logit std |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(
      (r for r in rows if r["dataset"] == dataset),
      key=lambda r: (r["n"], r["backbone"], _ORDER.get(r["arm"], 9), r["arm"]),
    ):
      if r["arm"] == "baseline":
        lines.append(
          f"| {r['n']} | {r['backbone']} | baseline | {len(r['seeds'])} | {_ci(r['accuracy'], False)} | "
          f"{_ci(r['macro_f1'], False)} | | | | | | | | |"
        )
        continue
      pf1 = ", ".join(_f(c["p_f1"], digits=2) for c in r["per_seed"].values())
      lines.append(
        f"| {r['n']} | {r['backbone']} | {r['arm']} | {len(r['seeds'])} | {_f(r['baseline_accuracy']['mean'])} | "
        f"| {_ci(r['d_f1'])} | {_f(r['d_f1']['p'])} | {_f(r['p_pooled_mcnemar'])} | {pf1} | "
        f"{_ci(r['d_deletion'])} | {_f(r['d_deletion']['p'])} | {_f(r['d_f1']['mdd'])} | "
        f"{_f(r['mask_logit_std'], digits=2)} |"
      )
    lines.append("")
  lines += [
    "ΔF1, Δ deletion AUC: arm minus its own baseline (same seed, same test images), mean over seeds; deletion "
    "AUC is lower-is-better (a negative Δ means more faithful Grad-CAM maps). p (t, seeds): two-sided "
    "one-sample t-test of the per-seed differences; p (McNemar, pooled): exact McNemar on per-image "
    "correctness, discordant images of all seeds together; per-seed p(F1): sign-flip permutation test of "
    "macro-F1 on the test images of each seed. MDD: (z_0.975 + z_0.80) * sd / sqrt(seeds), two-sided 5%, "
    "80% power, sd = seed-level SD of ΔF1. mask logit std: spread of the mask logits w (G - sigma) in the "
    "arm's last training steps, at its own w (about 0: the mask is flat and the loss compares Grad-CAM(x) "
    "with Grad-CAM(about x/2)). 'combining_pool vs more_supervised': the same tests with the control "
    "(same lr and steps, no ATCON term) in place of the baseline: the effect of the ATCON term itself.",
    "",
    "### ATCON hyperparameters chosen on the validation split (the sweep)",
    "",
    "| dataset | backbone | arm | lr | w | steps | val F1 (baseline → chosen) | grid (lr, w, steps: val F1) |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for (dataset, backbone), sweep in sorted(sweeps.items()):
    for arm, chosen in sweep["chosen"].items():
      grid = "; ".join(
        f"{g['lr']:g}, {g['w']:g}, {g['step']}: {g['val_macro_f1']:.3f}"
        for g in sweep["grid"]
        if g["arm"] == arm
      )
      lines.append(
        f"| {dataset} | {backbone} | {arm} | {chosen['lr']:g} | {chosen['w']:g} | {chosen['step']} | "
        f"{sweep['baseline_val']['macro_f1']:.3f} → {chosen['val_macro_f1']:.3f} | {grid} |"
      )
  return "\n".join(lines)


def plot(rows, path: str):
  """macro-F1 vs N with 90% intervals over seeds: one panel per dataset, one line per backbone and arm."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  datasets = sorted({r["dataset"] for r in rows})
  fig = Figure(figsize=(6 * len(datasets), 4.5), dpi=100)
  FigureCanvasAgg(fig)
  axes = fig.subplots(1, len(datasets), squeeze=False)[0]
  styles = {"baseline": "-", "atcon_labeled": "--", "combining_pool": ":", "more_supervised": "-."}
  rows = [r for r in rows if "macro_f1" in r]  # not the arm-vs-control rows
  colours = {"hed": "tab:blue", "simclr": "tab:orange", "scratch": "tab:grey"}
  for ax, dataset in zip(axes, datasets):
    for backbone in sorted({r["backbone"] for r in rows if r["dataset"] == dataset}):
      for arm in sorted({r["arm"] for r in rows}):
        rs = sorted(
          (r for r in rows if (r["dataset"], r["backbone"], r["arm"]) == (dataset, backbone, arm)),
          key=lambda r: r["n"],
        )
        if not rs:
          continue
        n = np.asarray([r["n"] for r in rs], float) * (1 + 0.04 * list(styles).index(arm))
        m = np.asarray([r["macro_f1"]["mean"] for r in rs])
        lo = np.asarray(
          [
            r["macro_f1"]["lower"] if r["macro_f1"]["lower"] is not None else r["macro_f1"]["mean"]
            for r in rs
          ]
        )
        hi = np.asarray(
          [
            r["macro_f1"]["upper"] if r["macro_f1"]["upper"] is not None else r["macro_f1"]["mean"]
            for r in rs
          ]
        )
        ax.errorbar(
          n,
          m,
          yerr=[m - lo, hi - m],
          ls=styles.get(arm, "-"),
          color=colours.get(backbone),
          marker="o",
          ms=3,
          capsize=2,
          label=f"{backbone} {arm}",
        )
    ax.set_xscale("log", base=2)
    ns = sorted({r["n"] for r in rows if r["dataset"] == dataset})
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_xlim(ns[0] / 1.5, ns[-1] * 1.5)
    ax.set_xlabel("labeled images per class (N)")
    ax.set_ylabel("test macro-F1 (mean over seeds, 90% t-interval)")
    ax.set_title(dataset + (" (synthetic)" if dataset == "house_numbers" else ""))
    ax.legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(path, format="png")
  return path
