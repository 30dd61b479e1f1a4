"""Normalized dataset boxes -> the pixel boxes each localization metric expects.

`DatasetInfo.box_convention` says how a dataset's normalized boxes were made: 'edge' (pixel-edge / size,
house_numbers) or 'voc' (tfds voc's (pixel - 1) / size); the metrics need exact pixels back.
"""

from __future__ import annotations

import numpy as np


def edge_boxes(bbox_normalized, size, convention: str) -> np.ndarray:
  """Normalized boxes -> pixel-edge boxes in original-image pixels (box covers rows ymin..ymax-1).

  Used by the pointing games (`atcon_tf.metrics.localization`, pixel-edge convention)."""
  h, w = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
  b = np.asarray(bbox_normalized, np.float64).reshape(-1, 4) * np.array([h, w, h, w])
  if convention == "voc":  # tfds voc: (first_pixel - 1)/size ... (last_pixel - 1)/size, 1-based VOC pixels
    b = np.rint(b) + np.array([0.0, 0.0, 1.0, 1.0])
  return b


def wsd_boxes(bbox_normalized, size, convention: str) -> np.ndarray:
  """Boxes for `metrics.wsd_iou` (the §6.2 strict rule `ymin < i < ymax`).

  voc: the original 1-based VOC integers (`voc_pixel_boxes`): exact parity with the authors' evaluation.
  edge: (ymin - 1, xmin - 1, ymax, xmax), so the strict rule covers exactly the box's pixels.
  """
  if convention == "voc":
    from atcon_tf.metrics.localization import voc_pixel_boxes

    return voc_pixel_boxes(bbox_normalized, size)
  return edge_boxes(bbox_normalized, size, "edge") - np.array([1.0, 1.0, 0.0, 0.0])
