"""The PNG grid: per example the image, then each model's Grad-CAM, guided backprop and ATCON mask.

Draws the maps `outputs.model_outputs` kept for its first images (no second pass through the models);
`atcon_tf.visualize` does the colouring and overlays.
"""

from __future__ import annotations

import numpy as np


def _panels(examples: dict) -> dict:
  """The `visualize.attention_panels` layout of the kept maps (display Grad-CAM = ReLU of the raw map)."""
  return {
    "gradcam": np.maximum(examples["cam"], 0.0),
    "guided_backprop": examples["guided_backprop"],
    "mask": examples["mask"],
    "class_ids": examples["pred"],
    "probabilities": examples["probs"],
  }


def save_examples_grid(outputs: dict, info, path: str, num_images: int | None = None):
  """Writes the grid of `outputs` ({model name: model_outputs(...)}, same images); returns the path or
  None (no kept images)."""
  from atcon_tf import visualize

  examples = [out["examples"] for out in outputs.values()]
  if not examples or examples[0]["image"] is None:
    return None
  images, labels = examples[0]["image"], examples[0]["label"]
  if num_images is not None:
    images, labels = images[:num_images], labels[:num_images]
  rows = [[visualize.as_rgb(img)] for img in images]
  titles = ["image"]
  captions = [""] * len(images)
  for name, kept in zip(outputs, examples):
    panels = {k: v[: len(images)] for k, v in _panels(kept).items()}
    for r, row in enumerate(visualize.panel_rows(images, panels)):
      rows[r].extend(row[1:])
    short = name.split(" (")[0][:14]
    titles += [f"{short}\nGrad-CAM", f"{short}\nguided backprop", f"{short}\nmask"]
    for r, caption in enumerate(visualize.row_titles_for(panels, None, info.class_names)):
      captions[r] += ("\n" if captions[r] else "") + caption.replace("pred", short[:10] + ":")
  truth = visualize.row_titles_for(
    {"class_ids": np.zeros(len(images), int), "probabilities": np.ones((len(images), 1))},
    labels,
    info.class_names,
  )
  captions = [c + "\n" + t.split("\n")[-1] for c, t in zip(captions, truth)]
  return visualize.save_grid(
    path,
    rows,
    column_titles=titles,
    row_titles=captions,
    title=f"{info.name}: Grad-CAM / guided backprop / ATCON mask",
  )
