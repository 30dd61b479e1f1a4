"""`house_numbers`: synthetic SVHN-like scenes with exact digit boxes (NOT SVHN).

Why: SVHN and PASCAL VOC cannot be downloaded here, and cropped SVHN has no boxes, so attention maps could not be
judged against ground truth. A seeded generator made of real parts (real handwriting from scikit-learn's
`load_digits`, real DejaVu / STIX / Computer Modern fonts shipped with matplotlib, real photographs bundled with
scikit-image) gives exact boxes and unlimited test pairs. It measures relative effects, not the paper's numbers.
See docs/trainers.md (house_numbers) and docs/method.md §4.5.

Conventions (shared with `atcon_tf.metrics.localization`):
* boxes are (ymin, xmin, ymax, xmax), the tfds order. `boxes` from `generate_example` are pixel-edge coordinates:
  the box covers pixel rows ymin..ymax-1 and columns xmin..xmax-1; the tfds `objects/bbox` is that box divided by
  the image size. (tfds `voc` stores `(last_pixel_index)/size` as max, i.e. one pixel less on the max side.)
* example `index` of split `split` is drawn from `np.random.default_rng([base_seed + index, split_id, config_id])`,
  so any split can be rebuilt bit for bit and each example on its own.
* handwriting indices, font files and photographs are disjoint between train / validation / test
  (`house_numbers_parts.py`).

The tfds builder over these scenes is `house_numbers_tfds.HouseNumbers`.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image, ImageFilter

from atcon_tf.data import house_numbers_parts as parts

SPLITS = ("train", "validation", "test")
NUM_CLASSES = 10

_SPLIT_ID = {"train": 0, "validation": 1, "test": 2}
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclasses.dataclass(eq=False)
class HouseNumbersConfig(tfds.core.BuilderConfig):
  """Scene parameters; each distinct parameter set must have its own `name` (it names the data folder)."""

  multi: bool = False
  image_size: int = 64
  min_digits: int = 1
  max_digits: int = 1
  max_distractors: int = 2
  handwritten_prob: float = 0.5  # share of digits drawn from load_digits (else a font)
  stroke_prob: float = 0.3  # share of distractors that are random strokes (else letters)
  contrast_floor: float = 90.0  # min |glyph luminance - local background luminance|, grey levels
  max_rotation: float = 12.0
  aspect_jitter: float = 0.2
  jpeg_prob: float = 0.3
  base_seed: int = 0
  num_train: int = 6000
  num_validation: int = 1000
  num_test: int = 2000

  def num_examples(self, split: str) -> int:
    return {"train": self.num_train, "validation": self.num_validation, "test": self.num_test}[split]


SINGLE = HouseNumbersConfig(
  name="single", description="One digit + 0-2 non-digit distractors; label = the digit (SVHN-cropped-like)."
)
MULTI = HouseNumbersConfig(
  name="multi",
  description="1-3 different digits, multi-hot label, one box per digit (VOC-like).",
  multi=True,
  min_digits=1,
  max_digits=3,
  max_distractors=0,
)
CONFIGS = {"single": SINGLE, "multi": MULTI}


def derive_config(
  config: str | HouseNumbersConfig,
  image_size: int | None = None,
  split_sizes: dict | None = None,
  **overrides,
) -> HouseNumbersConfig:
  """A copy of `config` with other size / split sizes, under a name that encodes them (own data folder)."""
  base = CONFIGS[config] if isinstance(config, str) else config
  changes = dict(overrides)
  if image_size is not None:
    changes["image_size"] = int(image_size)
  for split, n in (split_sizes or {}).items():
    changes[f"num_{split}"] = int(n)
  cfg = dataclasses.replace(base, **changes)
  if all(getattr(cfg, k) == getattr(base, k) for k in changes):
    return base  # nothing really changed: keep the registered config and its data folder
  suffix = f"s{cfg.image_size}_n{cfg.num_train}-{cfg.num_validation}-{cfg.num_test}"
  extra = sorted(k for k in overrides if k not in ("name", "description"))
  if extra:
    suffix += "_" + "_".join(f"{k}{getattr(cfg, k)}" for k in extra)
  cfg.name = overrides.get("name", f"{base.name}_{suffix}".replace(".", "p"))
  return cfg


# ------------------------------------------------------------------------------------------------------- rendering


def _transform(rng, alpha: np.ndarray, height: float, cfg) -> np.ndarray:
  """Scale to `height` with +-aspect jitter, rotate; returns the alpha patch (float32, [0,1])."""
  h = max(2, int(round(height)))
  aspect = alpha.shape[1] / alpha.shape[0] * rng.uniform(1 - cfg.aspect_jitter, 1 + cfg.aspect_jitter)
  w = max(2, int(round(h * aspect)))
  im = Image.fromarray(alpha, "F").resize((w, h), Image.BILINEAR)
  im = im.rotate(float(rng.uniform(-cfg.max_rotation, cfg.max_rotation)), Image.BILINEAR, expand=True)
  return np.clip(np.asarray(im, np.float32), 0.0, 1.0)


def _place(rng, patch: np.ndarray, size: int, taken: list, tries: int = 30):
  """Random top-left so the patch fits and its support box misses `taken` boxes; None if no room."""
  ph, pw = patch.shape
  if ph > size or pw > size:
    return None
  rows, cols = np.nonzero(patch > 0.02)
  sup = np.array([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1])
  for _ in range(tries):
    y, x = int(rng.integers(0, size - ph + 1)), int(rng.integers(0, size - pw + 1))
    b = sup + (y, x, y, x)
    if all(b[2] + 1 <= t[0] or t[2] + 1 <= b[0] or b[3] + 1 <= t[1] or t[3] + 1 <= b[1] for t in taken):
      taken.append(b)
      return y, x
  return None


def _colour(rng, l_bg: float, floor: float) -> np.ndarray:
  """RGB whose luminance differs from the local background by >= floor grey levels, random hue."""
  sides = [s for s in ((l_bg + floor, 255.0), (0.0, l_bg - floor)) if s[0] <= s[1]]
  lo, hi = sides[int(rng.integers(len(sides)))]
  lum = rng.uniform(lo, hi)
  v = rng.uniform(-1.0, 1.0, 3).astype(np.float32)
  v -= v @ _LUMA  # zero-luminance direction: changes hue, not brightness
  c = np.clip(lum + rng.uniform(0.0, 110.0) * v / max(np.abs(v).max(), 1e-6), 0, 255)
  if abs(c @ _LUMA - l_bg) < floor:  # clipping ate the contrast: fall back to grey
    c = np.full(3, lum, np.float32)
  return c.astype(np.float32)


def _paste(canvas: np.ndarray, patch: np.ndarray, y: int, x: int, rng, floor: float) -> np.ndarray:
  """Alpha-blend a coloured glyph; returns its full-size alpha (for boxes and tests)."""
  ph, pw = patch.shape
  region = canvas[y : y + ph, x : x + pw]
  lum = region @ _LUMA
  m = patch > 0.3
  l_bg = float((lum * patch)[m].sum() / patch[m].sum()) if m.any() else float(lum.mean())
  a = patch[..., None]
  region[...] = region * (1.0 - a) + _colour(rng, l_bg, floor) * a
  full = np.zeros(canvas.shape[:2], np.float32)
  full[y : y + ph, x : x + pw] = patch
  return full


def _background(rng, name: str, size: int) -> np.ndarray:
  photo = parts.photo(name)
  w, h = photo.size
  side = rng.uniform(0.2, 0.6) * min(w, h)
  x0, y0 = rng.uniform(0, w - side), rng.uniform(0, h - side)
  im = photo.resize((size, size), Image.BILINEAR, box=(x0, y0, x0 + side, y0 + side))
  bg = np.asarray(im, np.float32)
  if rng.random() < 0.5:
    bg = bg[:, ::-1]
  gain = rng.uniform(0.85, 1.15, 3).astype(np.float32)  # mild colour / brightness jitter
  return np.clip(bg * gain, 0, 255)


def _finish(rng, canvas: np.ndarray, jpeg_prob: float) -> np.ndarray:
  """Light blur, Gaussian noise, optional JPEG: hides paste edges."""
  im = Image.fromarray(np.clip(canvas + 0.5, 0, 255).astype(np.uint8), "RGB")
  im = im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 0.8))))
  arr = np.asarray(im, np.float32) + rng.normal(0.0, rng.uniform(2.0, 6.0), canvas.shape).astype(np.float32)
  arr = np.clip(arr + 0.5, 0, 255).astype(np.uint8)
  if rng.random() < jpeg_prob:
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="JPEG", quality=int(rng.integers(60, 96)))
    arr = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
  return arr


def generate_example(
  config: str | HouseNumbersConfig,
  split: str,
  index: int,
  image_size: int | None = None,
  *,
  with_alpha: bool = False,
) -> dict:
  """One scene as numpy, no tfds needed.

  Returns dict: `image` (S,S,3) uint8; `label` int (single) or multi-hot int64 (10,) (multi); `labels` int64 (K,);
  `boxes` float32 (K,4) pixel-edge (ymin,xmin,ymax,xmax) = tight box of alpha > 0.3; `bbox` = boxes / S;
  `meta` (photo, fonts, glyph indices, distractor boxes, seed); with_alpha: `alpha` (K,S,S) per-digit alpha.
  """
  cfg = CONFIGS[config] if isinstance(config, str) else config
  size = int(image_size or cfg.image_size)
  seed = int(cfg.base_seed) + int(index)
  rng = np.random.default_rng([seed, _SPLIT_ID[split], int(cfg.multi)])
  fonts, photos = parts.FONTS[split], parts.PHOTOS[split]
  glyphs, targets, pools = parts.handwriting()
  pool = pools[split]

  photo = photos[int(rng.integers(len(photos)))]
  canvas = np.ascontiguousarray(_background(rng, photo, size))
  k = int(rng.integers(cfg.min_digits, cfg.max_digits + 1))
  digits = rng.choice(NUM_CLASSES, size=k, replace=False)
  h_lo, h_hi = size / 5.0, size / 2.6

  taken, labels, boxes, alphas, sources = [], [], [], [], []
  for d in digits:
    if rng.random() < cfg.handwritten_prob:
      gi = int(rng.choice(pool[targets[pool] == d]))
      src, source = glyphs[gi], ("load_digits", gi)
    else:
      f = fonts[int(rng.integers(len(fonts)))]
      src, source = parts.font_glyph(f, str(int(d))), ("font", f)
    height = rng.uniform(h_lo, h_hi)
    for _ in range(4):  # shrink until it fits among the others
      patch = _transform(rng, src, height, cfg)
      pos = _place(rng, patch, size, taken)
      if pos is not None:
        break
      height = max(h_lo * 0.75, height * 0.85)
    if pos is None:
      if labels:  # no room for another digit: keep the scene with fewer digits
        continue
      raise RuntimeError(f"cannot place a digit in a {size}px scene")
    full = _paste(canvas, patch, *pos, rng, cfg.contrast_floor)
    rows, cols = np.nonzero(full > 0.3)
    boxes.append((rows.min(), cols.min(), rows.max() + 1, cols.max() + 1))
    labels.append(int(d))
    alphas.append(full)
    sources.append(source)

  distractor_boxes = []
  for _ in range(int(rng.integers(0, cfg.max_distractors + 1))):
    height = rng.uniform(h_lo, h_hi)
    if rng.random() < cfg.stroke_prob:
      src, source = parts.stroke(rng, height), ("stroke", None)
    else:
      f = fonts[int(rng.integers(len(fonts)))]
      letters = [c for c in parts.LETTERS if c not in parts.LETTER_EXCLUDE.get(f, "")]
      ch = letters[int(rng.integers(len(letters)))]
      src, source = parts.font_glyph(f, ch), ("letter", f"{f}:{ch}")
    patch = _transform(rng, src, height, cfg)
    pos = _place(rng, patch, size, taken)
    if pos is None:
      continue
    full = _paste(canvas, patch, *pos, rng, cfg.contrast_floor)
    rows, cols = np.nonzero(full > 0.3)
    if rows.size:
      distractor_boxes.append((rows.min(), cols.min(), rows.max() + 1, cols.max() + 1))
    sources.append(source)

  image = _finish(rng, canvas, cfg.jpeg_prob)
  labels_arr = np.asarray(labels, np.int64)
  boxes_arr = np.asarray(boxes, np.float32).reshape(-1, 4)
  if cfg.multi:
    label = np.zeros(NUM_CLASSES, np.int64)
    label[labels_arr] = 1
  else:
    label = int(labels_arr[0])
  out = {
    "image": image,
    "label": label,
    "labels": labels_arr,
    "boxes": boxes_arr,
    "bbox": boxes_arr / size,
    "meta": {
      "seed": seed,
      "split": split,
      "photo": photo,
      "sources": sources,
      "fonts": sorted(
        {s[1] for s in sources if s[0] == "font"} | {s[1].split(":")[0] for s in sources if s[0] == "letter"}
      ),
      "glyph_indices": [s[1] for s in sources if s[0] == "load_digits"],
      "distractor_boxes": np.asarray(distractor_boxes, np.float32).reshape(-1, 4),
    },
  }
  if with_alpha:
    out["alpha"] = np.stack(alphas).astype(np.float32)
  return out
