"""Checks that image files decode (as the folder pipeline will decode them) before a run starts.

`check_images(paths)` decodes every file once with `decode_rgb`, the very op the folder datasets' pipeline uses
(`tf.io.decode_image`, 3 channels: grayscale, gray + alpha, RGBA and palette images are converted), in a
parallel tf.data pass with a progress bar, and returns `(path, reason)` for each file that cannot be used:
unreadable, empty, not a decodable image (JPEG, PNG, GIF, BMP, WebP), or of size 0. `BadImagesError` lists them.
"""

from __future__ import annotations

import logging
import re
import sys
import time

import numpy as np
import tensorflow as tf

log = logging.getLogger(__name__)

# The extensions Keras' `image_dataset_from_directory` indexes (compared lower-case).
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
LISTED = 20  # bad files named in an error message; the rest are counted
SKIP_FLAG = "--skip_bad_images"


class BadImagesError(ValueError):
  """Files of a folder dataset that cannot be used as images; `.bad` = [(path, reason)], `.total` = files checked."""

  def __init__(self, where: str, bad, total: int):
    self.bad = list(bad)
    self.total = int(total)
    lines = describe(self.bad, LISTED)
    super().__init__(
      f"{where}: {len(self.bad)} of {self.total} image files cannot be used:\n"
      + "\n".join(f"  {line}" for line in lines)
      + f"\nFix or remove them, or pass {SKIP_FLAG} (skip_bad_images=True) to skip them."
    )


def describe(bad, limit: int) -> list:
  """'path: reason' for the first `limit` bad files, and '... and N more' for the others."""
  lines = [f"{path}: {reason}" for path, reason in bad[:limit]]
  if len(bad) > limit:
    lines.append(f"... and {len(bad) - limit} more")
  return lines


def decode_rgb(contents):
  """Encoded image bytes -> uint8 (H, W, 3): the decode of the folder datasets' pipeline (as Keras')."""
  return tf.io.decode_image(contents, channels=3, expand_animations=False)


def _op_message(error) -> str:
  """A TF op error's message without its '{{function_node ...}}' prefix and '[Op:...]' suffix."""
  message = getattr(error, "message", None) or str(error)
  message = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", message)
  message = re.sub(r"\s*\[Op:\w+\].*$", "", message, flags=re.S)
  return message.strip() or type(error).__name__


def why_bad(path: str):
  """Why `path` cannot be used as an image (None if it decodes): run eagerly on the few files that failed."""
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    return f"cannot be read ({e.strerror or e})"
  if not data:
    return "empty file (0 bytes)"
  try:
    shape = decode_rgb(data).shape
  except (tf.errors.OpError, ValueError) as e:
    return f"not an image ({_op_message(e)})"
  if shape[0] == 0 or shape[1] == 0:
    return f"image of size {shape[0]}x{shape[1]}"
  return None


class _Progress:
  """A Keras progress bar on a terminal; otherwise a log line every `every_s` seconds."""

  def __init__(self, total: int, what: str, verbose: int, every_s: float = 10.0):
    self.total, self.what, self.every_s = total, what, every_s
    self.start = self.last = time.monotonic()
    self.bar = None
    self.verbose = verbose
    self.done = 0
    if verbose and sys.stdout.isatty():
      import keras

      self.bar = keras.utils.Progbar(total, verbose=1, unit_name="file")

  def update(self, done: int):
    if done == self.done:
      return
    self.done = done
    if self.bar is not None:
      self.bar.update(done)
    elif self.verbose and time.monotonic() - self.last >= self.every_s:
      self.last = time.monotonic()
      log.info("%s: checked %d/%d image files", self.what, done, self.total)


def check_images(paths, what: str = "images", verbose: int = 1, batch_size: int = 256):
  """[(path, reason)] of the files of `paths` that do not decode to an image of size > 0 (in order).

  Every file is decoded once, in parallel, by the pipeline's own `decode_rgb`; the files that fail are decoded
  again one by one to say why.
  """
  paths = [str(p) for p in paths]
  total = len(paths)
  if not total:
    return []
  if verbose:
    log.info("%s: checking %d image files ...", what, total)
  start = time.monotonic()

  def probe(index, path):
    return index, tf.shape(decode_rgb(tf.io.read_file(path)))[:2]

  ds = (
    tf.data.Dataset.from_tensor_slices(tf.constant(paths, tf.string))
    .enumerate()
    .map(probe, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    .ignore_errors()  # a file that fails is missing from the output: found below, and decoded again
    .batch(batch_size)
  )
  decoded = np.zeros(total, bool)
  sizes = np.zeros((total, 2), np.int64)
  progress = _Progress(total, what, verbose)
  for indices, shapes in ds.as_numpy_iterator():
    decoded[indices] = True
    sizes[indices] = shapes
    progress.update(int(indices[-1]) + 1)
  progress.update(total)
  bad = []
  for i in np.flatnonzero(~decoded | (sizes.min(axis=1) <= 0)):
    reason = why_bad(paths[i])
    if reason is not None:
      bad.append((paths[i], reason))
  if verbose:
    log.info(
      "%s: checked %d image files in %.1f s, %d cannot be used",
      what,
      total,
      time.monotonic() - start,
      len(bad),
    )
  return bad
