"""One value per image (or per (image, class) pair) from a model's outputs: what the statistics resample.

Keeping the values per image, in the test set's order, is what lets two models be compared image by image.
"""

from __future__ import annotations

import numpy as np

from trainers.evaluation import faithfulness


def correctness(out: dict, multi_label: bool) -> np.ndarray:
  """1.0 where the top-1 class is right (multi-label: is one of the image's labels), else 0.0."""
  labels, pred = out["label"], out["pred"]
  if multi_label:
    correct = labels[np.arange(len(pred)), pred] > 0
  else:
    correct = pred == labels
  return correct.astype(np.float64)


def centre_hit(boxes, size) -> bool:
  """The 'centre point' baseline: is the image centre inside a box (pixel-edge boxes, closed)?"""
  y, x = size[0] / 2.0, size[1] / 2.0
  b = np.asarray(boxes, np.float64).reshape(-1, 4)
  return bool(np.any((b[:, 0] <= y) & (y <= b[:, 2]) & (b[:, 1] <= x) & (x <= b[:, 3])))


def wsd_iou(out: dict, correct: np.ndarray, info, seed: int = 20) -> np.ndarray:
  """§6.2 IoU per image (NaN without boxes) of the raw top-1 Grad-CAM with the boxes of the predicted class;
  a misclassified image takes the boxes of a random class present (the authors' random.seed(20))."""
  from atcon_tf.data import box_conventions
  from atcon_tf.metrics import localization

  rng = np.random.default_rng(seed)
  pred = out["pred"]
  iou = np.full(len(pred), np.nan)
  for i in range(len(pred)):
    boxes, box_labels = out["boxes"][i], out["box_labels"][i]
    if len(boxes) == 0:
      continue
    c = int(pred[i]) if correct[i] else int(box_labels[rng.integers(len(box_labels))])
    size = tuple(int(v) for v in out["size"][i])
    iou[i] = localization.wsd_iou(
      out["cam"][i],
      box_conventions.wsd_boxes(boxes[box_labels == c], size, info.box_convention),
      size,
      map_size=out["input_size"],
    )
  return iou


def pointing_games(out: dict, info) -> dict:
  """Per (image, class present) pair: pointing-game hit, energy share, and the three baselines' hits."""
  from atcon_tf.data import box_conventions
  from atcon_tf.metrics import localization

  hits, energy, centre, random_share, agnostic = [], [], [], [], []
  for cam, i, c in zip(out["pair_cam"], out["pair_image"], out["pair_class"]):
    size = tuple(int(v) for v in out["size"][i])
    boxes = box_conventions.edge_boxes(out["boxes"][i][out["box_labels"][i] == c], size, info.box_convention)
    hits.append(localization.pointing_game_hit(cam, boxes, size))
    energy.append(localization.energy_pointing_game(cam, boxes, size))
    centre.append(centre_hit(boxes, size))
    random_share.append(localization.boxes_to_mask(boxes, size, strict=False).mean())  # expected hit rate
    agnostic.append(localization.pointing_game_hit(out["agnostic_cam"][i], boxes, size))
  as_array = lambda v: np.asarray(v, np.float64)  # noqa: E731
  return {
    "pointing_game": as_array(hits),
    "energy_pointing_game": as_array(energy),
    "pointing_centre_baseline": as_array(centre),
    "pointing_random_baseline": as_array(random_share),
    "pointing_agnostic_baseline": as_array(agnostic),
  }


def per_image_metrics(out: dict, info, seed: int = 20) -> dict:
  """correct and consistency per image; with boxes also wsd_iou per image and the pointing games per pair."""
  per = {
    "correct": correctness(out, info.multi_label),
    "consistency": np.asarray(out["consistency"], np.float64),
  }
  for key in faithfulness.KEYS:  # deletion / insertion AUC (NaN beyond the images it ran on)
    if key in out:
      per[key] = np.asarray(out[key], np.float64)
  if info.has_boxes:
    per["wsd_iou"] = wsd_iou(out, per["correct"], info, seed)
    per.update(pointing_games(out, info))
  return per
