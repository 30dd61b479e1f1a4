"""A local gRPC server with TF Serving's API, for local use and tests (production: TF Serving).

  python -m serving.server --model_base_path=EXPORT_DIR/NAME --model_name=NAME --port=8500
  python -m serving.server --model_config_file=models.config --port=8500

It implements `tensorflow.serving.PredictionService` (`Predict`, `GetModelMetadata`,
`Classify`) and `ModelService` (`GetModelStatus`, `HandleReloadConfigRequest`) over the
`BASE_PATH/VERSION/` SavedModel layout, with TF Serving's semantics:
- version policy (latest N by default, all, specific), explicit `version` or `version_label`;
- `signature_name` (default `serving_default`), `output_filter`;
- status codes and messages of TF Serving for unknown models / versions (NOT_FOUND), unknown
  signatures (FAILED_PRECONDITION, as TF Serving's predict_util.cc), input-set mismatches and
  bad output filters (INVALID_ARGUMENT);
- inputs are validated against the signature BEFORE the graph runs, so that no request can
  crash the server;
- a background poller loads a new version, replays its warm-up requests, then swaps it in
  atomically; the old version is unloaded after its in-flight requests finish.
- TF Serving's REST API on its own port (`--rest_api_port`), dynamic batching (`--enable_batching`,
  `--batching_parameters_file`), Prometheus metrics at /monitoring/prometheus/metrics (REST port),
  a drain on SIGTERM, and optionally one worker process per loaded version (`--worker_processes`).
Not implemented (TF Serving only): Regress, MultiInference.

Modules, one job each:
- `validation`: request validation against a signature; `ServingError` and its status codes.
- `servable`: `Signature`, `Servable` (one loaded SavedModel version, its warm-up).
- `manager`: `ModelManager` (version policy, poller, loading / unloading, request routing).
- `services`: the gRPC servicers; `local`: `LocalServer` (gRPC + REST + batching + metrics).
- `dispatch`: the one Predict path of both APIs; `rest`, `rest_codec`: the REST API and its JSON.
- `batching`: dynamic batching; `metrics`: Prometheus metrics; `startup`: misconfiguration checks.
- `__main__`: the command line.
"""

from atcon_tf import quiet  # noqa: E402

quiet.tensorflow_logs()  # Before TensorFlow is first imported: no start-up noise on CPU machines.

# pylint: disable=wrong-import-position
from serving.server.manager import MAX_LOAD_ATTEMPTS  # noqa: E402
from serving.server.manager import ModelManager  # noqa: E402
from serving.server.manager import ModelState  # noqa: E402
from serving.server.manager import State  # noqa: E402
from serving.server.manager import server_config_from_flags  # noqa: E402
from serving.server.servable import CLASSIFY_METHOD  # noqa: E402
from serving.server.servable import DEFAULT_SIGNATURE  # noqa: E402
from serving.server.servable import MAX_WARMUP_RECORDS  # noqa: E402
from serving.server.servable import PREDICT_METHOD  # noqa: E402
from serving.server.servable import REGRESS_METHOD  # noqa: E402
from serving.server.servable import Servable  # noqa: E402
from serving.server.servable import Signature  # noqa: E402
from serving.server.servable import TensorSpec  # noqa: E402
from serving.server.local import LocalServer  # noqa: E402
from serving.server.services import ModelService  # noqa: E402
from serving.server.services import PredictionService  # noqa: E402
from serving.server.validation import ServingError  # noqa: E402
from serving.server.validation import invalid  # noqa: E402
