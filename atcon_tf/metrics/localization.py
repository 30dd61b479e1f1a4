"""Localization metrics for attention maps, one image at a time (+ batch wrappers). numpy only.

Why: the paper's weakly-supervised-detection IoU (docs/method.md §6.2) has many small, number-changing
details (nearest upsample, median shift, clip at mean + 2 std, strict box inequalities); they live here
once, tested on hand-computed cases. The pointing games are the map-vs-box checks of docs/method.md §6.4.

Box order everywhere: (ymin, xmin, ymax, xmax), the tfds order (the authors' code uses x first).
`image_size` / `map_size`: an int (square) or (height, width).
"""

from __future__ import annotations

import numpy as np


def _hw(size) -> tuple[int, int]:
  return (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))


def _boxes(boxes) -> np.ndarray:
  return np.asarray(boxes, np.float64).reshape(-1, 4)


def upsample_nearest(cam: np.ndarray, size) -> np.ndarray:
  """`cv2.resize(..., INTER_NEAREST)`: destination pixel d takes source floor(d * src/dst)."""
  cam = np.asarray(cam)
  (h, w), (oh, ow) = cam.shape[:2], _hw(size)
  rows = np.minimum(np.floor(np.arange(oh) * (h / oh)).astype(np.int64), h - 1)
  cols = np.minimum(np.floor(np.arange(ow) * (w / ow)).astype(np.int64), w - 1)
  return cam[rows[:, None], cols[None, :]]


def wsd_map(cam_small: np.ndarray, map_size) -> np.ndarray:
  """§6.2 step 3 before the threshold: upsample, min-max, `- median + 0.5`, clip at mean + 2 std
  (ddof=0), relu, `/ max`. A constant (or all-negative after the shift) map gives NaN, as 0/0 does in the
  authors' code."""
  v = upsample_nearest(np.asarray(cam_small, np.float64), map_size)
  with np.errstate(divide="ignore", invalid="ignore"):
    v = (v - v.min()) / (v.max() - v.min())
    u = v - np.median(v) + 0.5
    u = np.minimum(u, np.mean(u) + 2.0 * np.std(u))
    u = np.maximum(u, 0.0)
    return u / np.max(u)


def binarize_cam(cam_small: np.ndarray, map_size, threshold: float = 0.5) -> np.ndarray:
  """§6.2 `B_cam = u > 0.5` (strict); NaN maps give an all-False mask."""
  with np.errstate(invalid="ignore"):
    return wsd_map(cam_small, map_size) > threshold


def boxes_to_mask(boxes_pixels, image_size, map_size=None, strict: bool = True) -> np.ndarray:
  """Union mask of boxes given in pixels of an `image_size` image, on a `map_size` grid (default: same).

  strict=True (§6.2 step 4): coordinates cast to int (truncation), scaled by map/image size, and pixel
  (i, j) is inside iff `ymin < i < ymax and xmin < j < xmax`. strict=False: pixel-edge convention (box
  covers rows ymin..ymax-1), i.e. pixel centre `(i + 0.5, j + 0.5)` inside the closed scaled box (no int
  cast).
  """
  (ih, iw) = _hw(image_size)
  (mh, mw) = _hw(map_size if map_size is not None else image_size)
  b = _boxes(boxes_pixels)
  if strict:
    b = np.trunc(b)
  b = b * np.array([mh / ih, mw / iw, mh / ih, mw / iw])
  i = np.arange(mh, dtype=np.float64)[None, :, None]
  j = np.arange(mw, dtype=np.float64)[None, None, :]
  y0, x0, y1, x1 = (b[:, k, None, None] for k in range(4))
  if strict:
    inside = (y0 < i) & (i < y1) & (x0 < j) & (j < x1)
  else:
    inside = (y0 <= i + 0.5) & (i + 0.5 <= y1) & (x0 <= j + 0.5) & (j + 0.5 <= x1)
  return inside.any(axis=0) if len(b) else np.zeros((mh, mw), bool)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
  """Pixel IoU `|a & b| / |a | b|`; NaN when both are empty (0/0, as the authors' numpy code)."""
  a, b = np.asarray(a, bool), np.asarray(b, bool)
  union = np.count_nonzero(a | b)
  return float(np.count_nonzero(a & b) / union) if union else float("nan")


def wsd_iou(cam_small: np.ndarray, boxes_pixels, image_size, map_size=None, threshold: float = 0.5) -> float:
  """§6.2 steps 3-5: IoU of the binarized map with the strict-inequality box mask, both on `map_size`
  (default `image_size`; the paper used 256 with boxes in original-image pixels). Pass the boxes of the class
  the paper picks (the predicted class if it is in the image). For exact VOC parity pass `voc_pixel_boxes`."""
  map_size = image_size if map_size is None else map_size
  return mask_iou(
    binarize_cam(cam_small, map_size, threshold),
    boxes_to_mask(boxes_pixels, image_size, map_size, strict=True),
  )


def voc_pixel_boxes(bbox_normalized, image_size) -> np.ndarray:
  """Undo tfds `voc`'s `(v - 1) / size`: the original 1-based VOC integers the authors' code casts and
  scales."""
  (h, w) = _hw(image_size)
  return np.rint(_boxes(bbox_normalized) * np.array([h, w, h, w])) + 1.0


def pointing_game_hit(saliency: np.ndarray, boxes_pixels, image_size=None, tolerance: float = 0.0) -> bool:
  """Hit iff the centre of the map's argmax cell (first maximum, row-major), mapped to image pixels, lies in
  one of `boxes_pixels` (pixel-edge coords, grown by `tolerance`). A constant or non-finite map is a miss."""
  s = np.asarray(saliency, np.float64)
  if not np.all(np.isfinite(s)) or s.max() == s.min():
    return False
  (h, w) = s.shape
  (ih, iw) = _hw(image_size if image_size is not None else s.shape)
  r, c = np.unravel_index(np.argmax(s), s.shape)
  y, x = (r + 0.5) * ih / h, (c + 0.5) * iw / w
  b = _boxes(boxes_pixels)
  return bool(
    np.any(
      (b[:, 0] - tolerance <= y)
      & (y <= b[:, 2] + tolerance)
      & (b[:, 1] - tolerance <= x)
      & (x <= b[:, 3] + tolerance)
    )
  )


def energy_pointing_game(saliency: np.ndarray, boxes_pixels, image_size=None) -> float:
  """Share of the positive map mass inside the boxes (Score-CAM's energy-based pointing game). The map is
  nearest-upsampled to `image_size` first; boxes use the pixel-edge convention. No positive mass -> 0."""
  s = np.asarray(saliency, np.float64)
  size = image_size if image_size is not None else s.shape
  s = np.maximum(upsample_nearest(s, size), 0.0)
  total = s.sum()
  if not np.isfinite(total) or total <= 0:
    return 0.0
  return float(s[boxes_to_mask(boxes_pixels, size, strict=False)].sum() / total)


def wsd_iou_batch(cams_small, boxes_list, image_size, map_size=None, threshold: float = 0.5) -> np.ndarray:
  """`wsd_iou` per image; `image_size`: one size for all, or an (N, 2) array of (height, width). Average the
  result with np.nanmean (pandas' mean in the authors' postproc skips NaN)."""
  if np.ndim(image_size) == 2:
    sizes = [tuple(s) for s in np.asarray(image_size)]
  else:
    sizes = [image_size] * len(cams_small)
  return np.array([wsd_iou(c, b, s, map_size, threshold) for c, b, s in zip(cams_small, boxes_list, sizes)])


def pointing_game_batch(saliencies, boxes_list, image_size=None, tolerance: float = 0.0) -> np.ndarray:
  """Boolean hits, one per (map, boxes of its class) pair; the mean is the pointing-game accuracy."""
  return np.array(
    [pointing_game_hit(s, b, image_size, tolerance) for s, b in zip(saliencies, boxes_list)], bool
  )


def energy_pointing_game_batch(saliencies, boxes_list, image_size=None) -> np.ndarray:
  """`energy_pointing_game` per (map, boxes) pair."""
  return np.array(
    [energy_pointing_game(s, b, image_size) for s, b in zip(saliencies, boxes_list)], np.float64
  )
