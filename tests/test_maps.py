"""Attention maps on hand-computed cases, against tf-keras-vis, and batched vs per-image."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import atcon_tf
from atcon_tf import maps
from atcon_tf import backbones, testing
from atcon_tf.maps import processing

# --- Tiny models with hand-set weights whose maps are computed by hand below. ---
# One 2x2 single-channel image; see test_maps.py for the hand computation.
HAND_IMAGE = np.array([[[[1.0], [-1.0]], [[2.0], [0.5]]]], dtype=np.float32)


def _set_hand_weights(conv1, conv2, dense):
  conv1.set_weights([np.array([1.0, -1.0], np.float32).reshape(1, 1, 1, 2)])
  conv2.set_weights([np.array([1.0, -0.5], np.float32).reshape(1, 1, 2, 1), np.array([1.0], np.float32)])
  dense.set_weights([np.array([[1.0, -1.0]], np.float32)])


def hand_model(nested=False, activation_layer=False):
  """x -> conv1x1 [1,-1] -> ReLU -> conv1x1 [1,-0.5]+1, relu -> GAP -> Dense [1,-1].

  `nested=True` puts the convolutions in an inner functional model; `activation_layer=True`
  uses `Activation('relu')` instead of `keras.layers.ReLU`.
  """
  conv1 = keras.layers.Conv2D(2, 1, use_bias=False, name="conv1")
  relu = (
    keras.layers.Activation("relu", name="relu1") if activation_layer else keras.layers.ReLU(name="relu1")
  )
  conv2 = keras.layers.Conv2D(1, 1, activation="relu", name="features")
  dense = keras.layers.Dense(2, use_bias=False, name="logits")
  inputs = keras.Input((2, 2, 1))
  if nested:
    inner_in = keras.Input((2, 2, 1))
    inner = keras.Model(inner_in, conv2(relu(conv1(inner_in))), name="backbone")
    x = inner(inputs)
  else:
    x = conv2(relu(conv1(inputs)))
  outputs = dense(keras.layers.GlobalAveragePooling2D(name="gap")(x))
  model = keras.Model(inputs, outputs, name="hand")
  _set_hand_weights(conv1, conv2, dense)
  return model


# Hand computation for hand_model on HAND_IMAGE = [[1, -1], [2, 0.5]]:
#   conv1 -> (x, -x); ReLU -> a1 = (relu(x), relu(-x)); features a2 = relu(a1_0 - 0.5 a1_1 + 1)
#   pixels: x=1 -> 2, x=-1 -> 0.5, x=2 -> 3, x=0.5 -> 1.5; z = (mean a2, -mean a2) = (1.75, -1.75)
#   Grad-CAM class 0: alpha = 1/4 -> cam = a2 / 4; class 1: cam = -a2 / 4 (0 after ReLU).
#   Guided backprop class 0: dz/da2 = 1/4 everywhere, all pre-activations of a2 > 0;
#   dz/da1 = (1/4, -1/8); guided ReLU1 keeps channel 0 where x > 0 and drops channel 1
#   (negative upstream), so GB = 1/4 where x > 0, and 0 at x = -1, where the vanilla
#   gradient is +1/8 (through channel 1). Class 1: upstream is negative -> GB = 0.
A2 = np.array([[2.0, 0.5], [3.0, 1.5]])
GB_CLASS0 = np.array([[0.25, 0.0], [0.25, 0.25]])
VANILLA_CLASS0 = np.array([[0.25, 0.125], [0.25, 0.25]])


@pytest.fixture(params=["flat", "nested", "activation_layer"])
def hand(request):
  model = hand_model(nested=request.param == "nested", activation_layer=request.param == "activation_layer")
  return atcon_tf.TappedModel(model)


def test_gradcam_hand_computed(hand):
  x = HAND_IMAGE
  result = maps.gradcam(hand, x, relu=False)
  np.testing.assert_array_equal(result.class_ids.numpy(), [0])
  np.testing.assert_allclose(result.logits.numpy(), [[1.75, -1.75]], rtol=1e-6)
  np.testing.assert_allclose(result.cam.numpy()[0], A2 / 4, rtol=1e-6)
  other = maps.gradcam(hand, x, class_ids=[1], relu=False)
  np.testing.assert_allclose(other.cam.numpy()[0], -A2 / 4, rtol=1e-6)
  np.testing.assert_allclose(maps.gradcam(hand, x, class_ids=[1]).cam.numpy()[0], 0.0)


def test_guided_backprop_hand_computed(hand):
  x = tf.constant(HAND_IMAGE)
  gb = maps.guided_backprop(hand, x, class_ids=[0]).numpy()[0, ..., 0]
  np.testing.assert_allclose(gb, GB_CLASS0, rtol=1e-6)
  np.testing.assert_allclose(maps.guided_backprop(hand, x, class_ids=[1]).numpy(), 0.0)
  with tf.GradientTape() as tape:
    tape.watch(x)
    z0 = hand.model(x)[:, 0]
  np.testing.assert_allclose(tape.gradient(z0, x).numpy()[0, ..., 0], VANILLA_CLASS0, rtol=1e-6)


def test_guided_patches_cover_all_relu_kinds_and_are_restored():
  model = hand_model(nested=True)
  from atcon_tf.maps.guided import guided_patches

  patches = guided_patches(model)
  assert sorted((layer.name, attr) for layer, attr, _ in patches) == [
    ("features", "activation"),
    ("relu1", "call"),
  ]
  tapped = atcon_tf.TappedModel(model)
  maps.guided_backprop(tapped, HAND_IMAGE, [0])
  features = model.get_layer("backbone").get_layer("features")
  relu = model.get_layer("backbone").get_layer("relu1")
  assert features.activation is keras.activations.relu
  assert "call" not in relu.__dict__


def test_guided_relu_capped_relu6_gate():
  x = tf.constant([-1.0, 0.5, 7.0])
  from atcon_tf.maps.guided_relu import guided_backward
  from atcon_tf.maps.guided_relu import guided_relu

  with tf.GradientTape(persistent=True) as tape:
    tape.watch(x)
    y = guided_relu(x, max_value=6.0)
    target = tf.reduce_sum(y * tf.constant([1.0, 1.0, 1.0])) - 2.0 * y[1]
  np.testing.assert_allclose(y.numpy(), [0.0, 0.5, 6.0])
  # Upstream at x=0.5 is 1 - 2 = -1 < 0 -> dropped; x=-1 below 0 and x=7 above the cap -> 0.
  with guided_backward():
    np.testing.assert_allclose(tape.gradient(target, x).numpy(), [0.0, 0.0, 0.0])
  # Outside guided_backward() the same op has ReLU6's true derivative.
  np.testing.assert_allclose(tape.gradient(target, x).numpy(), [0.0, -1.0, 0.0])


def test_integrated_gradients_exact_on_linear_model():
  keras.utils.set_random_seed(1)
  inputs = keras.Input((4, 4, 3))
  features = keras.layers.Conv2D(5, 1, name="features")(inputs)
  outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(features))
  tapped = atcon_tf.TappedModel(keras.Model(inputs, outputs))
  x = tf.random.normal([2, 4, 4, 3])
  with tf.GradientTape() as tape:
    tape.watch(x)
    z = tf.reduce_sum(tapped.logits(x)[:, 2])
  expected = x * tape.gradient(z, x)
  ig = maps.integrated_gradients(tapped, x, class_ids=2, steps=5)
  np.testing.assert_allclose(ig.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)


def test_integrated_gradients_completeness_on_relu_network():
  tapped = atcon_tf.TappedModel(testing.tiny_cnn(batch_norm=False, seed=3))
  x = tf.random.normal([2, 16, 16, 3], seed=4)
  classes = maps.top1_classes(tapped.logits(x))
  ig = maps.integrated_gradients(tapped, x, classes, steps=300)
  z = tf.gather(tapped.logits(x), classes, batch_dims=1)
  z0 = tf.gather(tapped.logits(tf.zeros_like(x)), classes, batch_dims=1)
  np.testing.assert_allclose(tf.reduce_sum(ig, [1, 2, 3]).numpy(), (z - z0).numpy(), rtol=0.02)


def test_smoothgrad_without_noise_is_squared_gradient():
  tapped = atcon_tf.TappedModel(testing.tiny_cnn(seed=2))
  x = tf.random.normal([2, 16, 16, 3], seed=1)
  with tf.GradientTape() as tape:
    tape.watch(x)
    logits = tapped.logits(x)
    z = tf.reduce_sum(tf.gather(logits, maps.top1_classes(logits), batch_dims=1))
  grad = tape.gradient(z, x)
  sg = maps.smoothgrad(tapped, x, samples=3, noise_level=0.0)
  np.testing.assert_allclose(sg.numpy(), np.square(grad.numpy()), rtol=1e-5, atol=1e-10)
  noisy1 = maps.smoothgrad(tapped, x, samples=4, seed=7)
  noisy2 = maps.smoothgrad(tapped, x, samples=4, seed=7)
  np.testing.assert_array_equal(noisy1.numpy(), noisy2.numpy())
  assert not np.allclose(noisy1.numpy(), sg.numpy())


def test_gradcam_equals_tf_keras_vis():
  from tf_keras_vis.gradcam import Gradcam
  from tf_keras_vis.utils.scores import CategoricalScore

  model = backbones.small_resnet(image_size=32, classes=5, seed=5)
  tapped = atcon_tf.TappedModel(model)
  assert tapped.target_layer_path == "stage3_block1_out"
  x = tf.random.normal([3, 32, 32, 3], seed=2)
  classes = [0, 3, 4]
  ours = maps.gradcam(tapped, x, class_ids=classes, relu=True).cam.numpy()
  oracle = Gradcam(model, clone=True)(
    CategoricalScore(classes),
    x.numpy(),
    penultimate_layer="stage3_block1_out",
    seek_penultimate_conv_layer=False,
    expand_cam=False,
    normalize_cam=False,
  )
  assert np.abs(ours).max() > 0
  np.testing.assert_allclose(ours, np.asarray(oracle), rtol=1e-4, atol=1e-6)


def test_batched_maps_equal_per_image_loop():
  tapped = atcon_tf.TappedModel(backbones.small_resnet(image_size=32, classes=5, seed=6))
  x = tf.random.normal([4, 32, 32, 3], seed=3)
  batched = maps.gradcam(tapped, x, relu=False)
  gb = maps.guided_backprop(tapped, x, batched.class_ids)
  ig = maps.integrated_gradients(tapped, x, batched.class_ids, steps=3)
  for i in range(4):
    one = maps.gradcam(tapped, x[i : i + 1], relu=False)
    assert int(one.class_ids[0]) == int(batched.class_ids[i])
    np.testing.assert_allclose(one.cam.numpy()[0], batched.cam.numpy()[i], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
      maps.guided_backprop(tapped, x[i : i + 1], one.class_ids).numpy()[0],
      gb.numpy()[i],
      rtol=1e-4,
      atol=1e-6,
    )
    np.testing.assert_allclose(
      maps.integrated_gradients(tapped, x[i : i + 1], one.class_ids, steps=3).numpy()[0],
      ig.numpy()[i],
      rtol=1e-4,
      atol=1e-6,
    )


def test_maps_inside_tf_function_match_eager():
  tapped = atcon_tf.TappedModel(testing.tiny_cnn(seed=4))
  x = tf.random.normal([2, 16, 16, 3], seed=5)

  @tf.function
  def both(images):
    result = maps.gradcam(tapped, images, relu=False)
    return result.cam, maps.guided_backprop(tapped, images, result.class_ids)

  cam, gb = both(x)
  eager = maps.gradcam(tapped, x, relu=False)
  np.testing.assert_allclose(cam.numpy(), eager.cam.numpy(), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
    gb.numpy(), maps.guided_backprop(tapped, x, eager.class_ids).numpy(), rtol=1e-5, atol=1e-7
  )


def test_attention_panels_compose_explain_with_the_model_s_loss_settings(tmp_path):
  """Pictures show the mask the model is trained with: an ATCONModel's w (also from its saved file), else
  the default; an explicit w wins. Checked against the primitive maps, not against `maps.explain`."""
  from atcon_tf import choices
  from atcon_tf import losses
  from atcon_tf import visualize

  classifier = testing.tiny_cnn(seed=4)
  x = tf.random.normal([2, 16, 16, 3], seed=6)
  tapped = atcon_tf.TappedModel(classifier)
  cam = maps.gradcam(tapped, x, relu=False)
  saliency = processing.channel_magnitude(maps.guided_backprop(tapped, x, cam.class_ids))
  atcon_model = atcon_tf.ATCONModel(classifier, mask_intensity=40.0)
  atcon_model(x)  # Built, so that it can be saved.
  path = str(tmp_path / "atcon.keras")
  atcon_model.save(path)
  cases = [
    (atcon_model, None, 40.0),
    (path, None, 40.0),
    (classifier, None, choices.MASK_INTENSITY),
    (tapped, None, choices.MASK_INTENSITY),
    (atcon_model, 3.0, 3.0),
  ]
  for model, override, w in cases:
    panels = visualize.attention_panels(model, x, mask_intensity=override)
    mask, mask_logits = processing.soft_mask(saliency, w)
    np.testing.assert_allclose(panels["mask_logits"], mask_logits.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(panels["mask"], mask.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(panels["gradcam_raw"], cam.cam.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(panels["gradcam"], np.maximum(cam.cam.numpy(), 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(panels["guided_backprop"], saliency.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(panels["class_ids"], cam.class_ids.numpy())
    np.testing.assert_allclose(panels["probabilities"], tf.nn.softmax(cam.logits).numpy(), rtol=1e-5)
    costs = losses.consistency_per_image(tapped, x, mask_intensity=w).costs.numpy()
    np.testing.assert_allclose(panels["consistency"], -costs, rtol=1e-4, atol=1e-5)
  assert np.abs(saliency.numpy()).max() > 0  # Else every w would give the same mask logits.
  assert visualize.as_tapped(atcon_model) is atcon_model.tapped  # Its cached tf.function is reused.
  top1 = cam.class_ids.numpy()
  other = (top1[0] + 1) % 4
  panels = visualize.attention_panels(classifier, x, class_ids=[other, -1])
  np.testing.assert_array_equal(panels["class_ids"], [other, top1[1]])
  given = maps.gradcam(tapped, x, class_ids=[other, top1[1]], relu=False).cam.numpy()
  np.testing.assert_allclose(panels["gradcam_raw"], given, rtol=1e-5, atol=1e-6)


def test_processing_hand_values():
  m = tf.constant([[[1.0, 2.0], [3.0, 4.0]]])
  std = np.std([1, 2, 3, 4], ddof=1)
  np.testing.assert_allclose(
    processing.zscore(m).numpy()[0], (np.array([[1, 2], [3, 4]]) - 2.5) / std, rtol=1e-6
  )
  np.testing.assert_allclose(processing.zscore(tf.ones([1, 2, 2])).numpy(), 0.0)
  mask, logits = processing.soft_mask(m, 2.0)
  sigma = 2.5 + 0.5 * std
  np.testing.assert_allclose(logits.numpy()[0], 2.0 * (np.array([[1, 2], [3, 4]]) - sigma), rtol=1e-6)
  np.testing.assert_allclose(
    mask.numpy()[0], 1 / (1 + np.exp(-2.0 * (np.array([[1, 2], [3, 4]]) - sigma))), rtol=1e-6
  )
  up = processing.resize_align_corners(tf.constant([[[0.0, 1.0], [2.0, 3.0]]]), [3, 3]).numpy()[0]
  np.testing.assert_allclose(up, [[0, 0.5, 1], [1, 1.5, 2], [2, 2.5, 3]], atol=1e-6)
  pooled = processing.average_pool_to(tf.reshape(tf.range(16.0), [1, 4, 4]), (2, 2)).numpy()[0]
  np.testing.assert_allclose(pooled, [[2.5, 4.5], [10.5, 12.5]])
  with pytest.raises(ValueError, match="integer multiple"):
    processing.average_pool_to(tf.zeros([1, 5, 5]), (2, 2))


if __name__ == "__main__":
  import sys

  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
