"""gRPC client for TF Serving (and the local `serving.server`): predictions with attention maps.

Library:
  from serving.client import ServingClient
  with ServingClient("127.0.0.1:8500", timeout=30, max_message_mb=64) as client:
    result = client.predict(["cat.png"], model="atcon")     # encoded files -> predict_bytes
    result = client.predict(images, model="atcon")           # (B, H, W, 3) -> serving_default
    result["probabilities"], result["gradcam"], result.version
    client.metadata("atcon"); client.status("atcon")
CLI:
  python -m serving.client --server=127.0.0.1:8500 --model=atcon --out_dir=overlays a.png b.jpg
prints the top classes of each image and writes Grad-CAM / guided-backprop overlays.

`RestClient("127.0.0.1:8501")` has the same calls over TF Serving's REST API (`--rest` on the CLI).
Every failure is raised as `ServingError` (status code, details, the call, a hint).
Modules: `api` (the client), `rest` (the REST client), `inputs` (images in), `results` (Prediction, ServingError), `overlays` (attention maps over images, PNGs), `__main__` (the CLI).
"""

from atcon_tf import quiet

quiet.tensorflow_logs()  # Before the TF Serving protos import TensorFlow: no start-up noise on CPU machines.


from serving.client.api import BYTES_KEY
from serving.client.api import CLASS_IDS_KEY
from serving.client.api import IMAGES_KEY
from serving.client.api import ServingClient
from serving.client.inputs import read_encoded
from serving.client.results import Prediction, ServingError
from serving.client.rest import RestClient
from serving.client.overlays import overlay
from serving.client.overlays import write_overlays
