"""Probing a decoded image for a short stream: decode again with bytes added where a complete
stream never reads, and compare (codec/image_checks.py: JPEG and lossy WebP).
"""

import io
import warnings

from PIL import Image, ImageChops

# Inserted before the end marker by check_jpeg_decoded: no 0xFF (never a marker), one run
# starting with 1-bits and one with 0-bits, so neither matches the decoder's zero fill.
PROBES = tuple(
    bytes([first]) + bytes((i * step + 11) % 255 for i in range(255)) for first, step in ((0xF5, 37), (0x5A, 101))
)


def decodes_the_same(image: Image.Image, data: bytes) -> bool:
    """Whether `data` decodes to exactly `image` (False if it does not decode)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. an MPO's frame offsets, shifted by a probe
            with Image.open(io.BytesIO(data)) as other:
                other.load()
                if other.mode != image.mode:
                    return False
                return ImageChops.difference(other, image).getbbox(alpha_only=False) is None  # RGBA: all bands
    except Exception:  # the inserted bytes were decoded, and did not even make sense: the data is short
        return False
