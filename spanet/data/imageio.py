"""Lossless PNG encoding / decoding of record images (Pillow), the one codec of ingested examples."""

import io
from typing import Optional, Tuple

import numpy as np
from PIL import Image

#: Pillow modes kept as they are, and modes converted to grey ("L") or RGB losslessly enough.
_GREY_MODES = ("L", "1", "LA")
_RGB_MODES = ("RGB", "RGBA", "P", "PA", "CMYK", "YCbCr", "RGBX", "LAB", "HSV")
PNG_COMPRESS_LEVEL = 6
#: Most pixels an image may declare before it is decoded (64 Mpx: 64 MB grey, 192 MB RGB). A 400 kB
#: PNG can declare 20,000 x 20,000 pixels; Pillow alone only refuses past ~179 Mpx.
MAX_DECODED_PIXELS = 1 << 26


def oversize_reason(width: int, height: int, max_side: Optional[int] = None) -> str:
    """Why an image that declares ``width`` x ``height`` pixels is not decoded ("" when it may be)."""
    if max_side is not None and max(width, height) > max_side:
        return f"declares {width}x{height} pixels, more than {max_side} a side; not decoded"
    if width * height > MAX_DECODED_PIXELS:
        return f"declares {width}x{height} pixels, more than {MAX_DECODED_PIXELS:,} in all; not decoded"
    return ""


def encode_png(image: np.ndarray) -> bytes:
    """Encode a uint8 HxW (grey) or HxWx3 (RGB) array as PNG bytes (deterministic, no metadata)."""
    arr = np.ascontiguousarray(image)
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"PNG images must be uint8 HxW or HxWx3, got dtype {arr.dtype} shape {arr.shape}")
    buf = io.BytesIO()
    Image.fromarray(arr, mode="L" if arr.ndim == 2 else "RGB").save(
        buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL
    )
    return buf.getvalue()


def pil_to_array(img: Image.Image) -> Tuple[np.ndarray, str]:
    """Convert a decoded Pillow image to uint8 HxW / HxWx3; returns (array, "") or (empty, reason)."""
    mode = img.mode
    if mode in _GREY_MODES:
        return np.asarray(img.convert("L"), dtype=np.uint8), ""
    if mode in _RGB_MODES:
        return np.asarray(img.convert("RGB"), dtype=np.uint8), ""
    return np.empty((0, 0), np.uint8), f"unsupported image mode {mode!r} (only 8-bit grey or RGB images are read)"


def decode_image(data: bytes) -> np.ndarray:
    """Decode PNG/JPEG bytes to a uint8 HxW / HxWx3 array (ValueError if it cannot be decoded)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            reason = oversize_reason(*img.size)
            if reason:
                raise ValueError(reason)
            img.load()
            arr, reason = pil_to_array(img)
    except Exception as exc:  # Pillow raises many types for corrupt data
        raise ValueError(f"cannot decode image: {exc}") from exc
    if reason:
        raise ValueError(reason)
    return arr


def save_enlarged_png(image: np.ndarray, path: str, pixels: int) -> str:
    """Writes a uint8 image as a PNG enlarged by the integer factor that brings its longer side nearest
    ``pixels`` (nearest-neighbour: a wafer map's one pixel per die stays a crisp square); returns the path."""
    import os

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    picture = Image.fromarray(np.asarray(image, dtype=np.uint8))
    scale = max(1, int(round(pixels / max(picture.size))))
    picture.resize((picture.size[0] * scale, picture.size[1] * scale), Image.NEAREST).save(path)
    return path
