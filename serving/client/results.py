"""What a call to the model server gives back: `Prediction` (outputs + who answered) or `ServingError`."""

import collections.abc
import re

import grpc

_HINTS = {
  grpc.StatusCode.UNAVAILABLE: "is a model server running and listening at {target}?",
  grpc.StatusCode.DEADLINE_EXCEEDED: "no answer within timeout={timeout}s; raise the timeout, or "
  "send smaller batches",
  grpc.StatusCode.RESOURCE_EXHAUSTED: "a message exceeded the size limit (client "
  "max_message_mb={max_message_mb}); raise it or send "
  "smaller batches",
  grpc.StatusCode.NOT_FOUND: "check the model name and version (client.status(model) lists "
  "the loaded versions)",
  grpc.StatusCode.FAILED_PRECONDITION: "check the signature name (client.metadata(model) "
  "lists the signatures)",
}


class ServingError(Exception):
  """A failed call to the model server: `.code` (grpc.StatusCode) and `.details` (its message).

  `.path`: the image file the server refused, when it named one of ours (`images_bytes[i]`);
  `.http_status`: the HTTP status over REST (None over gRPC).
  """

  def __init__(self, code, details, call, target, hint=None, path=None, http_status=None):
    self.code = code
    self.details = details or ""
    self.call = call
    self.target = target
    self.hint = hint
    self.path = path
    self.http_status = http_status
    message = f"{call} on {target} failed: {code.name}: {self.details}"
    if hint:
      message += f" (hint: {hint})"
    super().__init__(message)

  def naming_files(self, names):
    """This error with `images_bytes[i]` followed by the file it is (names[i]), and `.path` set."""
    found = re.search(r"images_bytes\[(\d+)\]", self.details)
    index = int(found.group(1)) if found else None
    if index is None or index >= len(names) or names[index] is None:
      return self
    details = self.details.replace(found.group(0), f"{found.group(0)} ({names[index]})", 1)
    return ServingError(self.code, details, self.call, self.target, self.hint, names[index], self.http_status)


class Prediction(collections.abc.Mapping):
  """Outputs of one Predict call (a read-only dict of NumPy arrays) and which model answered.

  class_names: the answering version's class names (index = class id) from its served contract, or None
  (real TF Serving serves no contract; an export may record no names).
  """

  def __init__(self, outputs, model, version, signature, class_names=None):
    self.outputs = outputs
    self.model = model
    self.version = version
    self.signature = signature
    self.class_names = list(class_names) if class_names else None

  def class_name(self, class_id):
    """The name of class `class_id` when the contract has it, else the id as text."""
    class_id = int(class_id)
    if self.class_names and 0 <= class_id < len(self.class_names):
      return self.class_names[class_id]
    return str(class_id)

  def __getitem__(self, key):
    return self.outputs[key]

  def __iter__(self):
    return iter(self.outputs)

  def __len__(self):
    return len(self.outputs)

  def __repr__(self):
    shapes = ", ".join(f"{k}: {v.dtype}{list(v.shape)}" for k, v in sorted(self.outputs.items()))
    return (
      f"Prediction(model={self.model!r}, version={self.version}, signature={self.signature!r}, {{{shapes}}})"
    )
