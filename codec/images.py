"""Reading user images into RGB, and tensors <-> PIL.

What each input becomes (documented in the README):
- EXIF orientation is applied (a phone photo comes back upright).
- Grayscale, palette, CMYK, 1-bit -> RGB.
- 16-bit images are scaled to 8 bits (value / 257), not clipped; float
  grayscale ("F") is taken as 0..255 and clipped.
- Alpha is not stored: transparent pixels are composited onto white first.
- Multi-frame files (GIF, multi-page TIFF): the first frame.
"""

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageReadError, ImageTooLargeError

DEFAULT_MAX_PIXELS = 1 << 26  # same cap as .dpc headers: 67 Mpx (8192 x 8192)


def load_image(path: Path | str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open an image file and return it as 8-bit RGB; CodecError subclasses on failure."""
    path = Path(path)
    if path.is_dir():
        raise ImageReadError(f"{path} is a folder, not an image")
    try:
        if path.stat().st_size == 0:
            raise ImageReadError(f"{path} is empty (0 bytes)")
        with open(path, "rb") as f:
            return to_rgb(_open(f, str(path), max_pixels), max_pixels)
    except OSError as exc:
        raise ImageReadError(f"cannot read {path}: {exc.strerror or exc}") from None


def _open(fp, name: str, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(fp)
            _check_size(im, max_pixels, name)
            im.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        if isinstance(exc, UnidentifiedImageError):
            raise ImageReadError(f"{name} is not an image Pillow can read") from None
        raise ImageTooLargeError(f"{name} is too large to decode safely") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageReadError(f"{name} is damaged or truncated ({exc})") from None
    return im


def _check_size(im: Image.Image, max_pixels: int, name: str) -> None:
    w, h = im.size
    if w * h > max_pixels:
        raise ImageTooLargeError(f"{name} is {w}x{h} ({w * h} pixels), over the limit of {max_pixels} pixels")
    if w < 1 or h < 1:
        raise ImageReadError(f"{name} has no pixels")


def to_rgb(im: Image.Image, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Any PIL image -> upright 8-bit RGB, by the rules in the module docstring."""
    _check_size(im, max_pixels, "image")
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # a broken EXIF block should not make a photo unreadable
        pass
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        # 16-bit (and 32-bit integer) gray: 0..65535 -> 0..255; float gray: clipped to 0..255.
        arr = np.asarray(im).astype(np.float64)
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


def image_to_tensor(im: Image.Image) -> torch.Tensor:
    """RGB PIL image -> (1, 3, H, W) float32 in [0, 1]."""
    arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


def tensor_to_image(x: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) float in [0, 1] -> RGB PIL image (rounded, clamped)."""
    arr = (x[0].clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr, "RGB")
