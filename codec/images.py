"""Reading user images into RGB, and tensors <-> PIL.

What each input becomes (documented in docs/cli.md):
- EXIF orientation is applied (a phone photo comes back upright).
- Grayscale, palette, CMYK, 1-bit -> RGB.
- 16-bit images are scaled to 8 bits (value / 257), not clipped; float
  grayscale ("F") is taken as 0..255 and clipped.
- Alpha is not stored: transparent pixels are composited onto white first.
- Multi-frame files (GIF, multi-page TIFF): the first frame.
- Every pixel is decoded before coding starts, and an image whose data is short or
  damaged is refused (ImageReadError, exit code 3): any decoder warning, a stream
  that ends early, a header that claims more than the data holds
  (codec/image_checks.py). The pixel limit is checked first, from the header.
- Float gray with NaN or infinite values is refused; a damaged EXIF block is ignored.

`as_image` says what Codec.compress accepts: a PIL image, an (H, W) or (H, W, 3)
uint8 numpy array, or a path (str or os.PathLike) to an image file.
"""

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from bitstream.container import MAX_PIXELS

from . import image_checks
from .errors import ImageReadError, ImageTooLargeError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif"})  # what folder runs read
DEFAULT_MAX_PIXELS = MAX_PIXELS  # same cap as .dpc headers: 67 Mpx (8192 x 8192)


def load_image(path: Path | str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open an image file and return it as 8-bit RGB; CodecError subclasses on failure."""
    path = Path(path)
    if path.is_dir():
        raise ImageReadError(f"{path} is a folder, not an image")
    try:
        if path.stat().st_size == 0:
            raise ImageReadError(f"{path} is empty (0 bytes)")
        with open(path, "rb") as f:
            return to_rgb(decode_image(f, str(path), max_pixels), max_pixels)
    except OSError as exc:
        raise ImageReadError(f"cannot read {path}: {exc.strerror or exc}") from None


def decode_image(fp, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open an image file object and decode all of it (any mode); CodecError subclasses on failure."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. "Truncated File Read": damaged
            _ignore_exif_warnings()
            im = Image.open(fp)
    except UnidentifiedImageError:
        raise ImageReadError(f"{name} is not an image Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLargeError(f"{name} is too large to decode safely") from None
    except Exception as exc:  # Pillow's parsers raise all sorts on damaged headers
        raise ImageReadError(f"{name} is damaged or truncated ({_what(exc)})") from None
    _check_size(im, max_pixels, name)
    _decode_all(im, name)
    return im


def _decode_all(im: Image.Image, name: str) -> None:
    """Decode every pixel of a just-opened image, or refuse it (see the module docstring)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # TIFF tags are parsed on first use, and may warn then
            _ignore_exif_warnings()
            data = image_checks.check_stream(im, name)
    except Warning as exc:
        raise ImageReadError(f"{name} is damaged ({_what(exc)})") from None
    try:
        with warnings.catch_warnings(), image_checks.decoder_messages(im.format) as messages:
            warnings.simplefilter("error")  # a decoder's warning is a damaged image, not a note on stderr
            _ignore_exif_warnings()
            im.load()
    except Exception as exc:
        raise ImageReadError(f"{name} is damaged or truncated ({_what(exc)})") from None
    if messages:
        raise ImageReadError(f"{name} is damaged or truncated ({messages[0]})")
    image_checks.check_decoded(im, data, name)


def _ignore_exif_warnings() -> None:
    """Within a `catch_warnings` block that makes warnings errors: not those about the EXIF block.
    It holds metadata (orientation at most, applied when it parses), not pixels: a photo whose
    EXIF is damaged but whose pixels are whole is read (Pillow: "Corrupt EXIF data", "Possibly
    corrupt EXIF data", "Corrupt EXIF MakerNote")."""
    warnings.filterwarnings("ignore", message=r"(Possibly )?[Cc]orrupt EXIF")


def _what(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def as_image(obj, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Anything Codec.compress accepts -> a decoded PIL image (any mode); ImageReadError for the rest."""
    if isinstance(obj, Image.Image):
        if isinstance(obj, ImageFile.ImageFile) and obj.tile:  # opened, not yet decoded
            if obj.fp is None:
                raise ImageReadError("the image's file was closed before its pixels were read (call .load() first)")
            _check_size(obj, max_pixels, "image")
            _decode_all(obj, "image")
        return obj
    if isinstance(obj, (str, os.PathLike)):
        return load_image(obj, max_pixels)
    if isinstance(obj, np.ndarray):
        return _from_array(obj, max_pixels)
    hint = " (encoded image data: pass Image.open(io.BytesIO(data)))" if isinstance(obj, (bytes, bytearray)) else ""
    raise ImageReadError(
        f"expected a PIL image, an (H, W) or (H, W, 3) uint8 array or a path, got {type(obj).__name__}{hint}"
    )


def _from_array(arr: np.ndarray, max_pixels: int) -> Image.Image:
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ImageReadError(f"an image array must be (H, W) or (H, W, 3), got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            raise ImageReadError("image array has NaN or infinite values")
        raise ImageReadError(f"an image array must be uint8 (0..255), got {arr.dtype}")
    h, w = arr.shape[:2]
    _check_size_of(w, h, max_pixels, "image array")
    return Image.fromarray(np.ascontiguousarray(arr))


def _check_size(im: Image.Image, max_pixels: int, name: str) -> None:
    _check_size_of(*im.size, max_pixels, name)


def _check_size_of(w: int, h: int, max_pixels: int, name: str) -> None:
    if w * h > max_pixels:
        raise ImageTooLargeError(f"{name} is {w}x{h} ({w * h} pixels), over the limit of {max_pixels} pixels")
    if w < 1 or h < 1:
        raise ImageReadError(f"{name} has no pixels")


def to_rgb(im: Image.Image, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Any PIL image -> upright 8-bit RGB, by the rules in the module docstring."""
    im = as_image(im, max_pixels) if isinstance(im, ImageFile.ImageFile) else im
    _check_size(im, max_pixels, "image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about it, on stderr
            im = ImageOps.exif_transpose(im)
    except Exception:  # a broken EXIF block should not make a photo unreadable
        pass
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        # 16-bit (and 32-bit integer) gray: 0..65535 -> 0..255; float gray: clipped to 0..255.
        arr = np.asarray(im).astype(np.float64)
        if not np.isfinite(arr).all():
            raise ImageReadError("image has NaN or infinite pixel values")
        if im.mode != "F":
            arr = arr / 257.0
        im = Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode in ("RGB", "L") and "transparency" in im.info):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    return im.convert("RGB")


def encodable(image, limits) -> Image.Image:
    """RGB version of `image` (what Codec.compress accepts; see as_image), refused if a decoder
    with these BitstreamLimits would refuse its file."""
    image = to_rgb(as_image(image, limits.max_pixels), limits.max_pixels)
    if max(image.size) > limits.max_side:
        raise ImageTooLargeError(f"image is {image.width}x{image.height}; sides must be 1..{limits.max_side}")
    return image
