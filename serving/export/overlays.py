"""Attention maps drawn over the sent images, encoded as PNG inside the graph (`overlays_bytes`).

So a REST client gets pictures with `curl ... | base64 -d`: outputs ending in `_bytes` are base64-encoded
by TF Serving's REST API. The drawing is the client's (`serving.client.overlays`): Grad-CAM as a jet heat
map at alpha 0.5, guided backprop blended by its own value at alpha 0.9, at the original image size.
"""

import tensorflow as tf

GRADCAM_ALPHA = 0.5
GUIDED_ALPHA = 0.9


def jet(values):
  """Jet colormap of values in [0, 1] (..., ) -> float RGB in [0, 255] (..., 3)."""
  v = tf.clip_by_value(values, 0.0, 1.0)[..., None]
  channels = [tf.clip_by_value(1.5 - tf.abs(4.0 * v - c), 0.0, 1.0) for c in (3.0, 2.0, 1.0)]
  return tf.concat(channels, axis=-1) * 255.0


def blend(image, attention, alpha, weighted):
  """uint8 RGB (h, w, 3) + map (H, W) in [0, 1] -> uint8 RGB overlay (h, w, 3)."""
  size = tf.shape(image)[0:2]
  values = tf.image.resize(attention[..., None], size, method="bilinear")[..., 0]
  values = tf.clip_by_value(values, 0.0, 1.0)
  weight = alpha * (values[..., None] if weighted else 1.0)
  blended = (1.0 - weight) * tf.cast(image, tf.float32) + weight * jet(values)
  return tf.cast(tf.clip_by_value(blended + 0.5, 0.0, 255.0), tf.uint8)


def overlay_pngs(encoded, gradcam, guided, max_pixels=None):
  """PNG bytes (B,) of each map drawn over its decoded original image: (gradcam_png, guided_png)."""
  from serving import graphs

  def one(args):
    data, index, cam, saliency = args
    image = graphs.decode_one(data, index, 3, max_pixels)
    return (
      tf.io.encode_png(blend(image, cam, GRADCAM_ALPHA, False)),
      tf.io.encode_png(blend(image, saliency, GUIDED_ALPHA, True)),
    )

  indices = tf.range(tf.shape(encoded)[0])
  spec = tf.TensorSpec([], tf.string)
  return tf.map_fn(one, (encoded, indices, gradcam, guided), fn_output_signature=(spec, spec))
