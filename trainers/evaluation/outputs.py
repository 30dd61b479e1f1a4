"""One model's forward pass over the test images: predictions, maps and consistency, as NumPy.

All maps come from `atcon_tf.maps` (the same code that trains and serves), each wrapped in a `tf.function`:
in TF 2.21 with oneDNN, EAGER gradients through tiny convolutions crashed the process (heap corruption in
conv2d_backprop_filter); the same maps in a graph run fine.
"""

from __future__ import annotations

import numpy as np

from trainers.evaluation import faithfulness


def _map_functions(tapped, size, config):
  """(explain, class_cam, agnostic_cam) as graph functions of preprocessed batches."""
  import tensorflow as tf

  from atcon_tf import maps

  spec = tf.TensorSpec([None, size[0], size[1], 3], tf.float32)

  @tf.function(input_signature=[spec])
  def explain(x):
    e = maps.explain(tapped, x, config=config)
    return {
      "logits": e.logits,
      "probs": e.probabilities,
      "pred": e.class_ids,
      "cam": e.gradcam,
      "guided_backprop": e.guided_backprop,
      "mask": e.mask,
      "consistency": e.consistency,
    }

  @tf.function(input_signature=[spec, tf.TensorSpec([None], tf.int32)])
  def class_cam(x, class_ids):
    return maps.gradcam(tapped, x, class_ids, relu=True).cam

  @tf.function(input_signature=[spec])
  def agnostic_cam(x):
    return maps.gradcam(tapped, x, target=maps.SumOfLogits(), relu=True).cam

  return explain, class_cam, agnostic_cam


def model_outputs(
  loaded,
  ds,
  info,
  preprocessing: str,
  config,
  batch_size: int = 64,
  num_examples: int = 0,
  example_positions=None,
  options=None,
) -> dict:
  """Per-image outputs of `loaded` (a `loading.LoadedModel`) over canonical elements `ds`.

  Keys: logits, probs, pred (top-1), cam (raw Grad-CAM of the top-1 class, the WSD IoU's map), consistency
  (-ATCON cost under `config`), label, size, index, boxes / box_labels (per image); for datasets with boxes
  one (image, class) pair per class present: pair_image, pair_class, pair_cam (ReLU Grad-CAM of that class)
  and agnostic_cam per image (ReLU Grad-CAM of the sum of the logits); input_size; target_layer (the
  Grad-CAM layer used); and `examples`: the images at `example_positions` (positions in `ds`; default the
  first `num_examples`) with their maps, for the grid. With `options` (EvalOptions) that enable it, also the
  deletion / insertion AUC of both maps per image (`faithfulness.KEYS`; NaN after the first
  `options.faithfulness_images`).
  """
  import tensorflow as tf

  import atcon_tf
  from atcon_tf import preprocessing as preprocessing_lib
  from atcon_tf.data.canonical import padded_eval_batches

  classifier, contract = loaded.classifier, loaded.contract
  tapped = atcon_tf.TappedModel(
    classifier, contract.target_layer, multi_label=info.multi_label, logits_layer=contract.logits_layer
  )
  size = tuple(int(s) for s in classifier.input_shape[1:3])
  explain, class_cam, agnostic_cam = _map_functions(tapped, size, config)
  faithful = faithfulness.enabled(options)
  scores = faithfulness.score_function(tapped, size) if faithful else None

  per_image = ("logits", "probs", "pred", "cam", "consistency", "label", "size", "index")
  out = {
    k: [] for k in per_image + ("boxes", "box_labels", "pair_image", "pair_class", "pair_cam", "agnostic_cam")
  }
  out.update({k: [] for k in faithfulness.KEYS})
  wanted = sorted(int(p) for p in example_positions) if example_positions is not None else range(num_examples)
  examples = {k: [] for k in ("image", "label", "pred", "probs", "cam", "guided_backprop", "mask")}
  offset = 0
  batches = padded_eval_batches(ds, batch_size, info.num_classes, info.multi_label)
  for batch in batches.as_numpy_iterator():
    x = preprocessing_lib.apply(batch["image"], preprocessing)
    values = {k: v.numpy() for k, v in explain(x).items()}
    for key in ("logits", "probs", "pred", "cam", "consistency"):
      out[key].append(values[key])
    for key in ("label", "size", "index"):
      out[key].append(batch[key])
    n = len(values["pred"])
    if faithful:
      m = int(np.clip(options.faithfulness_images - offset, 0, n))
      auc = {k: np.full(n, np.nan) for k in faithfulness.KEYS}
      if m:
        got = faithfulness.batch_values(
          scores, x[:m], values["cam"][:m], values["guided_backprop"][:m], values["pred"][:m], options
        )
        for k in faithfulness.KEYS:
          auc[k][:m] = got[k]
      for k in faithfulness.KEYS:
        out[k].append(auc[k])
    keep = [p - offset for p in wanted if offset <= p < offset + n]
    if keep:
      examples["image"].append(batch["image"][keep])
      examples["label"].append(batch["label"][keep])
      for key in ("pred", "probs", "cam", "guided_backprop", "mask"):
        examples[key].append(values[key][keep])
    for i in range(n):
      valid = batch["box_labels"][i] >= 0
      out["boxes"].append(batch["boxes"][i][valid])
      out["box_labels"].append(batch["box_labels"][i][valid])
    if info.has_boxes:
      pair_image, pair_class = [], []
      for i in range(n):
        for c in np.unique(batch["box_labels"][i][batch["box_labels"][i] >= 0]):
          pair_image.append(i)
          pair_class.append(int(c))
      if pair_image:
        cams = class_cam(tf.gather(x, pair_image), tf.constant(pair_class, tf.int32)).numpy()
        out["pair_cam"].extend(list(cams))
        out["pair_image"].extend(offset + i for i in pair_image)
        out["pair_class"].extend(pair_class)
      out["agnostic_cam"].extend(list(agnostic_cam(x).numpy()))
    offset += n
  if offset == 0:
    raise ValueError("The test set is empty.")
  result = {k: np.concatenate(out[k]) for k in per_image + (faithfulness.KEYS if faithful else ())}
  result.update(
    boxes=out["boxes"],
    box_labels=out["box_labels"],
    pair_cam=out["pair_cam"],
    agnostic_cam=out["agnostic_cam"],
    input_size=size,
    target_layer=tapped.target_layer_path,
    pair_image=np.asarray(out["pair_image"], np.int64),
    pair_class=np.asarray(out["pair_class"], np.int64),
    examples={k: np.concatenate(v) if v else None for k, v in examples.items()},
  )
  return result
