"""Which versions of which models are served: version policy, poller, loading and unloading.

Each model's version policy (latest N by default, all, specific) picks versions among the
`BASE_PATH/VERSION/` folders; requests pick one by explicit `version` or `version_label`, else
the latest; an unknown model or version is NOT_FOUND, as TF Serving. A background poller loads
a new version, replays its warm-up requests, then swaps it in atomically; the old version is
unloaded after its in-flight requests finish.
"""

import collections
import contextlib
import logging
import os
import threading

import grpc
from tensorflow.core.protobuf import error_codes_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import status_pb2
from tensorflow_serving.config import model_server_config_pb2

from serving import config as config_lib
from serving import export as export_lib
from serving.server.servable import Servable
from serving.server.validation import ServingError, invalid

log = logging.getLogger("serving.server")

MAX_LOAD_ATTEMPTS = 5
State = get_model_status_pb2.ModelVersionStatus.State


def _status(state, error=None):
  status = status_pb2.StatusProto(error_code=error_codes_pb2.OK)
  if error:
    status.error_code = error_codes_pb2.UNKNOWN
    status.error_message = error
  return state, status


class ModelState:
  def __init__(self, config):
    self.config = config
    self.available = {}  # version -> Servable
    self.states = {}  # version -> (State, StatusProto)
    self.failures = collections.Counter()
    self.warned_empty = False


class ModelManager:
  """Loads the versions each model's policy wants; serves them; swaps with no failed request."""

  def __init__(
    self, server_config, poll_seconds=1.0, warmup=True, unload_timeout=300.0, worker_processes=False
  ):
    self._lock = threading.RLock()
    self._poll_lock = threading.Lock()
    self._models = {}
    self.poll_seconds = poll_seconds
    self.warmup = warmup
    self.unload_timeout = unload_timeout
    self.worker_processes = worker_processes
    self._stop = threading.Event()
    self._thread = None
    self.set_config(server_config)

  def set_config(self, server_config):
    configs = list(server_config.model_config_list.config)
    names = [c.name for c in configs]
    if len(set(names)) != len(names) or not all(names):
      raise ValueError(f"Model names must be unique and non-empty, got {names}.")
    with self._lock:
      old = self._models
      self._models = {}
      for config in configs:
        state = old.get(config.name)
        if state is None or state.config.base_path != config.base_path:
          state = ModelState(config)
        state.config = config
        self._models[config.name] = state
      dropped = [s for name, s in old.items() if self._models.get(name) is not s]
    for state in dropped:
      for servable in state.available.values():
        servable.wait_idle(self.unload_timeout)
        servable.unload()

  def available_counts(self):
    """{model name: number of versions serving now} (for the metrics)."""
    with self._lock:
      return {name: len(state.available) for name, state in self._models.items()}

  def model_names(self):
    with self._lock:
      return sorted(self._models)

  # Polling ---------------------------------------------------------------------------
  def start(self):
    self.poll()
    self._thread = threading.Thread(target=self._loop, name="version-poller", daemon=True)
    self._thread.start()

  def stop(self):
    """Stops the poller and unloads every version (after its requests in flight)."""
    self._stop.set()
    if self._thread is not None:
      self._thread.join(timeout=10)
    with self._poll_lock, self._lock:
      servables = [s for state in self._models.values() for s in state.available.values()]
      for state in self._models.values():
        state.available = {}
    for servable in servables:
      servable.wait_idle(self.unload_timeout)
      servable.unload()

  def _loop(self):
    while not self._stop.wait(self.poll_seconds):
      try:
        self.poll()
      except Exception:  # The poller must survive anything (a vanished folder, a bad export).
        log.exception("Version poll failed")

  def _wanted(self, config, on_disk):
    policy = config.model_version_policy.WhichOneof("policy_choice") or "latest"
    versions = sorted(on_disk)
    if policy == "all":
      return set(versions)
    if policy == "specific":
      return set(config.model_version_policy.specific.versions) & set(versions)
    count = config.model_version_policy.latest.num_versions or 1
    return set(versions[-count:])

  def poll(self):
    """One pass: load wanted versions not loaded, then unload the unwanted ones."""
    with self._poll_lock:
      with self._lock:
        models = list(self._models.values())
      for state in models:
        self._poll_model(state)

  def _poll_model(self, state):
    config = state.config
    on_disk = {
      v: p
      for v, p in export_lib.version_dirs(config.base_path).items()
      if os.path.isfile(os.path.join(p, "saved_model.pb"))
    }
    if not on_disk:
      if not state.available and not state.warned_empty:  # once, not every poll
        state.warned_empty = True
        log.warning("No versions of model %s found under %s", config.name, config.base_path)
      return  # Keep serving what is loaded: a vanished folder must not take the model down.
    wanted = self._wanted(config, on_disk)
    for version, servable in list(state.available.items()):
      if not servable.alive():  # its worker process died: load the version again below
        log.error("The worker process of %s version %d died; loading it again", config.name, version)
        with self._lock:
          state.available.pop(version, None)
          state.states[version] = _status(State.END, "worker process died")
        state.failures[version] += 1
        servable.unload()
    for version in sorted(wanted - set(state.available), reverse=True):
      if state.failures[version] >= MAX_LOAD_ATTEMPTS:
        continue
      with self._lock:
        state.states[version] = _status(State.LOADING)
      try:
        servable = Servable(config.name, version, on_disk[version], worker_process=self.worker_processes)
        if self.warmup:
          servable.warm_up()
      except Exception as e:  # A broken export must not stop the server.
        state.failures[version] += 1
        message = f"Loading {config.name} version {version} failed: {type(e).__name__}: {e}"
        log.error("%s (attempt %d/%d)", message, state.failures[version], MAX_LOAD_ATTEMPTS)
        with self._lock:
          state.states[version] = _status(State.END, message)
        continue
      with self._lock:  # The swap: from now on 'latest' resolves to the new version.
        state.available[version] = servable
        state.states[version] = _status(State.AVAILABLE)
      log.info("Serving %s version %d from %s", config.name, version, on_disk[version])
    with self._lock:
      keep_old = not (wanted & set(state.available))  # Availability first: never go empty.
      retired = [] if keep_old else [state.available.pop(v) for v in sorted(set(state.available) - wanted)]
      for servable in retired:
        state.states[servable.version] = _status(State.UNLOADING)
    for servable in retired:  # New requests no longer see it; let in-flight ones finish.
      if not servable.wait_idle(self.unload_timeout):
        log.warning(
          "%s version %d still busy after %.0f s; dropping it",
          servable.name,
          servable.version,
          self.unload_timeout,
        )
      servable.unload()
      with self._lock:
        state.states[servable.version] = _status(State.END)
      log.info("Unloaded %s version %d", servable.name, servable.version)

  # Lookup ----------------------------------------------------------------------------
  @contextlib.contextmanager
  def acquire(self, model_spec):
    """The servable for a ModelSpec, held (not unloaded) for the duration of the context."""
    name = model_spec.name
    if not name:
      raise invalid("Missing ModelSpec name")
    with self._lock:
      state = self._models.get(name)
      which = model_spec.WhichOneof("version_choice")
      if which == "version":
        version = model_spec.version.value
        servable = state.available.get(version) if state else None
        if servable is None:
          raise ServingError(
            grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Specific({name}, {version})"
          )
      elif which == "version_label":
        label = model_spec.version_label
        if state is None:
          raise ServingError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({name})")
        if label not in state.config.version_labels:
          raise invalid(f"Unrecognized servable version label: {label}")
        version = state.config.version_labels[label]
        servable = state.available.get(version)
        if servable is None:
          raise ServingError(
            grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Specific({name}, {version})"
          )
      else:
        if not state or not state.available:
          raise ServingError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({name})")
        servable = state.available[max(state.available)]
      servable.acquire_unlocked()  # Under the manager lock: it cannot be retired meanwhile.
    try:
      yield servable
    finally:
      servable.release()

  def status(self, model_spec):
    name = model_spec.name
    if not name:
      raise invalid("Missing ModelSpec name")
    with self._lock:
      state = self._models.get(name)
      if state is None or not state.states:
        raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name}")
      states = dict(state.states)
      if model_spec.WhichOneof("version_choice") == "version_label":
        label = model_spec.version_label
        if label not in state.config.version_labels:
          raise invalid(f"Unrecognized servable version label: {label}")
        wanted = state.config.version_labels[label]
      elif model_spec.WhichOneof("version_choice") == "version":
        wanted = model_spec.version.value
      else:
        wanted = None
    if wanted is not None:
      if wanted not in states:
        raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find version {wanted} of model {name}")
      states = {wanted: states[wanted]}
    return sorted(states.items(), reverse=True)


def server_config_from_flags(model_name=None, model_base_path=None, model_config_file=None):
  """The ModelServerConfig to serve, from the CLI's model flags.

  Here rather than in `__main__`, so that the package exports it without importing the CLI.
  """
  if model_config_file:
    if model_base_path:
      raise ValueError("Pass either --model_config_file or --model_base_path, not both.")
    config = config_lib.read_models_config(model_config_file)
    for model in config.model_config_list.config:
      if not model.base_path:
        raise ValueError(f"{model_config_file}: model {model.name!r} has no base_path.")
      model.base_path = os.path.abspath(model.base_path)  # Relative: to the working folder.
    return config
  if not model_base_path:
    raise ValueError("Pass --model_base_path=EXPORT_DIR/NAME (or --model_config_file).")
  base_path = os.path.abspath(model_base_path)
  name = model_name or os.path.basename(base_path.rstrip(os.sep))
  return model_server_config_pb2.ModelServerConfig(
    model_config_list=model_server_config_pb2.ModelConfigList(
      config=[config_lib.model_config(name, base_path)]
    )
  )
