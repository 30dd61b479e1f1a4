"""A decompression bomb sent to the served model: refused from its header, fast, with no memory growth.

The server and its tiny export (default limit 4096*4096 pixels) are conftest's session fixture.
Run with `-s` to see the figures (file size, time, server RSS before/after).
"""

import io
import os
import sys
import time

import grpc
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from PIL import Image  # noqa: E402

from serving.client import ServingError  # noqa: E402
from tests.conftest import assert_serving, pixels, png  # noqa: E402


def rss_mib(pid):
  """Resident memory of a process, MiB (Linux /proc)."""
  with open(f"/proc/{pid}/status") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 1024
  raise RuntimeError(f"no VmRSS for process {pid}")


def bomb_png(side):
  """A black side x side PNG: a few hundred KiB that decode to side*side*3 bytes."""
  buffer = io.BytesIO()
  Image.new("RGB", (side, side)).save(buffer, "PNG", optimize=True)
  return buffer.getvalue()


def server_pids(setup):
  """The server process and its children (model workers, where the server runs them)."""
  pid = setup["server"].process.pid
  children = f"/proc/{pid}/task/{pid}/children"
  extra = open(children).read().split() if os.path.exists(children) else []
  return [pid] + [int(p) for p in extra]


def test_an_8192_square_png_is_refused_fast_without_memory_growth(serving_setup):
  client = serving_setup["client"]
  data = bomb_png(8192)
  good = png(pixels(1)[0])
  client.predict([good], "tiny")  # everything warm before measuring
  before = sum(rss_mib(p) for p in server_pids(serving_setup))
  start = time.perf_counter()
  for signature in ("predict_bytes", "predict_only_bytes", "overlays_bytes"):
    with pytest.raises(ServingError) as info:
      client.predict([good, data], "tiny", signature=signature)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "images_bytes[1] is 8192x8192 pixels" in info.value.details, info.value.details
  elapsed = time.perf_counter() - start
  after = sum(rss_mib(p) for p in server_pids(serving_setup))
  print(
    f"\nbomb: {len(data) / 1024:.0f} KiB PNG of 8192x8192, 3 requests refused in {elapsed:.2f} s; "
    f"server RSS {before:.0f} -> {after:.0f} MiB"
  )
  assert elapsed < 5.0  # decoding it took 7-10 s per request
  assert after - before < 100  # decoding it kept ~1 GiB
  assert_serving(serving_setup)


if __name__ == "__main__":
  sys.exit(pytest.main(["-q", "-s", "-p", "no:cacheprovider", __file__]))
