"""Bootstrap CIs and the p-values of model comparisons (docs/method.md §6.3). NumPy only.

Two kinds of comparison p-value, for two different questions:
* `pooled_bootstrap_pvalue`: PyPI `bstrap`'s two-sample test, the one the authors ran. It pools both samples
  and forgets which image a value came from: use it to reproduce their tables.
* `mcnemar_pvalue` (accuracy) and `paired_permutation_pvalue` (any metric): two models on the SAME images.
  Keeping the pairing removes the between-image variance, which the pooled test counts as noise, so these
  are the tests for a before/after comparison.

Why re-implemented: `bstrap` needs pandas DataFrames and numpy's global RNG; these take arrays and a seed, so
a results table can be rebuilt exactly. Rows of all arrays travel together (one row = one image).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np

EXACT_MAX_ROWS = 20  # the exact sign-flip path enumerates 2**d patterns of the d differing rows


class BootstrapCI(NamedTuple):
  mean: float  # mean of the bootstrap replicates (bstrap's `avg_metric`)
  lower: float  # (1 - ci)/2 percentile, 5th for ci=0.90
  upper: float  # (1 + ci)/2 percentile, 95th for ci=0.90
  estimate: float  # metric on the full sample


def _rows(data) -> tuple:
  """A tuple holds several arrays (e.g. `(labels, predictions)`); anything else is one array."""
  arrays = tuple(np.asarray(a) for a in (data if isinstance(data, tuple) else (data,)))
  n = len(arrays[0])
  if any(len(a) != n for a in arrays):
    raise ValueError("all arrays must have the same number of rows")
  return arrays


def bootstrap_ci(
  metric_fn: Callable[..., float], *arrays, n_resamples: int = 1000, ci: float = 0.90, seed: int = 0
) -> BootstrapCI:
  """Percentile bootstrap of `metric_fn(*arrays)`: resample rows with replacement `n_resamples` times."""
  arrays = _rows(arrays)
  n = len(arrays[0])
  rng = np.random.default_rng(seed)
  reps = np.empty(n_resamples, np.float64)
  for r in range(n_resamples):
    idx = rng.integers(0, n, size=n)
    reps[r] = metric_fn(*(a[idx] for a in arrays))
  lo, hi = np.percentile(reps, [50 * (1 - ci), 50 * (1 + ci)])
  return BootstrapCI(float(np.mean(reps)), float(lo), float(hi), float(metric_fn(*arrays)))


def pooled_bootstrap_pvalue(
  metric_fn: Callable[..., float], data_a, data_b, n_resamples: int = 10000, seed: int = 0
) -> float:
  """`bstrap.bootstrap`'s two-sample p-value for H0 "both samples have the same metric".

  `data_a` / `data_b`: one array or a tuple of arrays passed as `metric_fn(*data)` (e.g. `(y_true, probs)`).
  t = |m(a) - m(b)|; pool the rows of a and b; each run draws len(a)+len(b) rows with replacement from the
  pool, gives the first len(a) to x and the rest to y; p = #(|m(x) - m(y)| >= t) / n_resamples.
  bstrap counts a strict `>`, which gives p = 0 when both samples are the same constant (t = 0); counting
  ties keeps that case at p = 1 and differs from bstrap only on exact ties.
  The pooling ignores which rows belong to the same image: for two models on the same images prefer
  `mcnemar_pvalue` / `paired_permutation_pvalue`. Identical samples give p ~ 1.
  """
  a, b = _rows(data_a), _rows(data_b)
  if len(a) != len(b):
    raise ValueError("data_a and data_b must hold the same number of arrays")
  n, m = len(a[0]), len(b[0])
  t = abs(metric_fn(*a) - metric_fn(*b))
  pool = tuple(np.concatenate([x, y]) for x, y in zip(a, b))
  rng = np.random.default_rng(seed)
  higher = 0
  for _ in range(n_resamples):
    idx = rng.integers(0, n + m, size=n + m)
    ix, iy = idx[:n], idx[n:]
    if abs(metric_fn(*(p[ix] for p in pool)) - metric_fn(*(p[iy] for p in pool))) >= t:
      higher += 1
  return higher / n_resamples


def _binary(values, name: str) -> np.ndarray:
  v = np.asarray(values)
  if v.dtype != bool:
    if not np.all(np.isin(v, (0, 1))):
      raise ValueError(f"{name} must hold booleans or 0/1 (one correctness flag per image)")
    v = v.astype(bool)
  return v.reshape(-1)


def mcnemar_pvalue(correct_a, correct_b) -> float:
  """Exact two-sided McNemar test of H0 "both models are right equally often" on the same images.

  `correct_a` / `correct_b`: per-image correctness (bool or 0/1) of models a and b, row i = image i. Only
  discordant images carry information: n_a = #(a right, b wrong), n_b = #(a wrong, b right); under H0
  n_a ~ Binomial(n_a + n_b, 1/2) and p = min(1, 2 P(X <= min(n_a, n_b))). No discordant image: p = 1.
  Exact integer arithmetic, no chi-square approximation, so it is right for small counts too.
  """
  a, b = _binary(correct_a, "correct_a"), _binary(correct_b, "correct_b")
  if a.shape != b.shape:
    raise ValueError("correct_a and correct_b must have one entry per image, for the same images")
  only_a, only_b = int(np.count_nonzero(a & ~b)), int(np.count_nonzero(~a & b))
  n = only_a + only_b
  if n == 0:
    return 1.0
  tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1))
  return min(1.0, 2 * tail / 2**n)  # int / int: correctly rounded even for huge n


def _swapped(a: np.ndarray, b: np.ndarray, flip: np.ndarray) -> tuple:
  f = flip.reshape((-1,) + (1,) * (a.ndim - 1))
  return np.where(f, b, a), np.where(f, a, b)


def paired_permutation_pvalue(
  metric_fn: Callable[..., float],
  data_a,
  data_b,
  n_resamples: int = 10000,
  seed: int = 0,
  shared=(),
  exact: bool | None = None,
) -> float:
  """Sign-flip permutation test of H0 "models a and b are exchangeable on each image" (same images).

  The metric is `metric_fn(*shared, *data)`: `data_a` / `data_b` are model a's / b's per-image values (one
  array or a tuple, row i = image i), `shared` what both models share, e.g. for macro-F1
  `paired_permutation_pvalue(f1, (pred_a,), (pred_b,), shared=(labels,))`. It works for mean-type metrics
  and for metrics of the whole sample alike.

  t = |m(a) - m(b)|. A resample swaps a's and b's rows of each image with probability 1/2 and counts
  |m(a*) - m(b*)| >= t (ties count, with a 1e-10 relative tolerance for float rounding, so identical
  samples give p = 1).
  * Monte Carlo: p = (count + 1) / (n_resamples + 1) (Phipson & Smyth 2010): the observed assignment is one
    of the permutations, so p is never 0 and the test keeps its level.
  * Exact: swapping an image where a and b hold the same values changes nothing, so the 2^d patterns of
    the d differing images give the exact p = count / 2^d (identity included). `exact=None` (default) takes
    this path when 2^d <= n_resamples; `exact=True` forces it (d <= EXACT_MAX_ROWS); False never.
  For 0/1 correctness and the mean, the exact test is McNemar's.
  """
  a, b, shared = _rows(data_a), _rows(data_b), tuple(np.asarray(s) for s in shared)
  if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b)):
    raise ValueError("data_a and data_b must hold arrays of the same shapes (the same images)")
  n = len(a[0])
  if any(len(s) != n for s in shared):
    raise ValueError("shared arrays must have one row per image, as data_a / data_b")

  differs = np.zeros(n, bool)
  for x, y in zip(a, b):
    differs |= (x != y).reshape(n, int(np.prod(x.shape[1:], dtype=np.int64))).any(axis=1)
  rows = np.flatnonzero(differs)
  d = len(rows)
  if d == 0:  # every swap pattern gives back the observed samples
    return 1.0

  def diff(xs, ys):
    return metric_fn(*shared, *xs) - metric_fn(*shared, *ys)

  ma, mb = metric_fn(*shared, *a), metric_fn(*shared, *b)
  t = abs(ma - mb)
  threshold = t - 1e-10 * max(abs(ma), abs(mb), t)
  if exact is None:
    exact = d <= EXACT_MAX_ROWS and 2**d <= n_resamples
  if exact:
    if d > EXACT_MAX_ROWS:
      raise ValueError(
        f"exact=True enumerates 2^d sign patterns; {d} images differ (at most "
        f"{EXACT_MAX_ROWS}): use the Monte Carlo path"
      )
    bits = np.arange(d)
    count = 0
    for pattern in range(2**d):
      flip = np.zeros(n, bool)
      flip[rows] = (pattern >> bits) & 1 == 1
      pairs = [_swapped(x, y, flip) for x, y in zip(a, b)]
      count += abs(diff([p[0] for p in pairs], [p[1] for p in pairs])) >= threshold
    return int(count) / 2**d
  rng = np.random.default_rng(seed)
  count = 0
  for _ in range(n_resamples):
    flip = rng.random(n) < 0.5
    pairs = [_swapped(x, y, flip) for x, y in zip(a, b)]
    count += abs(diff([p[0] for p in pairs], [p[1] for p in pairs])) >= threshold
  return (int(count) + 1) / (n_resamples + 1)
