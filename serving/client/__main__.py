"""The client's command line: top classes of each image, and Grad-CAM / guided-backprop overlays.

Classes are printed by name: from --labels when given, else from the served contract's class names (our
server; real TF Serving serves none, and bare ids are printed).

python -m serving.client --server=127.0.0.1:8500 --model=atcon --out_dir=overlays a.png b.jpg
"""

import os
import sys

import numpy as np
from absl import app
from absl import flags

from serving.client.api import ServingClient
from serving.client.results import ServingError
from serving.client.overlays import write_overlays


def define_flags():
  flags.DEFINE_string("server", "127.0.0.1:8500", "host:port of TF Serving's gRPC API.")
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


def main(argv):
  f = flags.FLAGS
  paths = argv[1:]
  if not paths:
    raise SystemExit("Pass one or more image files.")
  labels = None
  if f.labels:
    with open(f.labels) as fh:
      labels = [line.strip() for line in fh if line.strip()]
  class_ids = None if f.class_id is None else [f.class_id] * len(paths)
  with ServingClient(f.server, timeout=f.timeout, max_message_mb=f.max_message_mb) as client:
    try:
      result = client.predict(
        paths,
        f.model,
        signature=f.signature,
        version=f.version,
        class_ids=class_ids,
        with_class_names=labels is None,  # --labels wins over the served contract
      )
    except (ServingError, FileNotFoundError, ValueError) as e:
      print(f"error: {e}", file=sys.stderr)
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
  return 0


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  define_flags()
  app.run(lambda argv: sys.exit(main(argv)))
