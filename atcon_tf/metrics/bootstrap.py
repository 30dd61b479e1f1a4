"""Bootstrap CIs and p-values as the authors report them (method.md §6.3, PyPI `bstrap`).

Why re-implemented: `bstrap` needs pandas DataFrames and numpy's global RNG; these take arrays and a seed, so a
results table can be rebuilt exactly. Rows of all arrays are resampled jointly (one row = one image).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np


class BootstrapCI(NamedTuple):
    mean: float  # mean of the bootstrap replicates (bstrap's `avg_metric`)
    lower: float  # (1 - ci)/2 percentile, 5th for ci=0.90
    upper: float  # (1 + ci)/2 percentile, 95th for ci=0.90
    estimate: float  # metric on the full sample


def _rows(data) -> tuple:
    arrays = tuple(np.asarray(a) for a in (data if isinstance(data, (tuple, list)) else (data,)))
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError("all arrays must have the same number of rows")
    return arrays


def bootstrap_ci(metric_fn: Callable[..., float], *arrays, n_resamples: int = 1000, ci: float = 0.90,
                 seed: int = 0) -> BootstrapCI:
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


def paired_bootstrap_pvalue(metric_fn: Callable[..., float], data_a, data_b, n_resamples: int = 10000,
                            seed: int = 0) -> float:
    """`bstrap.bootstrap`'s p-value for H0 "both samples have the same metric".

    `data_a` / `data_b`: one array or a tuple of arrays passed as `metric_fn(*data)` (e.g. `(y_true, probs)`).
    t = |m(a) - m(b)|; pool the rows of a and b; each run draws len(a)+len(b) rows with replacement from the pool,
    gives the first len(a) to x and the rest to y; p = #(|m(x) - m(y)| >= t) / n_resamples.
    bstrap counts a strict `>`, which gives p = 0 when both samples are the same constant (t = 0); counting ties
    keeps that case at p = 1 and differs from bstrap only on exact ties.
    Despite the name (the two samples are usually the same images under two models) the test does NOT keep the
    pairing: it is bstrap's pooled two-sample test, which is what the authors ran. Identical samples give p ~ 1.
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

