"""keras.applications families imported as a user would (weights=None, 96 px, nested under GAP + Dense):
the Grad-CAM layer chosen, the softmax found however it is written, which activations guided backprop
changes, and one ATCON train step with compiled metrics (issue 12). Slow: ~2-3 min in all."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import atcon_tf

SIZE = 96
A = keras.applications
SPELLINGS = {
  "dense_softmax": lambda f: keras.layers.Dense(5, activation="softmax")(f),
  "tf.nn.softmax": lambda f: keras.layers.Dense(5, activation=tf.nn.softmax)(f),
  "keras.ops.softmax": lambda f: keras.layers.Dense(5, activation=keras.ops.softmax)(f),
  "Lambda(softmax)": lambda f: keras.layers.Lambda(tf.nn.softmax)(keras.layers.Dense(5)(f)),
  "softmax+Dropout": lambda f: keras.layers.Dropout(0.2)(keras.layers.Dense(5, activation="softmax")(f)),
  "Softmax layer": lambda f: keras.layers.Softmax()(keras.layers.Dense(5)(f)),
  "log_softmax": lambda f: keras.layers.Lambda(tf.nn.log_softmax)(keras.layers.Dense(5)(f)),
  "logits": lambda f: keras.layers.Dense(5)(f),
}
# family -> (constructor, expected Grad-CAM layer inside the backbone, its map size, guided activations,
#            how the head's softmax is written, what should be found)
FAMILIES = {
  "MobileNetV2": (A.MobileNetV2, "out_relu", 3, {"relu6": 35}, "tf.nn.softmax", "softmax"),
  "ResNet50": (A.ResNet50, "conv5_block3_out", 3, {"relu": 49}, "keras.ops.softmax", "softmax"),
  "EfficientNetB0": (A.EfficientNetB0, "top_activation", 3, {"silu": 49, "sigmoid": 16}, "Lambda(softmax)", "softmax"),
  "DenseNet121": (A.DenseNet121, "relu", 3, {"relu": 121}, "softmax+Dropout", "softmax"),
  "InceptionV3": (A.InceptionV3, "mixed7", 4, {"relu": 94}, "Softmax layer", "softmax"),
  "VGG16": (A.VGG16, "block5_conv3", 6, {"relu": 13}, "log_softmax", "log_softmax"),
  "ConvNeXtTiny": (A.ConvNeXtTiny, "layer_normalization", 3, {"gelu": 18}, "logits", None),
  "Xception": (A.Xception, "block14_sepconv2_act", 3, {"relu": 35}, "dense_softmax", "softmax"),
  "MobileNetV3Small": (
    A.MobileNetV3Small, "activation_17", 3, {"hard_silu": 18, "relu": 14, "relu6": 9}, "tf.nn.softmax", "softmax"
  ),
}  # fmt: skip


def _classifier(constructor, spelling):
  keras.backend.clear_session()  # Auto-generated layer names (activation_17) start from 0.
  keras.utils.set_random_seed(0)
  kwargs = {"include_preprocessing": False} if constructor is A.MobileNetV3Small else {}
  backbone = constructor(input_shape=(SIZE, SIZE, 3), include_top=False, weights=None, **kwargs)
  inputs = keras.Input((SIZE, SIZE, 3))
  features = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
  return keras.Model(inputs, SPELLINGS[spelling](features)), backbone


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_layer_softmax_guided_and_a_train_step(family):
  constructor, layer, cells, guided, spelling, activation = FAMILIES[family]
  classifier, backbone = _classifier(constructor, spelling)
  model = atcon_tf.ATCONModel(classifier, schedule="combining")
  tapped = model.tapped
  assert tapped.target_layer_path == f"{backbone.name}/{layer}"
  assert tuple(tapped.target_layer.output.shape[1:3]) == (cells, cells)
  assert tapped.output_activation == activation
  assert model.guided_report.counts() == guided and model.guided_report.unguided == ()

  x = tf.random.stateless_uniform([2, SIZE, SIZE, 3], seed=[1, 2], minval=-1, maxval=1)
  own = classifier(x).numpy()
  served = tapped.probabilities(tapped.logits(x)).numpy()
  expected = {"log_softmax": np.exp(own), None: tf.nn.softmax(own).numpy()}.get(activation, own)
  np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-6)

  model.compile(optimizer=keras.optimizers.Adam(1e-5), metrics=["accuracy"], run_eagerly=True)
  data = tf.data.Dataset.from_tensors({"image": x, "label": tf.constant([0, 3]), "unlabeled_image": x})
  logs = model.fit(data, epochs=1, verbose=0).history
  assert {"accuracy", "consistency_loss", "supervised_loss"} <= set(logs)
  assert all(np.isfinite(v[0]) for v in logs.values())
