"""Pictures of attention maps: colormap overlays, PNG grids and a TensorBoard callback.

* `attention_panels(model, x)`: Grad-CAM (ReLU'd, the usual display map), guided-backprop magnitude
  `G = sum_c |GB|` and the ATCON soft mask `sigmoid(w (G - sigma))` for the top-1 (or given) classes, as
  numpy. Composed by `maps.explain`, as the served maps and evaluation are, with the model's own loss settings.
* `overlay(image, heatmap)`: a heatmap (any size) min-max scaled, upsampled and blended on the image with a
  matplotlib colormap. `panel_rows(images, panels)`: per example [image, Grad-CAM, guided backprop, mask].
* `save_grid(path, rows, ...)`: a titled PNG grid (matplotlib, no pyplot state); `grid_array(rows)`: the same
  tiles as one uint8 image (for `tf.summary.image`).
* `AttentionMapCallback`: every epoch (or every n), writes those panels for a fixed set of images to TensorBoard
  image summaries (`tf.summary.image`), and optionally a PNG per epoch. Scalars come from
  `keras.callbacks.TensorBoard`.

Only NumPy/matplotlib here besides `maps.explain`; nothing imports the trainers or serving.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from atcon_tf import loading
from atcon_tf import maps
from atcon_tf import tapped_model
from atcon_tf.losses.consistency import ConsistencyConfig

COLUMNS = ("image", "Grad-CAM", "guided backprop", "ATCON mask")


def read_summaries(log_dir) -> list:
  """(tag, step, plugin, value) of every summary in the event files under `log_dir` (for tests and checks).
  value: a float for scalars, the list of PNG bytes for images."""
  from tensorflow.core.util import event_pb2

  found = []
  for root, _, files in os.walk(os.fspath(log_dir)):
    for name in sorted(files):
      if "tfevents" not in name:
        continue
      for record in tf.data.TFRecordDataset(os.path.join(root, name)).as_numpy_iterator():
        event = event_pb2.Event.FromString(record)
        for v in event.summary.value:
          plugin = v.metadata.plugin_data.plugin_name
          tensor = tf.make_ndarray(v.tensor)
          value = float(tensor) if plugin == "scalars" else list(tensor[2:]) if plugin == "images" else tensor
          found.append((v.tag, int(event.step), plugin, value))
  return found


def _normalize(heatmap) -> np.ndarray:
  h = np.asarray(heatmap, np.float64)
  if not np.all(np.isfinite(h)):
    h = np.nan_to_num(h, nan=0.0, posinf=0.0, neginf=0.0)
  lo, hi = h.min(), h.max()
  return (h - lo) / (hi - lo) if hi > lo else np.zeros_like(h)


def _resize(heatmap01: np.ndarray, size) -> np.ndarray:
  h, w = size
  if heatmap01.shape == (h, w):
    return heatmap01
  return tf.image.resize(heatmap01[..., None].astype(np.float32), (h, w), method="bilinear").numpy()[..., 0]


def colorize(heatmap, cmap: str = "jet", size=None) -> np.ndarray:
  """Heatmap -> uint8 RGB with a matplotlib colormap (min-max scaled; constant maps give the colormap's 0)."""
  import matplotlib

  h = _normalize(heatmap)
  if size is not None:
    h = _resize(h, size)
  return (matplotlib.colormaps[cmap](h)[..., :3] * 255.0 + 0.5).astype(np.uint8)


def as_rgb(image) -> np.ndarray:
  """uint8 (H, W, 3) from uint8/float images (floats in [0, 1] or [0, 255]) or grey (H, W[, 1])."""
  img = np.asarray(image)
  if img.ndim == 2:
    img = img[..., None]
  if img.shape[-1] == 1:
    img = np.repeat(img, 3, axis=-1)
  if img.dtype != np.uint8:
    img = img.astype(np.float64)
    if img.max() <= 1.0:
      img = img * 255.0
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
  return img


def overlay(image, heatmap, cmap: str = "jet", alpha: float = 0.5) -> np.ndarray:
  """Blend the colourized heatmap (upsampled to the image) on the image: uint8 (H, W, 3)."""
  img = as_rgb(image)
  colour = colorize(heatmap, cmap, size=img.shape[:2]).astype(np.float64)
  return np.clip(np.rint((1.0 - alpha) * img + alpha * colour), 0, 255).astype(np.uint8)


def attention_panels(model, x, class_ids=None, mask_intensity: float | None = None) -> dict:
  """Maps for a batch of *preprocessed* inputs x, as numpy, composed by `maps.explain`.

  `model`: a `TappedModel`, an `ATCONModel`, a Keras classifier, a `.keras` file or a run folder.
  `class_ids`: None (top-1) or (B,) ids, -1 meaning top-1 for that example.
  `mask_intensity`: None = the model's own (see `resolve`).
  Returns gradcam (B, h, w, ReLU'd), gradcam_raw (no ReLU, as in the loss), guided_backprop (B, H, W) = sum_c
  |GB|, mask (B, H, W) = the ATCON soft mask, mask_logits, class_ids (B,), probabilities (B, C) and
  consistency (B,) (minus the cost of the model's loss: higher = more consistent).
  """
  tapped, config = resolve(model, mask_intensity)
  x = tf.convert_to_tensor(x, tf.float32)
  if class_ids is None:
    class_ids = tf.fill(tf.shape(x)[:1], -1)
  out = _panels_fn(tapped, config)(x, tf.cast(class_ids, tf.int32))
  return {k: v.numpy() for k, v in out.items()}


def _panels_fn(tapped, config):
  """The maps as one tf.function per (TappedModel, loss settings), cached on the TappedModel.

  Graph mode on purpose: in TF 2.21 with oneDNN, EAGER gradients through small convolutions (e.g. 4 filters at
  16 px) crashed the process with heap corruption in conv2d_backprop_filter; the same maps in a tf.function
  (pruned graph, the path training uses) run fine.
  """
  cache = getattr(tapped, "_atcon_panels_fns", None)
  if cache is None:
    cache = tapped._atcon_panels_fns = {}
  fn = cache.get(config)
  if fn is not None:
    return fn

  @tf.function(reduce_retracing=True)
  def panels(x, class_ids):
    explained = maps.explain(tapped, x, class_ids, config)
    return {
      "gradcam": tf.nn.relu(explained.gradcam),
      "gradcam_raw": explained.gradcam,
      "guided_backprop": explained.guided_backprop,
      "mask": explained.mask,
      "mask_logits": explained.mask_logits,
      "class_ids": explained.class_ids,
      "probabilities": explained.probabilities,
      "consistency": explained.consistency,
    }

  cache[config] = panels
  return panels


def resolve(model, mask_intensity: float | None = None):
  """(TappedModel, ConsistencyConfig) to draw `model` with: pictures show the mask it is trained with.

  Loss settings: an ATCONModel's `consistency_config`, else those its recorded contract names (a saved
  ATCONModel or a run folder), else `ConsistencyConfig()` (the authors' defaults, `choices.MASK_INTENSITY`).
  `mask_intensity`, if given, replaces the mask's w.
  """
  config = getattr(model, "consistency_config", None)
  if isinstance(model, tapped_model.TappedModel):
    tapped = model
  else:
    loaded = loading.load_model(model)
    tapped = _tapped_for(model, loaded)
    if config is None and _recorded(loaded.contract):
      config = ConsistencyConfig(**loaded.contract.consistency_settings())
  config = config or ConsistencyConfig()
  if mask_intensity is not None:
    config = config._replace(mask_intensity=float(mask_intensity))
  return tapped, config


def _recorded(contract) -> bool:
  """True for a contract an ATCONModel recorded (it always names its Grad-CAM layer)."""
  return contract.target_layer is not None


def _tapped_for(model, loaded):
  tapped = getattr(model, "tapped", None)  # An ATCONModel's own: same layer and head, and its cached maps.
  if isinstance(tapped, tapped_model.TappedModel) and tapped.model is loaded.classifier:
    return tapped
  contract = loaded.contract
  return tapped_model.TappedModel(
    loaded.classifier,
    contract.target_layer,
    multi_label=contract.multi_label if _recorded(contract) else None,
  )


def as_tapped(model) -> tapped_model.TappedModel:
  """A `TappedModel` as is; anything else as `loading.load_model` reads it (ATCONModel, classifier,
  model file, run folder), at its recorded Grad-CAM layer and with its recorded head."""
  if isinstance(model, tapped_model.TappedModel):
    return model
  return _tapped_for(model, loading.load_model(model))


def panel_rows(images, panels: dict, cmap: str = "jet") -> list:
  """Per example: [image, Grad-CAM overlay, guided-backprop magnitude (grey), mask overlay] (uint8 RGB)."""
  rows = []
  for i, image in enumerate(images):
    img = as_rgb(image)
    gb = colorize(panels["guided_backprop"][i], "gray", size=img.shape[:2])
    rows.append(
      [
        img,
        overlay(img, panels["gradcam"][i], cmap),
        gb,
        overlay(img, panels["mask"][i], "viridis", alpha=0.6),
      ]
    )
  return rows


def grid_array(rows, pad: int = 2, scale: int = 1) -> np.ndarray:
  """Tiles rows of equal-size uint8 RGB images into one image (white padding), optionally upscaled."""
  tiles = [
    [np.kron(as_rgb(t), np.ones((scale, scale, 1), np.uint8)) if scale > 1 else as_rgb(t) for t in row]
    for row in rows
  ]
  h = max(t.shape[0] for row in tiles for t in row)
  w = max(t.shape[1] for row in tiles for t in row)
  ncols = max(len(row) for row in tiles)
  out = np.full((len(tiles) * (h + pad) + pad, ncols * (w + pad) + pad, 3), 255, np.uint8)
  for r, row in enumerate(tiles):
    for c, t in enumerate(row):
      y, x = pad + r * (h + pad), pad + c * (w + pad)
      out[y : y + t.shape[0], x : x + t.shape[1]] = t
  return out


def save_grid(
  path, rows, column_titles=COLUMNS, row_titles=None, title=None, tile_inches: float = 1.6
) -> str:
  """Writes a titled PNG grid of uint8 RGB tiles (matplotlib `Figure`, Agg canvas); returns the path."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  nrows, ncols = len(rows), max(len(r) for r in rows)
  fig = Figure(figsize=(tile_inches * ncols, tile_inches * nrows + (0.4 if title else 0.0)), dpi=100)
  FigureCanvasAgg(fig)
  axes = fig.subplots(nrows, ncols, squeeze=False)
  for r, row in enumerate(rows):
    for c in range(ncols):
      ax = axes[r][c]
      ax.set_xticks([])
      ax.set_yticks([])
      if c < len(row):
        ax.imshow(as_rgb(row[c]), interpolation="nearest")
      else:
        ax.axis("off")
      if r == 0 and column_titles and c < len(column_titles):
        ax.set_title(column_titles[c], fontsize=8)
      if c == 0 and row_titles:
        ax.set_ylabel(row_titles[r], fontsize=7)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
  fig.savefig(os.fspath(path), format="png")
  return os.fspath(path)


def row_titles_for(panels: dict, labels=None, class_names=None) -> list:
  """'pred 3 (0.91) / true 3' style captions."""
  names = class_names
  titles = []
  for i, c in enumerate(panels["class_ids"]):
    name = names[c] if names is not None and c < len(names) else str(int(c))
    text = f"pred {name} ({panels['probabilities'][i][c]:.2f})"
    if labels is not None:
      y = np.asarray(labels[i])
      if y.ndim == 0:
        text += f"\ntrue {names[int(y)] if names is not None else int(y)}"
      else:
        true = [names[k] if names is not None else str(k) for k in np.flatnonzero(y > 0)]
        text += "\ntrue " + ",".join(true)
    titles.append(text)
  return titles


class AttentionMapCallback(keras.callbacks.Callback):
  """Logs Grad-CAM / guided-backprop / mask overlays of fixed images at the end of every n-th epoch.

  images: uint8 (B, H, W, 3) as shown; inputs: the same images preprocessed for the model.
  Writes image summaries `attention/grid`, `attention/gradcam`, `attention/guided_backprop`,
  `attention/mask` under `log_dir` (TensorBoard's "images" tab) and, if `png_dir`, `epoch_XXX.png` there.
  Works with an ATCONModel (its Grad-CAM layer and loss settings; `mask_intensity` None = its own) or a plain
  Keras classifier (the default settings).
  """

  def __init__(
    self,
    images,
    inputs,
    log_dir,
    every_n_epochs: int = 1,
    mask_intensity: float | None = None,
    png_dir=None,
    labels=None,
    class_names=None,
    max_images: int = 8,
  ):
    super().__init__()
    self.images = np.asarray(images)[:max_images]
    self.inputs = np.asarray(inputs, np.float32)[:max_images]
    self.labels = None if labels is None else np.asarray(labels)[:max_images]
    self.class_names = class_names
    self.log_dir = os.fspath(log_dir)
    self.every_n_epochs = max(1, int(every_n_epochs))
    self.mask_intensity = mask_intensity
    self.png_dir = None if png_dir is None else os.fspath(png_dir)
    self._writer = None

  def write(self, step: int):
    """Computes the panels with the current weights and writes them at `step`."""
    panels = attention_panels(self.model, self.inputs, mask_intensity=self.mask_intensity)
    rows = panel_rows(self.images, panels)
    if self._writer is None:
      self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "attention"))
    with self._writer.as_default():
      tf.summary.image(
        "attention/grid",
        grid_array(rows)[None],
        step=step,
        description="per row: image, Grad-CAM, guided backprop |GB|, ATCON mask",
      )
      for name, col in (("gradcam", 1), ("guided_backprop", 2), ("mask", 3)):
        images = np.stack([as_rgb(r[col]) for r in rows])
        tf.summary.image(f"attention/{name}", images, step=step, max_outputs=len(rows))
    self._writer.flush()
    if self.png_dir:
      save_grid(
        os.path.join(self.png_dir, f"epoch_{step:03d}.png"),
        rows,
        row_titles=row_titles_for(panels, self.labels, self.class_names),
        title=f"epoch {step}",
      )
    return panels

  def on_epoch_end(self, epoch, logs=None):
    if (epoch + 1) % self.every_n_epochs == 0:
      self.write(epoch + 1)

  def on_train_end(self, logs=None):
    if self._writer is not None:
      self._writer.close()
      self._writer = None
