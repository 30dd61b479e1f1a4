"""Attention maps drawn over their input images, and written as PNG files."""

import os

import numpy as np


def _jet(values):
  """Jet colormap of values in [0, 1] -> uint8 RGB (no matplotlib needed)."""
  v = np.clip(values, 0.0, 1.0)[..., None]
  r = np.clip(1.5 - np.abs(4.0 * v - 3.0), 0, 1)
  g = np.clip(1.5 - np.abs(4.0 * v - 2.0), 0, 1)
  b = np.clip(1.5 - np.abs(4.0 * v - 1.0), 0, 1)
  return (np.concatenate([r, g, b], axis=-1) * 255).astype(np.uint8)


def overlay(image, attention, alpha=0.5, weighted=False):
  """RGB uint8 image (H, W, 3) + map in [0, 1] (any size) -> RGB uint8 overlay (H, W, 3).

  weighted=True blends each pixel by its map value (sparse maps such as guided backprop
  keep the image visible where the map is zero).
  """
  from PIL import Image

  image = np.asarray(image)
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, axis=-1)
  height, width = image.shape[:2]
  resized = Image.fromarray(np.asarray(attention, np.float32), mode="F").resize(
    (width, height), Image.BILINEAR
  )
  values = np.clip(np.asarray(resized), 0.0, 1.0)
  heat = _jet(values).astype(np.float32)
  weight = alpha * (values[..., None] if weighted else 1.0)
  blended = (1.0 - weight) * image[..., :3].astype(np.float32) + weight * heat
  return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def write_overlays(image_path, result, index, out_dir):
  """Writes OUT_DIR/<stem>_gradcam.png and <stem>_guided_backprop.png; returns the paths."""
  from PIL import Image

  os.makedirs(out_dir, exist_ok=True)
  with Image.open(image_path) as img:
    rgb = np.asarray(img.convert("RGB"))
  stem = os.path.splitext(os.path.basename(image_path))[0]
  written = []
  for key, weighted in (("gradcam", False), ("guided_backprop", True)):
    if key not in result:
      continue
    path = os.path.join(out_dir, f"{stem}_{key}.png")
    Image.fromarray(
      overlay(rgb, result[key][index], alpha=0.5 if not weighted else 0.9, weighted=weighted)
    ).save(path)
    written.append(path)
  return written
