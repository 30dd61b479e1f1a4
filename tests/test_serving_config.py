"""TF Serving config files, version policies and tensor conversion (no model, no gRPC)."""

import os
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from tensorflow.core.framework import types_pb2  # noqa: E402
from tensorflow_serving.config import model_server_config_pb2  # noqa: E402

from serving import config as config_lib  # noqa: E402
from serving import export as export_lib  # noqa: E402
from serving import server as server_lib  # noqa: E402
from serving import tensors  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_models_config_round_trip(tmp_path):
  path = config_lib.write_models_config(
    str(tmp_path / "models.config"),
    [
      ("atcon", "/models/atcon"),
      {
        "name": "atcon_two",
        "base_path": "/models/atcon",
        "num_versions": 2,
        "version_labels": {"stable": 1, "canary": 2},
      },
      config_lib.model_config("atcon_all", "/models/atcon", policy="all"),
      config_lib.model_config("atcon_v1", "/models/atcon", policy="specific", versions=[1, 3]),
    ],
  )
  text = open(path).read()
  assert "model_config_list {" in text and 'base_path: "/models/atcon"' in text
  assert 'model_platform: "tensorflow"' in text
  config = config_lib.read_models_config(path)
  models = {m.name: m for m in config.model_config_list.config}
  assert list(models) == ["atcon", "atcon_two", "atcon_all", "atcon_v1"]
  assert models["atcon"].model_version_policy.latest.num_versions == 1
  assert models["atcon_two"].model_version_policy.latest.num_versions == 2
  assert dict(models["atcon_two"].version_labels) == {"stable": 1, "canary": 2}
  assert models["atcon_all"].model_version_policy.WhichOneof("policy_choice") == "all"
  assert list(models["atcon_v1"].model_version_policy.specific.versions) == [1, 3]


def test_models_config_rejects_bad_input(tmp_path):
  with pytest.raises(ValueError, match="twice"):
    config_lib.models_config([("a", "/m/a"), ("a", "/m/b")])
  with pytest.raises(ValueError, match="policy"):
    config_lib.model_config("a", "/m/a", policy="newest")
  with pytest.raises(ValueError, match="versions"):
    config_lib.model_config("a", "/m/a", policy="specific")
  with pytest.raises(ValueError, match="at least one"):
    config_lib.models_config([])
  bad = tmp_path / "bad.config"
  bad.write_text("model_config_list { config { nmae: 'x' } }")
  with pytest.raises(ValueError, match="ModelServerConfig"):
    config_lib.read_models_config(str(bad))


def test_batching_parameters(tmp_path):
  path = config_lib.write_batching_parameters(
    str(tmp_path / "batching_parameters.txt"),
    max_batch_size=32,
    batch_timeout_micros=1000,
    num_batch_threads=2,
    allowed_batch_sizes=[8, 16, 32],
  )
  text = open(path).read()
  assert "max_batch_size { value: 32 }" in text
  assert "batch_timeout_micros { value: 1000 }" in text
  assert "allowed_batch_sizes: 32" in text
  assert config_lib.read_batching_parameters(path) == {
    "max_batch_size": 32,
    "batch_timeout_micros": 1000,
    "max_enqueued_batches": 100,
    "num_batch_threads": 2,
    "allowed_batch_sizes": [8, 16, 32],
    "pad_variable_length_inputs": False,
  }
  with pytest.raises(ValueError, match="must equal max_batch_size"):
    config_lib.batching_parameters_text(max_batch_size=32, allowed_batch_sizes=[8, 16])
  with pytest.raises(ValueError, match="increasing"):
    config_lib.batching_parameters_text(max_batch_size=32, allowed_batch_sizes=[16, 8, 32])
  with pytest.raises(ValueError, match="max_batch_size"):
    config_lib.batching_parameters_text(max_batch_size=0)


def test_config_cli(tmp_path):
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "serving.config",
      f"--out_dir={tmp_path}",
      "--model=atcon:/models/atcon",
      "--model=old:/models/atcon:specific=1,2",
      "--model=two:/models/atcon:latest=2",
      "--max_batch_size=16",
      "--allowed_batch_sizes=4,16",
    ],
    cwd=REPO,
    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 0, result.stderr[-2000:]
  config = config_lib.read_models_config(str(tmp_path / "models.config"))
  policies = {m.name: m.model_version_policy for m in config.model_config_list.config}
  assert list(policies["old"].specific.versions) == [1, 2]
  assert policies["two"].latest.num_versions == 2
  params = config_lib.read_batching_parameters(str(tmp_path / "batching_parameters.txt"))
  assert params["max_batch_size"] == 16 and params["allowed_batch_sizes"] == [4, 16]
  with pytest.raises(ValueError, match="NAME:BASE_PATH"):
    config_lib.parse_model_flag("justaname")


def test_version_policies_and_layout(tmp_path):
  for name in ("1", "2", "10", ".export-tmp-x", "notes"):
    (tmp_path / name).mkdir()
  (tmp_path / "3").write_text("a file, not a version")
  assert sorted(export_lib.version_dirs(str(tmp_path))) == [1, 2, 10]
  assert export_lib.next_version(str(tmp_path)) == 11
  assert export_lib.next_version(str(tmp_path / "absent")) == 1
  on_disk = {1: "a", 2: "b", 10: "c"}
  manager = server_lib.ModelManager(config_lib.models_config([("m", str(tmp_path))]))
  wanted = manager._wanted  # pylint: disable=protected-access
  assert wanted(config_lib.model_config("m", "p"), on_disk) == {10}
  assert wanted(config_lib.model_config("m", "p", num_versions=2), on_disk) == {2, 10}
  assert wanted(config_lib.model_config("m", "p", policy="all"), on_disk) == {1, 2, 10}
  assert wanted(config_lib.model_config("m", "p", policy="specific", versions=[2, 5]), on_disk) == {2}


def test_server_config_from_flags(tmp_path):
  config = server_lib.server_config_from_flags(model_base_path=str(tmp_path / "exports" / "atcon"))
  model = config.model_config_list.config[0]
  assert model.name == "atcon" and model.base_path == str(tmp_path / "exports" / "atcon")
  config_path = config_lib.write_models_config(str(tmp_path / "models.config"), [("rel", "exports/rel")])
  config = server_lib.server_config_from_flags(model_config_file=config_path)
  # As TF Serving: a relative base_path is relative to the working folder.
  assert config.model_config_list.config[0].base_path == os.path.abspath("exports/rel")
  with pytest.raises(ValueError):
    server_lib.server_config_from_flags()
  assert isinstance(config, model_server_config_pb2.ModelServerConfig)


@pytest.mark.parametrize(
  "value",
  [
    np.arange(24, dtype=np.float32).reshape(2, 3, 4),
    np.array([1, -1, 3], np.int32),
    np.array([[0, 255]], np.uint8),
    np.array([1.5], np.float64),
    np.array([True, False]),
    np.arange(3, dtype=np.int64),
    np.zeros((0, 4), np.float32),
  ],
)
def test_tensor_round_trip_matches_tensorflow(value):
  proto = tensors.to_tensor_proto(value)
  back = tensors.to_numpy(proto)
  assert back.dtype == value.dtype and back.shape == value.shape
  np.testing.assert_array_equal(back, value)
  np.testing.assert_array_equal(tf.make_ndarray(proto), value)
  # Typed value fields (float_val, int_val, ...: how real TF Serving answers) decode the same.
  typed = tensors.tensor_pb2.TensorProto(dtype=proto.dtype, tensor_shape=proto.tensor_shape)
  field = {
    np.float32: "float_val",
    np.int32: "int_val",
    np.uint8: "int_val",
    np.float64: "double_val",
    np.bool_: "bool_val",
    np.int64: "int64_val",
  }[value.dtype.type]
  getattr(typed, field).extend(value.reshape(-1).tolist())
  np.testing.assert_array_equal(tensors.to_numpy(typed), value)
  assert tensors.to_numpy(typed).shape == value.shape


def test_tensor_strings_and_broken_protos():
  data = [b"\x89PNG\x00\x00", b"", b"abc\x00"]
  back = tensors.to_numpy(tensors.to_tensor_proto(data))
  assert back.tolist() == data  # Trailing NUL bytes survive.
  proto = tensors.to_tensor_proto(np.zeros((2, 2), np.float32))
  proto.tensor_content = proto.tensor_content[:-1]
  with pytest.raises(tensors.TensorParseError, match="bytes"):
    tensors.to_numpy(proto)
  proto = tensors.to_tensor_proto(np.zeros(2, np.float32))
  proto.tensor_shape.dim[0].size = -1
  with pytest.raises(tensors.TensorParseError, match="negative"):
    tensors.to_numpy(proto)
  filled = tensors.tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[7.0])
  filled.tensor_shape.dim.add(size=3)
  assert tensors.to_numpy(filled).tolist() == [7.0, 7.0, 7.0]  # TF repeats the last value.


if __name__ == "__main__":
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
