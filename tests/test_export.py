"""SavedModel export for TF Serving: layout, C++ loader, fresh-process load, parity with the model."""

import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

import atcon_tf  # noqa: E402
from atcon_tf.testing import tiny_cnn  # noqa: E402
from atcon_tf import maps  # noqa: E402
from atcon_tf import preprocessing  # noqa: E402
from atcon_tf.contract import ContractError, ServingContract  # noqa: E402
from atcon_tf.maps.guided_pass import guided_pass  # noqa: E402
from serving import export as export_lib  # noqa: E402
from serving import graphs  # noqa: E402
from tests.conftest import reference_outputs, reference_predict  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 16
ATOL = 1e-5
EXPLAIN_KEYS = graphs.EXPLAIN_OUTPUTS


def _env():
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return env


def _pixels(batch, seed=0, size=SIZE):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, size=(batch, size, size, 3)).astype(np.float32)


def _png(pixels):
  buffer = io.BytesIO()
  Image.fromarray(np.asarray(pixels, np.uint8)).save(buffer, "PNG")
  return buffer.getvalue()


def assert_outputs_close(got, want, keys=EXPLAIN_KEYS, atol=ATOL):
  for key in keys:
    np.testing.assert_allclose(np.asarray(got[key]), want[key], atol=atol, err_msg=key)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """One export of a tiny CNN for the whole module."""
  model = tiny_cnn(SIZE, classes=4)
  export_dir = str(tmp_path_factory.mktemp("exports"))
  path = export_lib.export_model(model, export_dir, "tiny", preprocessing="scale_0_1")
  return model, atcon_tf.TappedModel(model), path, export_dir


@pytest.fixture(scope="module")
def loaded(exported):
  return tf.saved_model.load(exported[2])


def test_layout_info_and_warmup(exported):
  from tensorflow_serving.apis import prediction_log_pb2

  model, _, path, export_dir = exported
  assert path == os.path.join(export_dir, "tiny", "1")
  assert os.path.isfile(os.path.join(path, "saved_model.pb"))
  assert os.path.isdir(os.path.join(path, "variables"))
  # No leftover temporary folder next to the version.
  assert os.listdir(os.path.join(export_dir, "tiny")) == ["1"]
  assert export_lib.next_version(os.path.join(export_dir, "tiny")) == 2
  info = export_lib.read_export_info(path)
  assert info["preprocessing"] == "scale_0_1"
  assert info["image_size"] == [SIZE, SIZE] and info["channels"] == 3
  assert info["num_classes"] == 4 and info["version"] == 1
  assert info["target_layer"] == "features" and info["input_dtype"] == "float32"
  warmup = os.path.join(path, "assets.extra", "tf_serving_warmup_requests")
  signatures = []
  for record in tf.data.TFRecordDataset(warmup):
    entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
    signatures.append(entry.predict_log.request.model_spec.signature_name)
    assert entry.predict_log.request.inputs
  assert signatures == list(export_lib.SIGNATURES)


def test_signatures_and_per_example_outputs(loaded):
  assert {"serving_default", "explain_class", "predict", "predict_bytes", "explain_class_bytes"} <= set(
    loaded.signatures
  )
  x = _pixels(3)
  full = loaded.signatures["serving_default"](images=tf.constant(x))
  assert set(full) == set(EXPLAIN_KEYS)
  shapes = {k: tuple(v.shape) for k, v in full.items()}
  assert shapes == {
    "probabilities": (3, 4),
    "class_ids": (3,),
    "gradcam": (3, SIZE, SIZE),
    "guided_backprop": (3, SIZE, SIZE),
    "consistency": (3,),
  }
  # Per example along axis 0: each image's outputs do not depend on the rest of the batch.
  for i in range(3):
    alone = loaded.signatures["serving_default"](images=tf.constant(x[i : i + 1]))
    for key in EXPLAIN_KEYS:
      np.testing.assert_allclose(alone[key].numpy()[0], full[key].numpy()[i], atol=ATOL)
  for key in ("gradcam", "guided_backprop"):
    maps = full[key].numpy()
    assert np.allclose(maps.max(axis=(1, 2)), 1.0) and np.allclose(maps.min(axis=(1, 2)), 0.0)
  only = loaded.signatures["predict"](images=tf.constant(x))
  assert set(only) == {"probabilities", "class_ids"}


def test_parity_with_in_memory_model(exported, loaded):
  _, tapped, _, _ = exported
  x = _pixels(4, seed=1)
  want = reference_outputs(tapped, x, "scale_0_1")
  assert_outputs_close(loaded.signatures["serving_default"](images=tf.constant(x)), want)
  # `maps`: the same maps without the consistency (no forward of the masked image).
  maps_only = loaded.signatures["maps"](images=tf.constant(x))
  assert set(maps_only) == set(graphs.MAPS_OUTPUTS) and "consistency" not in maps_only
  assert_outputs_close(maps_only, want, keys=graphs.MAPS_OUTPUTS)
  want_predict = reference_predict(tapped, x, "scale_0_1")
  assert_outputs_close(
    loaded.signatures["predict"](images=tf.constant(x)), want_predict, keys=("probabilities", "class_ids")
  )
  class_ids = np.array([-1, 2, 0, 3], np.int32)
  want_class = reference_outputs(tapped, x, "scale_0_1", class_ids=class_ids)
  got = loaded.signatures["explain_class"](images=tf.constant(x), class_ids=tf.constant(class_ids))
  assert_outputs_close(got, want_class)
  assert got["class_ids"].numpy()[1:].tolist() == [2, 0, 3]


def test_bytes_signatures_decode_and_resize(exported, loaded):
  _, tapped, _, _ = exported
  x = _pixels(2, seed=2)
  encoded = tf.constant([_png(p) for p in x])
  want = reference_outputs(tapped, x, "scale_0_1")
  assert_outputs_close(loaded.signatures["predict_bytes"](images_bytes=encoded), want)
  class_ids = tf.constant([1, -1], tf.int32)
  want_class = reference_outputs(tapped, x, "scale_0_1", class_ids=class_ids.numpy())
  assert_outputs_close(
    loaded.signatures["explain_class_bytes"](images_bytes=encoded, class_ids=class_ids), want_class
  )
  # Another size and a grayscale PNG: decoded to RGB, resized (bilinear, antialias) in-graph.
  big = np.random.default_rng(3).integers(0, 256, size=(24, 20), dtype=np.uint8)
  got = loaded.signatures["predict_bytes"](images_bytes=tf.constant([_png(big)]))
  rgb = np.repeat(big[..., None], 3, axis=-1).astype(np.float32)
  resized = tf.image.resize(rgb, [SIZE, SIZE], method="bilinear", antialias=True).numpy()
  assert_outputs_close(got, reference_outputs(tapped, resized[None], "scale_0_1"))
  with pytest.raises(tf.errors.InvalidArgumentError):
    loaded.signatures["predict_bytes"](images_bytes=tf.constant([b"not an image"]))


def test_class_id_guards_inside_the_graph(loaded):
  """Real TF Serving does not validate inputs: the graph itself rejects bad class ids."""
  x = tf.constant(_pixels(2))
  for bad in ([0, 4], [-2, 0], [1]):
    with pytest.raises(tf.errors.InvalidArgumentError):
      loaded.signatures["explain_class"](images=x, class_ids=tf.constant(bad, tf.int32))


@pytest.mark.slow
def test_saved_model_cli_run(exported, tmp_path):
  """The C++ loader path (as TF Serving loads it), on serving_default and explain_class."""
  _, tapped, path, _ = exported
  x = _pixels(2, seed=4)
  np.save(tmp_path / "x.npy", x)
  class_ids = np.array([3, -1], np.int32)
  np.save(tmp_path / "c.npy", class_ids)
  runs = {"serving_default": "images=x.npy", "explain_class": "images=x.npy;class_ids=c.npy"}
  for signature, inputs in runs.items():
    out = tmp_path / signature
    result = subprocess.run(
      [
        "saved_model_cli",
        "run",
        "--dir",
        path,
        "--tag_set",
        "serve",
        "--signature_def",
        signature,
        "--inputs",
        inputs,
        "--outdir",
        str(out),
      ],
      cwd=tmp_path,
      env=_env(),
      capture_output=True,
      text=True,
      timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    got = {key: np.load(out / f"{key}.npy") for key in EXPLAIN_KEYS}
    want = reference_outputs(
      tapped, x, "scale_0_1", class_ids=class_ids if signature == "explain_class" else None
    )
    assert_outputs_close(got, want)


@pytest.mark.slow
def test_fresh_process_without_project_code(exported, tmp_path):
  """tf.saved_model.load in a new interpreter with no project code importable."""
  _, tapped, path, _ = exported
  x = _pixels(3, seed=5)
  np.save(tmp_path / "x.npy", x)
  (tmp_path / "x.png").write_bytes(_png(x[0]))
  script = textwrap.dedent(f"""
      import sys
      class NoProjectCode:  # the project may be pip-installed: make its packages unimportable here
        def find_spec(self, name, path=None, target=None):
          if name.split(".")[0] in ("atcon_tf", "serving", "trainers"):
            raise ImportError("project code blocked: " + name)
      sys.meta_path.insert(0, NoProjectCode())
      import numpy as np, tensorflow as tf
      try:
        import atcon_tf
        raise SystemExit("atcon_tf is importable")
      except ImportError:
        pass
      m = tf.saved_model.load({path!r})
      x = tf.constant(np.load("x.npy"))
      out = {{}}
      for k, v in m.signatures["serving_default"](images=x).items():
        out["sd_" + k] = v.numpy()
      for k, v in m.signatures["predict"](images=x).items():
        out["p_" + k] = v.numpy()
      png = tf.constant([open("x.png", "rb").read()])
      for k, v in m.signatures["predict_bytes"](images_bytes=png).items():
        out["b_" + k] = v.numpy()
      np.savez("out.npz", **out)
  """)
  env = {k: v for k, v in _env().items() if k != "PYTHONPATH"}
  result = subprocess.run(
    [sys.executable, "-I", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
  )
  assert result.returncode == 0, result.stderr[-3000:]
  out = np.load(tmp_path / "out.npz")
  want = reference_outputs(tapped, x, "scale_0_1")
  assert_outputs_close({k: out["sd_" + k] for k in EXPLAIN_KEYS}, want)
  assert_outputs_close(
    {k: out["p_" + k] for k in ("probabilities", "class_ids")}, want, keys=("probabilities", "class_ids")
  )
  assert_outputs_close({k: out["b_" + k] for k in EXPLAIN_KEYS}, {k: v[:1] for k, v in want.items()})


@pytest.mark.slow
def test_cli_exports_atcon_model_from_workdir(tmp_path):
  """A trainer workdir's best.keras (an ATCONModel) -> its classifier, uint8 + imagenet_torch."""
  classifier = tiny_cnn(SIZE, classes=3, seed=7)
  workdir = tmp_path / "workdir"
  workdir.mkdir()
  atcon_model = atcon_tf.ATCONModel(classifier, mask_intensity=8.0)
  atcon_model(np.zeros((1, SIZE, SIZE, 3), np.float32))  # Built, as after training.
  atcon_model.save(str(workdir / "best.keras"))
  export_dir = tmp_path / "exports"
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "serving.export",
      f"--model={workdir}",
      f"--export_dir={export_dir}",
      "--name=atcon",
      "--version=3",
      "--preprocessing=imagenet_torch",
      "--input_dtype=uint8",
    ],
    cwd=REPO,
    env=_env(),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  path = str(export_dir / "atcon" / "3")
  assert result.stdout.strip().splitlines()[-1] == path
  info = export_lib.read_export_info(path)
  assert info["source"] == str(workdir / "best.keras")
  assert info["input_dtype"] == "uint8" and info["num_classes"] == 3
  loaded = tf.saved_model.load(path)
  x = _pixels(2, seed=8).astype(np.uint8)
  got = loaded.signatures["serving_default"](images=tf.constant(x))
  want = reference_outputs(atcon_tf.TappedModel(classifier), x, "imagenet_torch")
  assert_outputs_close(got, want, atol=2e-5)


@pytest.mark.slow
def test_export_reads_the_recorded_contract_and_an_explicit_argument_wins(tmp_path, caplog):
  """No flags needed: preprocessing, loss settings and class names travel inside the .keras file."""
  classifier = tiny_cnn(SIZE, classes=3, seed=11)
  run = tmp_path / "run"
  run.mkdir()
  recorded = atcon_tf.ATCONModel(
    classifier, mask_intensity=20.0, preprocessing="imagenet_caffe", class_names=["cat", "dog", "fox"]
  )
  recorded(np.zeros((1, SIZE, SIZE, 3), np.float32))
  recorded.save(str(run / "best.keras"))
  path = export_lib.export_model(str(run), tmp_path / "exports", "m")
  contract = export_lib.load_contract(path)
  assert contract.preprocessing == "imagenet_caffe" and contract.mask_intensity == 20.0
  assert contract.class_names == ("cat", "dog", "fox") and contract.image_size == (SIZE, SIZE)
  x = _pixels(3, seed=12)
  got = tf.saved_model.load(path).signatures["serving_default"](images=tf.constant(x))
  want = reference_outputs(atcon_tf.TappedModel(classifier), x, "imagenet_caffe", mask_intensity=20.0)
  assert_outputs_close(got, want, atol=2e-5)
  # The same model served with another preprocessing would disagree: the test above can fail.
  wrong = reference_outputs(atcon_tf.TappedModel(classifier), x, "scale_0_1", mask_intensity=20.0)
  assert not np.allclose(got["probabilities"].numpy(), wrong["probabilities"], atol=1e-3)
  with caplog.at_level("WARNING"):
    overridden = export_lib.export_model(str(run), tmp_path / "exports", "m", preprocessing="scale_0_1")
  assert "overrides the model's recorded preprocessing='imagenet_caffe'" in caplog.text
  assert export_lib.load_contract(overridden).preprocessing == "scale_0_1"


@pytest.mark.slow
def test_export_refuses_a_model_that_records_no_preprocessing(tmp_path):
  model = tiny_cnn(SIZE, classes=3, seed=13)
  with pytest.raises(ContractError, match="--preprocessing=NAME"):
    export_lib.export_model(model, tmp_path, "m")
  assert not export_lib.version_dirs(str(tmp_path / "m"))
  path = export_lib.export_model(model, tmp_path, "m", contract=ServingContract(preprocessing="scale_-1_1"))
  assert export_lib.load_contract(path).preprocessing == "scale_-1_1"
  model.save(str(tmp_path / "plain.keras"))
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "serving.export",
      f"--model={tmp_path / 'plain.keras'}",
      f"--export_dir={tmp_path / 'cli'}",
      "--name=m",
    ],
    cwd=REPO,
    env=_env(),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode != 0
  assert "records no preprocessing" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("case", ["tiny", "early_target_layer", "relu_in_head", "softmax_output"])
def test_fused_passes_match_reference(case):
  """`maps.explain` fuses Grad-CAM into the guided pass only when that is exact."""
  keras.utils.set_random_seed(1)
  target_layer = None
  if case == "relu_in_head":  # A ReLU after the Grad-CAM layer: the shortcut would be wrong.
    inputs = keras.Input((SIZE, SIZE, 3))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dense(5, activation="relu")(h)
    model = keras.Model(inputs, keras.layers.Dense(3)(h))
  elif case == "softmax_output":
    model = tiny_cnn(SIZE, classes=4, output_activation="softmax")
  else:
    model = tiny_cnn(SIZE, classes=4)
    target_layer = "relu1" if case == "early_target_layer" else None
  tapped = atcon_tf.TappedModel(model, target_layer)
  x = _pixels(3, seed=9)
  inputs = tf.constant(preprocessing.apply_numpy(x, "scale_0_1"))
  fused = guided_pass(tapped, inputs, maps.ClassTarget()).cam  # one forward, whatever runs after the layer
  assert (tapped.linear_head is None) == (case in ("early_target_layer", "relu_in_head"))
  plain = maps.gradcam(tapped, inputs, relu=False, shortcut=False).cam
  np.testing.assert_allclose(fused.numpy(), plain.numpy(), rtol=1e-5, atol=1e-6)
  got = graphs.explain_outputs(tapped, inputs)
  assert_outputs_close(got, reference_outputs(tapped, x, "scale_0_1"), atol=1e-6)
  # The layers are restored: the plain model still gives its plain logits.
  plain = tf.constant(x / 255.0, tf.float32)
  np.testing.assert_allclose(
    tapped.logits(plain).numpy(), atcon_tf.TappedModel(model, target_layer).logits(plain).numpy()
  )


def test_export_rejects_bad_arguments(tmp_path, exported):
  model = exported[0]
  export_dir = exported[3]
  with pytest.raises(ValueError, match="preprocessing"):
    export_lib.export_model(model, tmp_path, "m", preprocessing="zscore")
  with pytest.raises(ValueError, match="name"):
    export_lib.export_model(model, tmp_path, "bad/name")
  with pytest.raises(ValueError, match="input_dtype"):
    export_lib.export_model(model, tmp_path, "m", preprocessing="none", input_dtype="uint8")
  with pytest.raises(ValueError, match="does not match"):
    export_lib.export_model(model, tmp_path, "m", image_size=32)
  with pytest.raises(FileExistsError):
    export_lib.export_model(model, export_dir, "tiny", version=1, preprocessing="scale_0_1")
  with pytest.raises(FileNotFoundError, match="best.keras"):
    export_lib.export_model(str(tmp_path), tmp_path, "m")
  inputs = keras.Input((None, None, 3))
  h = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
  any_size = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(h)))
  with pytest.raises(ValueError, match="image_size"):
    export_lib.export_model(any_size, tmp_path, "m")
  assert not os.path.exists(tmp_path / "m") or not export_lib.version_dirs(str(tmp_path / "m"))


def test_info_json_is_valid(exported):
  """The info file's contract is what was exported (written out here, not read back through the code)."""
  with open(os.path.join(exported[2], "assets.extra", export_lib.EXPORT_INFO_FILE)) as f:
    info = json.load(f)
  assert info["signatures"] == [
    "serving_default",
    "explain_class",
    "predict",
    "maps",
    "predict_bytes",
    "explain_class_bytes",
    "predict_only_bytes",
    "overlays_bytes",
  ]
  assert info["max_image_pixels"] == 4096 * 4096
  assert info["preprocessing_formula"] == preprocessing.get("scale_0_1").formula
  assert info["contract"] == {
    "preprocessing": "scale_0_1",
    "image_size": [SIZE, SIZE],
    "target_layer": "features",
    "logits_layer": None,
    "class_names": None,
    "multi_label": False,
    "attention": "gb_mask",
    "similarity": "pearson",
    "mask_intensity": 8.0,
  }
  assert export_lib.load_contract(exported[2]) == ServingContract(
    preprocessing="scale_0_1", image_size=(SIZE, SIZE), target_layer="features"
  )


if __name__ == "__main__":
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__]))
