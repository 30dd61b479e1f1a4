"""Deletion and insertion AUC (Petsiuk et al., RISE, 2018): map quality without boxes. NumPy only, batched.

Why: the WSD IoU and the pointing game need boxes; these need only the model. Pixels are ranked by the map
(most attended first). Deletion replaces them, `steps` equal shares at a time, by a baseline image that carries
little class evidence and records the class score after each step; insertion starts from the baseline and
puts the image's pixels back in the same order. A faithful map makes the score fall fast (deletion AUC low)
and rise fast (insertion AUC high). The AUC is the trapezoid area under the score curve over the fraction of
pixels changed (x from 0 to 1), so it is in [0, 1] for probability scores.

Baselines: `blur` (default: a Gaussian blur of the image, sigma = `blur_sigma` x image size, reflected edges;
removes detail without adding new edges or colours) or `mean` (each channel's mean over the image). The score
function gets model inputs; blur and mean commute with the per-channel affine preprocessing of this project, so
they may be taken on preprocessed images. Ties in a map keep raster order (a stable sort).
"""

from __future__ import annotations

import numpy as np

from atcon_tf import choices

BASELINES = choices.FAITHFULNESS_BASELINES
DEFAULT_STEPS = 16
DEFAULT_BLUR_SIGMA = 1.0 / 8.0  # of the image size: 4 px at 32 px, 28 px at 224 px


def _gaussian_kernel(sigma: float) -> np.ndarray:
  radius = max(1, int(np.ceil(3.0 * sigma)))
  t = np.arange(-radius, radius + 1, dtype=np.float64)
  k = np.exp(-0.5 * (t / sigma) ** 2)
  return k / k.sum()


def _blur_axis(x: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
  r = len(kernel) // 2
  pad = [(0, 0)] * x.ndim
  pad[axis] = (r, r)
  mode = "reflect" if x.shape[axis] > r else "symmetric"
  padded = np.pad(x, pad, mode=mode)
  out = np.zeros_like(x, dtype=np.float64)
  n = x.shape[axis]
  for i, w in enumerate(kernel):
    out += w * np.take(padded, np.arange(i, i + n), axis=axis)
  return out


def blurred(images, sigma_fraction: float = DEFAULT_BLUR_SIGMA) -> np.ndarray:
  """Separable Gaussian blur of (B, H, W, C) images; sigma = sigma_fraction * max(H, W) pixels."""
  x = np.asarray(images, np.float64)
  kernel = _gaussian_kernel(max(sigma_fraction * max(x.shape[1:3]), 1e-3))
  return _blur_axis(_blur_axis(x, kernel, 1), kernel, 2).astype(np.float32)


def baseline_images(images, kind: str = "blur", sigma_fraction: float = DEFAULT_BLUR_SIGMA) -> np.ndarray:
  """The image that removed pixels take: `blur` or per-image channel `mean`."""
  x = np.asarray(images, np.float32)
  if kind == "blur":
    return blurred(x, sigma_fraction)
  if kind == "mean":
    return np.broadcast_to(x.mean(axis=(1, 2), keepdims=True), x.shape).astype(np.float32)
  raise ValueError(f"Unknown baseline {kind!r}; choose one of {list(BASELINES)}.")


def pixel_order(saliency) -> np.ndarray:
  """(B, H*W) pixel indices, most salient first; ties in raster order. Non-finite values rank last."""
  s = np.asarray(saliency, np.float64).reshape(len(saliency), -1)
  s = np.where(np.isfinite(s), s, -np.inf)
  return np.argsort(-s, axis=1, kind="stable")


def perturbation_curves(score_fn, images, saliency, baseline, steps: int = DEFAULT_STEPS):
  """(deletion, insertion) score curves, each (B, steps + 1): point k has round(k/steps * H*W) pixels changed.

  score_fn: (B, H, W, C) float32 -> (B,) class scores (e.g. the probability of each image's top-1 class);
  it is called 2 * (steps + 1) times with whole batches. saliency: (B, H, W), at the images' resolution.
  """
  x = np.asarray(images, np.float32)
  base = np.asarray(baseline, np.float32)
  b, h, w = x.shape[:3]
  if np.shape(saliency) != (b, h, w):
    raise ValueError(f"saliency {np.shape(saliency)} must be (B, H, W) = {(b, h, w)}: resize it first.")
  ranks = np.empty((b, h * w), np.int64)
  ranks[np.arange(b)[:, None], pixel_order(saliency)] = np.arange(h * w)[None, :]  # rank of each pixel
  ranks = ranks.reshape(b, h, w, 1)
  deletion, insertion = [], []
  for k in range(steps + 1):
    changed = ranks < round(k / steps * h * w)  # the k-th share of most salient pixels
    deletion.append(np.asarray(score_fn(np.where(changed, base, x)), np.float64))
    insertion.append(np.asarray(score_fn(np.where(changed, x, base)), np.float64))
  return np.stack(deletion, axis=1), np.stack(insertion, axis=1)


def curve_auc(curves) -> np.ndarray:
  """Trapezoid area under (B, K + 1) curves over x = 0, 1/K, ..., 1."""
  c = np.asarray(curves, np.float64)
  return (c[:, :-1] + c[:, 1:]).sum(axis=1) / (2.0 * (c.shape[1] - 1))


def deletion_insertion_auc(
  score_fn,
  images,
  saliency,
  steps: int = DEFAULT_STEPS,
  baseline: str = "blur",
  sigma_fraction: float = DEFAULT_BLUR_SIGMA,
) -> dict:
  """Per image: {'deletion': (B,) AUC, lower is better; 'insertion': (B,) AUC, higher is better}."""
  base = baseline_images(images, baseline, sigma_fraction)
  deletion, insertion = perturbation_curves(score_fn, images, saliency, base, steps)
  return {"deletion": curve_auc(deletion), "insertion": curve_auc(insertion)}
