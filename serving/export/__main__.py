"""python -m serving.export --model=RUN_FOLDER|PATH.keras --export_dir=DIR --name=NAME [--flag=override ...]

Exports with the contract the model recorded when it was trained (preprocessing, Grad-CAM layer, loss
settings, class names). A flag given explicitly overrides the recorded value, with a warning.
"""

import sys

from atcon_tf import quiet

quiet.tensorflow_logs()  # before TensorFlow is imported: no CUDA / oneDNN start-up noise

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from atcon_tf import choices  # noqa: E402
from serving.export import signatures  # noqa: E402

flags.DEFINE_string("model", None, "A trainer run folder (its best.keras) or a .keras/.h5 model file.")
flags.DEFINE_string("export_dir", None, "Root of the exports: writes EXPORT_DIR/NAME/VERSION.")
flags.DEFINE_string("name", None, "Model name (the TF Serving MODEL_NAME).")
flags.DEFINE_integer("version", None, "Version number (default: next free integer).")
flags.DEFINE_enum(
  "preprocessing",
  None,
  list(choices.PREPROCESSING),
  "Raw pixels -> model input inside the served graph. Default: the model's recorded one "
  "(required for models that record none).",
)
flags.DEFINE_enum("input_dtype", "float32", list(signatures.INPUT_DTYPES), "dtype of the images input.")
flags.DEFINE_list("image_size", None, "H,W (only for models that take any size).")
flags.DEFINE_string("target_layer", None, "Grad-CAM layer path (default: recorded, else automatic).")
flags.DEFINE_float(
  "mask_intensity",
  None,
  f"ATCON soft-mask w for `consistency` (default: recorded, else {choices.MASK_INTENSITY}).",
)
flags.DEFINE_enum(
  "attention", None, list(choices.ATTENTIONS), "Loss variant for `consistency` (default: recorded)."
)
flags.DEFINE_enum(
  "similarity", None, list(choices.SIMILARITIES), "Map similarity for `consistency` (default: recorded)."
)
flags.DEFINE_list("class_names", None, "Class names, in class-id order (default: recorded).")
flags.DEFINE_integer(
  "max_image_pixels",
  None,
  "Encoded images with more pixels (read from their header) are refused before decoding (default 4096*4096).",
)
flags.DEFINE_boolean("warmup", True, "Write assets.extra/tf_serving_warmup_requests.")
for _required in ("model", "export_dir", "name"):
  flags.mark_flag_as_required(_required)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  from absl import logging as absl_logging

  from atcon_tf.contract import ContractError
  from serving.export import exporter

  absl_logging.set_verbosity(absl_logging.WARNING)  # TF's export chatter; our overrides warn
  f = flags.FLAGS
  image_size = None
  if f.image_size:
    image_size = [int(s) for s in f.image_size]
    image_size = image_size * 2 if len(image_size) == 1 else image_size
  try:
    path = exporter.export_model(
      f.model,
      f.export_dir,
      f.name,
      version=f.version,
      image_size=image_size,
      preprocessing=f.preprocessing,
      target_layer=f.target_layer,
      mask_intensity=f.mask_intensity,
      attention=f.attention,
      similarity=f.similarity,
      class_names=f.class_names,
      warmup=f.warmup,
      input_dtype=f.input_dtype,
      max_image_pixels=f.max_image_pixels,
    )
  except (ContractError, FileNotFoundError, FileExistsError, ValueError) as error:
    raise SystemExit(f"ERROR: {error}") from None
  print(path)
  sys.stdout.flush()


if __name__ == "__main__":
  app.run(main)
