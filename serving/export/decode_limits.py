"""In-graph image size limits: read width and height from the header, refuse before decoding.

A 191 KiB PNG can hold 8192x8192 pixels: decoding it costs seconds and gigabytes. The served graph
therefore reads each encoded image's size from its header (PNG IHDR, GIF logical screen, BMP info
header, JPEG SOF marker via `tf.io.extract_jpeg_shape`) and fails with InvalidArgumentError naming the
image and its size when it has more than `max_pixels` pixels. Standard ops only, so TF Serving running
the export gets the same protection.
"""

import tensorflow as tf

DEFAULT_MAX_PIXELS = 4096 * 4096  # 16.8 MP: a 12-MP phone photo passes, an 8192x8192 bomb does not.
_PNG = b"\x89PNG\r\n\x1a\n"
_GIF = (b"GIF87a", b"GIF89a")
_BMP = b"BM"
_JPEG = b"\xff\xd8\xff"


def _field(data, start, length):
  """`length` bytes at `start` as int64 values (zeros past the end: a short header reads as 0x0)."""
  padded = tf.strings.join([data, tf.constant(b"\0" * (start + length))])
  raw = tf.io.decode_raw(tf.strings.substr(padded, start, length), tf.uint8)
  return tf.cast(tf.reshape(raw, [length]), tf.int64)


def _big_endian(values):
  result = tf.constant(0, tf.int64)
  for i in range(values.shape[0]):
    result = result * 256 + values[i]
  return result


def _little_endian(values):
  return _big_endian(tf.reverse(values, [0]))


def _starts_with(data, prefix):
  return tf.equal(tf.strings.substr(data, 0, len(prefix)), prefix)


def image_size(data):
  """(height, width) int64 scalars from an encoded image's header; (0, 0) for an unknown format.

  A truncated header also reads as (0, 0) or a partial size: the decoder then rejects the image itself.
  """
  zero = tf.constant(0, tf.int64)

  def png():
    fields = _field(data, 16, 8)  # IHDR: width, height as big-endian uint32
    return _big_endian(fields[4:8]), _big_endian(fields[0:4])

  def gif():
    fields = _field(data, 6, 4)  # logical screen: width, height as little-endian uint16
    return _little_endian(fields[2:4]), _little_endian(fields[0:2])

  def bmp():
    fields = _field(data, 18, 8)  # BITMAPINFOHEADER: width, height as little-endian int32
    width, height = _little_endian(fields[0:4]), _little_endian(fields[4:8])
    height = tf.where(height >= 2**31, 2**32 - height, height)  # negative height: top-down rows
    return height, width

  def jpeg():
    shape = tf.cast(tf.io.extract_jpeg_shape(data), tf.int64)
    return shape[0], shape[1]

  return tf.case(
    [
      (_starts_with(data, _PNG), png),
      (tf.logical_or(_starts_with(data, _GIF[0]), _starts_with(data, _GIF[1])), gif),
      (_starts_with(data, _BMP), bmp),
      (_starts_with(data, _JPEG), jpeg),
    ],
    default=lambda: (zero, zero),
    exclusive=False,
  )


def check_size(data, index, max_pixels, key="images_bytes"):
  """An Assert op: image `index` of the batch has at most `max_pixels` pixels (else InvalidArgument)."""
  height, width = image_size(data)
  pixels = height * width
  message = tf.strings.format(
    key + "[{}] is {}x{} pixels (width x height) = {} pixels, over the limit of {} pixels "
    "(max_image_pixels); send a smaller image.",
    (index, width, height, pixels, max_pixels),
  )
  return tf.debugging.Assert(pixels <= max_pixels, [message])
