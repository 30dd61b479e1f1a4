"""Export an ATCON-trained (or any Keras) classifier as a SavedModel for TF Serving.

Library: `export_model(model_or_path, export_dir, name, ...)` writes `EXPORT_DIR/NAME/VERSION/` (a SavedModel
plus `assets.extra/`: the contract info file and TF Serving's warm-up requests) and returns that path.
CLI:     python -m serving.export --model=RUN_FOLDER|PATH.keras --export_dir=DIR --name=NAME

Files: `exporter` (contract resolution, export_model), `signatures` (the five served signatures), `layout`
(version folders, atomic publish, info file), `warmup` (TF Serving warm-up records), `__main__` (CLI).
"""

from serving.export.exporter import export_model, load_contract, resolve_contract
from serving.export.layout import (
  CONTRACT_METADATA_FIELD,
  EXPORT_INFO_FILE,
  next_version,
  read_export_info,
  version_dirs,
)
from serving.export.signatures import (
  BYTES_KEY,
  CLASS_IDS_KEY,
  IMAGES_KEY,
  INPUT_DTYPES,
  SIGNATURES,
  build_archive,
)
from serving.export.warmup import WARMUP_FILE, write_warmup
