"""The served signatures: names, input keys, and the `keras.export.ExportArchive` that holds them.

- `serving_default`:      images (B, H, W, C)            -> probabilities, class_ids, gradcam,
                                                              guided_backprop, consistency
- `explain_class`:        images, class_ids (B,) int32    -> same; class_ids -1 = top-1
- `predict`:              images                          -> probabilities, class_ids
- `maps`:                 images                          -> probabilities, class_ids, gradcam,
                                                              guided_backprop (no consistency: one pass fewer)
- `predict_bytes`:        images_bytes (B,) string        -> as serving_default
- `explain_class_bytes`:  images_bytes, class_ids         -> as explain_class
- `predict_only_bytes`:   images_bytes                    -> probabilities, class_ids (no maps)
- `overlays_bytes`:       images_bytes                    -> probabilities, class_ids, consistency,
                                                              gradcam_bytes, guided_backprop_bytes (PNGs)
Every `*_bytes` input has its header size checked against `max_pixels` before decoding.
SavedModel signatures cannot have optional inputs (TF Serving requires every input of a
signature), hence the separate `explain_class*` signatures for an explicit class.
The preprocessing of the model's contract runs inside every graph.
"""

SIGNATURES = (
  "serving_default",
  "explain_class",
  "predict",
  "maps",
  "predict_bytes",
  "explain_class_bytes",
  "predict_only_bytes",
  "overlays_bytes",
)
BYTES_SIGNATURES = tuple(s for s in SIGNATURES if s.endswith("_bytes"))
IMAGES_KEY = "images"
BYTES_KEY = "images_bytes"
CLASS_IDS_KEY = "class_ids"
INPUT_DTYPES = ("float32", "uint8")


def build_archive(tapped, contract, channels, input_dtype, num_classes, max_pixels):
  """A `keras.export.ExportArchive` with the signatures above, computed as `serving.graphs` says."""
  import keras
  import tensorflow as tf

  from atcon_tf import preprocessing
  from atcon_tf.losses import ConsistencyConfig
  from serving import graphs
  from serving.export import overlays

  height, width = contract.image_size
  loss = ConsistencyConfig(**contract.consistency_settings())
  images_spec = tf.TensorSpec([None, height, width, channels], tf.as_dtype(input_dtype), name=IMAGES_KEY)
  bytes_spec = tf.TensorSpec([None], tf.string, name=BYTES_KEY)
  class_spec = tf.TensorSpec([None], tf.int32, name=CLASS_IDS_KEY)

  def model_input(raw):
    return preprocessing.apply(raw, contract.preprocessing)

  def explain(raw, class_ids=None, with_consistency=True):
    x = model_input(raw)
    if class_ids is not None:
      class_ids = graphs.check_class_ids(class_ids, tf.shape(x)[0], num_classes)
    return graphs.explain_outputs(tapped, x, class_ids, loss, with_consistency)

  def decode(images_bytes):
    return graphs.decode_images(images_bytes, (height, width), channels, max_pixels)

  def overlay(images_bytes):
    outputs = explain(decode(images_bytes))
    gradcam_png, guided_png = overlays.overlay_pngs(
      images_bytes, outputs["gradcam"], outputs["guided_backprop"], max_pixels
    )
    kept = {k: outputs[k] for k in ("probabilities", "class_ids", "consistency")}
    return dict(kept, gradcam_bytes=gradcam_png, guided_backprop_bytes=guided_png)

  archive = keras.export.ExportArchive()
  archive.track(tapped.model)
  archive.add_endpoint("serving_default", explain, input_signature=[images_spec])
  archive.add_endpoint("explain_class", explain, input_signature=[images_spec, class_spec])
  archive.add_endpoint(
    "predict",
    lambda images: graphs.predict_outputs(tapped, model_input(images)),
    input_signature=[images_spec],
  )
  archive.add_endpoint(
    "maps",
    lambda images: explain(images, with_consistency=False),
    input_signature=[images_spec],
  )
  archive.add_endpoint(
    "predict_bytes", lambda images_bytes: explain(decode(images_bytes)), input_signature=[bytes_spec]
  )
  archive.add_endpoint(
    "explain_class_bytes",
    lambda images_bytes, class_ids: explain(decode(images_bytes), class_ids),
    input_signature=[bytes_spec, class_spec],
  )
  archive.add_endpoint(
    "predict_only_bytes",
    lambda images_bytes: graphs.predict_outputs(tapped, model_input(decode(images_bytes))),
    input_signature=[bytes_spec],
  )
  archive.add_endpoint("overlays_bytes", overlay, input_signature=[bytes_spec])
  return archive
