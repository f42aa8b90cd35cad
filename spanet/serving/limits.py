"""Bounds on what a client controls, applied before anything is decoded: one check for every way in.

Images reach the model as the values of a string input (``serving_default``'s ``images``) or as
``bytes`` features of serialized tf.Examples (``serving_examples``, Classify). Both gRPC Predict
and REST predict build a PredictRequest and pass it through :meth:`RequestGuard.check_request`;
Classify passes its examples through :meth:`RequestGuard.check_examples`.

The declared size of an image is read from its header, for every format the model's
``tf.io.decode_image`` accepts and told apart the way it does (by the leading bytes): PNG (IHDR),
JPEG (the first SOFn marker, found the way libjpeg finds markers), GIF (the logical screen and
every frame, which giflib allocates before TensorFlow takes the first) and BMP (the info header,
read as TensorFlow reads it). Bytes of no recognised format are left to the model, whose decode
op answers INVALID_ARGUMENT. A recognised format whose header is cut short or corrupt is refused
here: its decoder would refuse it too.

Then at most ``max_concurrent_predictions`` requests convert, decode and run at once; others wait
for a slot (up to ``max_queue_wait_s`` or their deadline) and then get RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import re
import struct
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Mapping, Optional, Sequence

import grpc
from google.protobuf.message import DecodeError
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import tensor_pb2, types_pb2

from spanet.serving.config import RequestLimits
from spanet.serving.errors import ServingError, invalid_argument

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
GIF_MAGIC = b"GIF8"
BMP_MAGIC = b"BM"
#: JPEG start-of-frame markers (baseline, extended, progressive, lossless; Huffman or arithmetic).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: Markers after which no frame header can come: SOS (scan data), EOI, a second SOI.
_JPEG_NO_FRAME = {0xDA: "its scan starts", 0xD9: "it ends", 0xD8: "a second start-of-image"}
#: Markers without a length: RSTn and TEM.
_JPEG_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}
#: libjpeg's marker search: skip anything up to 0xFF, then 0xFF fill bytes; FF 00 is stuffed data.
_JPEG_MARKER = re.compile(rb"\xff+([^\x00\xff])")
#: A serialized, non-empty tf.Example starts with its field 1 (``features``, length-delimited).
_EXAMPLE_FIRST_BYTE = b"\x0a"
#: Sub-blocks a GIF may hold: encoders write 255-byte ones, so a legitimate GIF within the message
#: limit holds far fewer; more is refused rather than walked.
MAX_GIF_BLOCKS = 1_000_000


@dataclass(frozen=True)
class ImageHeader:
    """What an encoded image declares: its format, size, and the pixels its decoder allocates."""

    format: str
    width: int
    height: int
    #: Pixels decoding allocates: width * height, or for a GIF the screen plus every frame.
    pixels: int
    frames: int = 1

    def describe(self) -> str:
        """E.g. ``PNG of 20000x20000 pixels`` or ``GIF of 64x64 pixels with 900 frames``."""
        frames = f" with {self.frames} frames" if self.frames > 1 else ""
        return f"{self.format} of {self.width}x{self.height} pixels{frames}"


def _u16be(data: bytes, at: int) -> int:
    return (data[at] << 8) | data[at + 1]


def _png_header(data: bytes) -> ImageHeader:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ValueError("a PNG without its IHDR header (cut short or corrupt)")
    width, height = struct.unpack_from(">II", data, 16)
    return ImageHeader("PNG", width, height, width * height)


def _jpeg_header(data: bytes) -> ImageHeader:
    at = 2
    while True:
        match = _JPEG_MARKER.search(data, at)
        if match is None:
            raise ValueError("a JPEG that ends before its frame header (SOFn)")
        marker, at = match.group(1)[0], match.end()
        if marker in _JPEG_SOF:
            if at + 7 > len(data):
                raise ValueError("a JPEG whose frame header (SOFn) is cut short")
            height, width = _u16be(data, at + 3), _u16be(data, at + 5)
            return ImageHeader("JPEG", width, height, width * height)
        if marker in _JPEG_NO_FRAME:
            raise ValueError(f"a JPEG without a frame header (SOFn) before {_JPEG_NO_FRAME[marker]}")
        if marker in _JPEG_STANDALONE:
            continue
        if at + 2 > len(data):
            raise ValueError("a JPEG that ends before its frame header (SOFn)")
        length = _u16be(data, at)
        if length < 2:
            raise ValueError(f"a JPEG with a marker segment of length {length}")
        at += length


def _gif_skip_sub_blocks(data: bytes, at: int, budget: list) -> int:
    """The offset after a chain of GIF sub-blocks starting at `at` (or len(data) if cut short)."""
    end = len(data)
    while at < end:
        size = data[at]
        at += 1 + size
        if size == 0:
            return at
        budget[0] -= 1
        if budget[0] < 0:
            raise ValueError(f"a GIF of more than {MAX_GIF_BLOCKS} data blocks")
    return end


def _gif_header(data: bytes) -> ImageHeader:
    if len(data) < 13:
        raise ValueError("a GIF whose screen descriptor is cut short")
    width, height = struct.unpack_from("<HH", data, 6)
    packed = data[10]
    at = 13 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0)
    frame_pixels, frames, budget, end = 0, 0, [MAX_GIF_BLOCKS], len(data)
    while at < end:  # giflib allocates each frame (DGifSlurp) before TensorFlow takes the first one
        kind = data[at]
        if kind == 0x3B:  # trailer
            break
        if kind == 0x21:  # extension: label, then sub-blocks
            at = _gif_skip_sub_blocks(data, at + 2, budget)
        elif kind == 0x2C:  # image descriptor: left, top, width, height, packed
            if at + 10 > end:
                break
            frame_w, frame_h = struct.unpack_from("<HH", data, at + 5)
            local = data[at + 9]
            frames += 1
            frame_pixels += frame_w * frame_h
            at += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0)
            at = _gif_skip_sub_blocks(data, at + 1, budget)  # after the LZW minimum code size
        else:  # giflib stops here with an error
            break
    return ImageHeader("GIF", width, height, width * height + frame_pixels, max(frames, 1))


def _bmp_header(data: bytes) -> ImageHeader:
    if len(data) < 26:
        raise ValueError("a BMP whose info header is cut short")
    width, height = struct.unpack_from("<ii", data, 18)  # where TensorFlow's decode_bmp reads them
    width, height = abs(width), abs(height)
    return ImageHeader("BMP", width, height, width * height)


def read_image_header(data: bytes) -> Optional[ImageHeader]:
    """The declared format and size of PNG, JPEG, GIF or BMP bytes; None for bytes of no such format.

    Raises ValueError (one line) for a recognised format whose header is cut short or corrupt, or
    that declares an empty image.
    """
    if data.startswith(PNG_MAGIC):
        header = _png_header(data)
    elif data.startswith(JPEG_MAGIC):
        header = _jpeg_header(data)
    elif data.startswith(GIF_MAGIC):
        header = _gif_header(data)
    elif data.startswith(BMP_MAGIC):
        header = _bmp_header(data)
    else:
        return None
    if header.width == 0 or header.height == 0:
        raise ValueError(f"a {header.describe()}: an empty image")
    return header


class RequestGuard:
    """The limits of one server: request content checks and the slots for decoding and running."""

    def __init__(self, limits: RequestLimits):
        self.limits = limits
        self._slots = threading.BoundedSemaphore(limits.max_concurrent_predictions)
        self._count_lock = threading.Lock()
        self._waiting = 0

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot now."""
        return self._waiting

    # -- content ----------------------------------------------------------------------------------
    def check_request(self, inputs: Mapping[str, tensor_pb2.TensorProto]) -> None:
        """Every string input of a request: batch size, then each image's declared pixels, then their sum.

        Raises INVALID_ARGUMENT naming the input, the value's index and what is over which limit.
        """
        for alias in sorted(inputs):
            proto = inputs[alias]
            if proto.dtype == types_pb2.DT_STRING:
                self._check_values(alias, proto.string_val)

    def check_examples(self, examples: Sequence[bytes], what: str = "examples") -> None:
        """Serialized tf.Examples (Classify): their count and the images in their bytes features."""
        self._check_values(what, examples)

    def _check_values(self, alias: str, values: Sequence[bytes]) -> None:
        limits = self.limits
        count = len(values)
        if count > limits.max_batch_images:
            raise invalid_argument(
                f"input {alias}: {count} values in one request, over the limit of {limits.max_batch_images} "
                f"(max_batch_images); send smaller batches"
            )
        total = 0
        for index, value in enumerate(values):
            header = self._header(f"input {alias}[{index}]", value)
            if header is not None:
                total += self._count(f"input {alias}[{index}]", header)
                continue
            for where, image in _example_images(value):
                header = self._header(f"input {alias}[{index}] {where}", image)
                if header is not None:
                    total += self._count(f"input {alias}[{index}] {where}", header)
        if total > limits.max_batch_pixels:
            raise invalid_argument(
                f"input {alias}: its {count} images declare {total} pixels together, over the limit of "
                f"{limits.max_batch_pixels} per request (max_batch_pixels); send fewer or smaller images"
            )

    @staticmethod
    def _header(where: str, value: bytes) -> Optional[ImageHeader]:
        try:
            return read_image_header(value)
        except ValueError as exc:
            raise invalid_argument(f"{where}: {exc}") from None

    def _count(self, where: str, header: ImageHeader) -> int:
        limit = self.limits.max_image_pixels
        if header.pixels > limit:
            raise invalid_argument(
                f"{where}: a {header.describe()} ({header.pixels} pixels to decode) is over the limit of "
                f"{limit} pixels per image (max_image_pixels)"
            )
        return header.pixels

    # -- concurrency ------------------------------------------------------------------------------
    @contextmanager
    def slot(self, wait_s: Optional[float] = None) -> Iterator[None]:
        """Hold one of the decode-and-run slots; RESOURCE_EXHAUSTED if none frees up within the wait."""
        wait = self.limits.max_queue_wait_s if wait_s is None else max(0.0, min(wait_s, self.limits.max_queue_wait_s))
        with self._count_lock:
            self._waiting += 1
        try:
            acquired = self._slots.acquire(timeout=wait)
        finally:
            with self._count_lock:
                self._waiting -= 1
        if not acquired:
            raise ServingError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"server busy: {self.limits.max_concurrent_predictions} requests are decoding and running "
                f"(max_concurrent_predictions) and none finished within {wait:g} s; retry later",
            )
        try:
            yield
        finally:
            self._slots.release()


def _example_images(value: bytes) -> Iterator[tuple]:
    """(``feature <name>[<i>]``, bytes) of a serialized tf.Example's bytes features; nothing for other bytes."""
    if value[:1] != _EXAMPLE_FIRST_BYTE:
        return
    try:
        example = example_pb2.Example.FromString(value)
    except (DecodeError, ValueError, RuntimeError):
        return
    for name, feature in example.features.feature.items():
        if feature.WhichOneof("kind") == "bytes_list":
            for i, item in enumerate(feature.bytes_list.value):
                yield f"feature {name}[{i}]", item
