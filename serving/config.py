"""TF Serving configuration files: `models.config` and `batching_parameters.txt`.

`models.config` is a `ModelServerConfig` text proto (`--model_config_file=`), built with the
real `tensorflow_serving.config` protos, so a typo in a field name cannot slip through.
`batching_parameters.txt` is a `BatchingParameters` text proto (`--batching_parameters_file=`,
with `--enable_batching`); its proto is not in the pip package, so it is written from
validated values here.

CLI (writes both files):
  python -m serving.config --out_dir=serving_config \
      --model=atcon:/models/atcon --model=atcon_v1:/models/atcon:specific=1 \
      --max_batch_size=32 --batch_timeout_micros=2000
A --model is NAME:BASE_PATH[:POLICY] with POLICY `latest` (default, = latest=1), `latest=N`,
`all`, or `specific=V1,V2`; BASE_PATH is the path *inside the server* (e.g. the container).
"""

import os

from google.protobuf import text_format

VERSION_POLICIES = ("latest", "all", "specific")


def model_config(
  name, base_path, policy="latest", num_versions=1, versions=None, version_labels=None, platform="tensorflow"
):
  """A `ModelConfig` proto.

  policy: 'latest' (serve the `num_versions` highest versions), 'all', or 'specific'
  (serve exactly `versions`). version_labels: {'stable': 1, 'canary': 2}.
  """
  from tensorflow_serving.config import model_server_config_pb2

  if not name:
    raise ValueError("A model needs a name.")
  if not base_path:
    raise ValueError(f"Model {name!r} needs a base_path.")
  if policy not in VERSION_POLICIES:
    raise ValueError(f"Unknown version policy {policy!r}; choose one of {VERSION_POLICIES}.")
  config = model_server_config_pb2.ModelConfig(
    name=name, base_path=os.fspath(base_path), model_platform=platform
  )
  version_policy = config.model_version_policy
  if policy == "latest":
    if int(num_versions) < 1:
      raise ValueError(f"num_versions must be >= 1, got {num_versions}.")
    version_policy.latest.num_versions = int(num_versions)
  elif policy == "all":
    version_policy.all.SetInParent()
  else:
    if not versions:
      raise ValueError(f"Model {name!r}: the 'specific' policy needs a list of versions.")
    version_policy.specific.versions.extend(int(v) for v in versions)
  for label, version in (version_labels or {}).items():
    config.version_labels[label] = int(version)
  return config


def _as_model_config(entry):
  from tensorflow_serving.config import model_server_config_pb2

  if isinstance(entry, model_server_config_pb2.ModelConfig):
    return entry
  if isinstance(entry, dict):
    return model_config(**entry)
  if isinstance(entry, (tuple, list)):
    return model_config(*entry)
  raise TypeError(f"Expected a ModelConfig, a dict or a (name, base_path) tuple, got {entry!r}.")


def models_config(models):
  """A `ModelServerConfig` serving `models` (ModelConfig protos, dicts or (name, path) tuples)."""
  from tensorflow_serving.config import model_server_config_pb2

  server_config = model_server_config_pb2.ModelServerConfig()
  names = set()
  for entry in models:
    config = _as_model_config(entry)
    if config.name in names:
      raise ValueError(f"Model name {config.name!r} appears twice.")
    names.add(config.name)
    server_config.model_config_list.config.append(config)
  if not names:
    raise ValueError("models.config needs at least one model.")
  return server_config


def models_config_text(models):
  return text_format.MessageToString(models_config(models))


def write_models_config(path, models):
  """Writes a `models.config` text proto for `--model_config_file`; returns the path."""
  text = models_config_text(models)
  _write(path, text)
  return path


def read_models_config(path):
  """Parses a `models.config` file into a `ModelServerConfig` (ValueError if malformed)."""
  from tensorflow_serving.config import model_server_config_pb2

  with open(path) as f:
    text = f.read()
  config = model_server_config_pb2.ModelServerConfig()
  try:
    text_format.Parse(text, config)
  except text_format.ParseError as e:
    raise ValueError(f"{path}: not a valid ModelServerConfig text proto: {e}") from None
  if config.WhichOneof("config") != "model_config_list":
    raise ValueError(f"{path}: only model_config_list configs are supported.")
  return config


def batching_parameters_text(
  max_batch_size=32,
  batch_timeout_micros=2000,
  max_enqueued_batches=100,
  num_batch_threads=None,
  allowed_batch_sizes=None,
  pad_variable_length_inputs=False,
):
  """A `BatchingParameters` text proto for TF Serving's `--batching_parameters_file`.

  num_batch_threads defaults to the number of CPU cores. allowed_batch_sizes must increase
  and end with max_batch_size (TF Serving pads each batch up to the next allowed size).
  """
  if num_batch_threads is None:
    num_batch_threads = os.cpu_count() or 1
  values = {
    "max_batch_size": max_batch_size,
    "batch_timeout_micros": batch_timeout_micros,
    "max_enqueued_batches": max_enqueued_batches,
    "num_batch_threads": num_batch_threads,
  }
  for key, value in values.items():
    if int(value) != value or value < (0 if key == "batch_timeout_micros" else 1):
      raise ValueError(
        f"{key} must be a {'non-negative' if key == 'batch_timeout_micros' else 'positive'} "
        f"integer, got {value!r}."
      )
  lines = [f"{key} {{ value: {int(value)} }}" for key, value in values.items()]
  if allowed_batch_sizes:
    sizes = [int(s) for s in allowed_batch_sizes]
    if sizes != sorted(set(sizes)) or sizes[0] < 1:
      raise ValueError(f"allowed_batch_sizes must be positive and increasing, got {sizes}.")
    if sizes[-1] != int(max_batch_size):
      raise ValueError(
        f"The last allowed batch size ({sizes[-1]}) must equal max_batch_size ({max_batch_size})."
      )
    lines += [f"allowed_batch_sizes: {s}" for s in sizes]
  lines.append(f"pad_variable_length_inputs: {'true' if pad_variable_length_inputs else 'false'}")
  return "\n".join(lines) + "\n"


def write_batching_parameters(path, **kwargs):
  """Writes `batching_parameters.txt` (see `batching_parameters_text`); returns the path."""
  _write(path, batching_parameters_text(**kwargs))
  return path


def read_batching_parameters(path):
  """{field: int | bool | [int]} from a batching parameters file written by this module."""
  result = {}
  with open(path) as f:
    for raw in f:
      line = raw.split("#", 1)[0].strip()
      if not line:
        continue
      if "{" in line:
        key, rest = line.split("{", 1)
        value = rest.split("value:", 1)[1].split("}", 1)[0]
        result[key.strip()] = int(value)
      else:
        key, value = (s.strip() for s in line.split(":", 1))
        if key == "allowed_batch_sizes":
          result.setdefault(key, []).append(int(value))
        else:
          result[key] = value == "true"
  return result


def _write(path, text):
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)  # TF Serving may re-read models.config: never show a partial file.


def parse_model_flag(value):
  """'NAME:BASE_PATH[:POLICY]' -> ModelConfig (see the module docstring)."""
  parts = value.split(":")
  if len(parts) < 2 or not parts[0] or not parts[1]:
    raise ValueError(f"--model={value!r}: expected NAME:BASE_PATH[:POLICY].")
  name, base_path = parts[0], parts[1]
  policy = ":".join(parts[2:]) or "latest"
  key, _, arg = policy.partition("=")
  if key == "latest":
    return model_config(name, base_path, "latest", num_versions=int(arg or 1))
  if key == "all":
    return model_config(name, base_path, "all")
  if key == "specific":
    return model_config(name, base_path, "specific", versions=[int(v) for v in arg.split(",") if v])
  raise ValueError(f"--model={value!r}: unknown policy {policy!r} (latest[=N], all, specific=V,..).")


def define_flags():
  from absl import flags

  flags.DEFINE_multi_string("model", None, "NAME:BASE_PATH[:POLICY], repeatable.")
  flags.DEFINE_string("out_dir", None, "Folder for models.config and batching_parameters.txt.")
  flags.DEFINE_integer("max_batch_size", 32, "Largest batch the server forms.")
  flags.DEFINE_integer("batch_timeout_micros", 2000, "Longest wait to fill a batch.")
  flags.DEFINE_integer("max_enqueued_batches", 100, "Queue length before requests are refused.")
  flags.DEFINE_integer("num_batch_threads", None, "Batches run in parallel (default: CPU cores).")
  flags.DEFINE_list("allowed_batch_sizes", None, "Padded batch sizes, last = max_batch_size.")
  flags.mark_flag_as_required("model")
  flags.mark_flag_as_required("out_dir")


def main(argv):
  from absl import flags

  if len(argv) > 1:
    raise SystemExit(f"Unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  models = [parse_model_flag(m) for m in f.model]
  config_path = write_models_config(os.path.join(f.out_dir, "models.config"), models)
  batching_path = write_batching_parameters(
    os.path.join(f.out_dir, "batching_parameters.txt"),
    max_batch_size=f.max_batch_size,
    batch_timeout_micros=f.batch_timeout_micros,
    max_enqueued_batches=f.max_enqueued_batches,
    num_batch_threads=f.num_batch_threads,
    allowed_batch_sizes=[int(s) for s in f.allowed_batch_sizes] if f.allowed_batch_sizes else None,
  )
  print(config_path)
  print(batching_path)


if __name__ == "__main__":
  from absl import app

  define_flags()
  app.run(main)
