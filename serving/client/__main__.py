"""The client's command line: top classes of each image, and Grad-CAM / guided-backprop overlays.

Classes are printed by name: from --labels when given, else from the served contract's class names (our
server; real TF Serving serves none, and bare ids are printed).

python -m serving.client --server=127.0.0.1:8500 --model=atcon --out_dir=overlays a.png b.jpg
python -m serving.client --rest --server=127.0.0.1:8501 --model=atcon --nomaps a.png b.jpg

Each bad file (missing, empty, not an image, refused by the server) is reported by name and left out; the
others are still answered, and the exit status is 1.
"""

import os
import sys

import numpy as np
from absl import app
from absl import flags

from serving.client.api import ServingClient
from serving.client.inputs import ImageFileError, read_image_file
from serving.client.rest import RestClient
from serving.client.results import ServingError
from serving.client.overlays import write_overlays


def define_flags():
  flags.DEFINE_string(
    "server", None, "host:port of the server (default 127.0.0.1:8500, or :8501 with --rest)."
  )
  flags.DEFINE_boolean("rest", False, "Call TF Serving's REST API instead of gRPC.")
  flags.DEFINE_boolean(
    "maps", True, "Ask for the attention maps (--nomaps: predictions only, predict_only_bytes)."
  )
  flags.DEFINE_string("model", None, "Model name.")
  flags.DEFINE_integer("version", None, "Model version (default: the latest).")
  flags.DEFINE_string(
    "signature", None, "Signature (default: predict_bytes, or explain_class_bytes with --class_id)."
  )
  flags.DEFINE_integer("class_id", None, "Explain this class instead of the top-1.")
  flags.DEFINE_integer("top_k", 3, "Classes to print per image.")
  flags.DEFINE_string(
    "labels", None, "Text file with one class name per line (default: the served contract's class names)."
  )
  flags.DEFINE_string(
    "out_dir", ".", "Where to write <image>_gradcam.png and <image>_guided_backprop.png overlays ('' = none)."
  )
  flags.DEFINE_float("timeout", 30.0, "Seconds per call.")
  flags.DEFINE_integer("max_message_mb", 64, "Largest message sent or received.")
  flags.mark_flag_as_required("model")


def _readable(paths):
  """(paths that look like images, [(path, error)] for the others)."""
  good, bad = [], []
  for path in paths:
    try:
      read_image_file(path)
      good.append(path)
    except (FileNotFoundError, ImageFileError) as e:
      bad.append((path, str(e)))
  return good, bad


def _predict(client, paths, f, labels):
  """(result, paths answered, [(path, error)]): a file the server refuses is dropped and the rest re-sent."""
  failed = []
  while paths:
    try:
      result = client.predict(
        paths,
        f.model,
        signature=f.signature or (None if f.maps else "predict"),
        version=f.version,
        class_ids=None if f.class_id is None else [f.class_id] * len(paths),
        with_class_names=labels is None,  # --labels wins over the served contract
      )
      return result, paths, failed
    except ServingError as e:
      if e.path is None or e.path not in paths:
        raise
      failed.append((e.path, e.details))
      paths = [p for p in paths if p != e.path]
  return None, [], failed


def main(argv):
  f = flags.FLAGS
  paths = argv[1:]
  if not paths:
    raise SystemExit("Pass one or more image files.")
  labels = None
  if f.labels:
    with open(f.labels) as fh:
      labels = [line.strip() for line in fh if line.strip()]
  paths, failed = _readable(paths)
  server = f.server or ("127.0.0.1:8501" if f.rest else "127.0.0.1:8500")
  client = (
    RestClient(server, timeout=f.timeout) if f.rest else ServingClient(server, f.timeout, f.max_message_mb)
  )
  with client:
    try:
      result, paths, refused = _predict(client, paths, f, labels)
    except (ServingError, ValueError) as e:
      print(f"error: {e}", file=sys.stderr)
      return 1
  failed += refused
  for path, error in failed:
    print(f"error: {path}: {error}", file=sys.stderr)
  if result is None:
    return 1
  print(f"model {result.model} version {result.version} signature {result.signature}")
  names = labels or result.class_names

  def name(c):
    c = int(c)
    return names[c] if names and 0 <= c < len(names) else str(c)

  probabilities = result.get("probabilities")
  for i, path in enumerate(paths):
    parts = []
    if probabilities is not None:
      order = np.argsort(-probabilities[i])[: f.top_k]
      for c in order:
        parts.append(f"{name(c)} {probabilities[i, c]:.3f}")
    line = f"{path}: " + ", ".join(parts)
    if "class_ids" in result:
      line += f" | explained class {name(result['class_ids'][i])}"
    if "consistency" in result:
      line += f" | consistency {float(result['consistency'][i]):+.3f}"
    print(line)
    if f.out_dir:
      for written in write_overlays(path, result, i, f.out_dir):
        print(f"  wrote {written}")
  return 1 if failed else 0


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  define_flags()
  app.run(lambda argv: sys.exit(main(argv)))
