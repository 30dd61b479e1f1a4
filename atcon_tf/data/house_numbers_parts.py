"""The real parts `house_numbers` scenes are drawn from, split by split, and the random strokes.

Handwriting (scikit-learn's `load_digits`), font files (matplotlib's DejaVu / STIX / Computer Modern) and
photographs (bundled with scikit-image) are disjoint between train / validation / test, so a test scene is made
of parts no training scene used. Glyphs and strokes are alpha masks (float32, [0, 1]) cut to their tight box.
"""

from __future__ import annotations

import functools
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Photographs that load from the scikit-image wheel without pooch/download. `clock`, `text`, `page`, `logo` are left
# out (numerals / lettering); `cat` is the same photo as `chelsea`.
PHOTOS = {
  "train": ("astronaut", "coffee", "rocket", "immunohistochemistry", "brick", "camera", "grass", "moon"),
  "validation": ("chelsea", "gravel", "cell"),
  "test": ("hubble_deep_field", "retina", "coins"),
}
# Font files from matplotlib's `mpl-data/fonts/ttf`; the Display / NonUni / Siz* files have no digit glyphs.
FONTS = {
  "train": (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSansMono.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "cmr10.ttf",
    "cmss10.ttf",
  ),
  "validation": (
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "STIXGeneralItalic.ttf",
    "cmtt10.ttf",
  ),
  "test": (
    "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "STIXGeneralBolIta.ttf",
    "cmb10.ttf",
    "cmti10.ttf",
  ),
}
# Non-digit distractors: digit look-alikes (docs/method.md §4.5) plus plain letters.
LETTERS = "SBOZIlAEHKPRXaeg"
LETTER_EXCLUDE = {
  "cmtt10.ttf": "lI"
}  # typewriter l / I are drawn like the digit 1: they would be label noise
# Fractions of the 1,797 `load_digits` images given to train / validation / test (a fixed permutation).
_GLYPH_FRACTIONS = (0.6, 0.15, 0.25)


@functools.lru_cache(maxsize=None)
def photo(name: str) -> Image.Image:
  import skimage.data

  arr = getattr(skimage.data, name)()
  if arr.ndim == 2:
    arr = np.repeat(arr[..., None], 3, axis=-1)
  return Image.fromarray(np.ascontiguousarray(arr[..., :3]).astype(np.uint8), "RGB")


@functools.lru_cache(maxsize=None)
def handwriting():
  """(alpha glyphs, labels, split pools). 8x8 -> x5 bicubic on a zero border, so strokes are smooth."""
  from sklearn.datasets import load_digits

  d = load_digits()
  glyphs = []
  for img in d.images:
    a = np.pad(img.astype(np.float32) / 16.0, 1)
    a = np.asarray(Image.fromarray(a, "F").resize((50, 50), Image.BICUBIC))
    a = np.clip(1.25 * a / max(a.max(), 1e-6), 0.0, 1.0)
    glyphs.append(_tight(np.where(a > 0.05, a, 0.0)))
  perm = np.random.default_rng(1797).permutation(len(glyphs))
  n_tr, n_va = int(_GLYPH_FRACTIONS[0] * len(perm)), int(_GLYPH_FRACTIONS[1] * len(perm))
  pools = {
    "train": np.sort(perm[:n_tr]),
    "validation": np.sort(perm[n_tr : n_tr + n_va]),
    "test": np.sort(perm[n_tr + n_va :]),
  }
  return glyphs, d.target.astype(np.int64), pools


def glyph_pool(split: str) -> np.ndarray:
  """`load_digits` indices used by `split` (disjoint between splits)."""
  return handwriting()[2][split]


def font_path(font_file: str) -> str:
  import matplotlib

  return os.path.join(matplotlib.get_data_path(), "fonts", "ttf", font_file)


@functools.lru_cache(maxsize=None)
def font_glyph(font_file: str, char: str) -> np.ndarray:
  font = ImageFont.truetype(font_path(font_file), 64)
  im = Image.new("L", (160, 160))
  ImageDraw.Draw(im).text((40, 30), char, font=font, fill=255)
  return _tight(np.asarray(im, np.float32) / 255.0)


def _tight(a: np.ndarray, thr: float = 0.0) -> np.ndarray:
  rows, cols = np.nonzero(a > thr)
  return np.ascontiguousarray(a[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1], np.float32)


def stroke(rng, height: float) -> np.ndarray:
  """A random curvy polyline: a non-digit distractor with stroke-like edges."""
  s = max(4, int(round(height))) * 2
  im = Image.new("L", (s, s))
  pts = [tuple(p) for p in rng.uniform(0.1 * s, 0.9 * s, size=(int(rng.integers(2, 5)), 2))]
  ImageDraw.Draw(im).line(pts, fill=255, width=max(2, s // 8), joint="curve")
  im = im.resize((s // 2, s // 2), Image.BILINEAR)
  a = np.asarray(im, np.float32) / 255.0
  return _tight(a) if a.max() > 0 else np.ones((2, 2), np.float32)
