"""JPEG (Pillow) at a matched rate: the classical baseline of the Kodak table."""

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .metrics import bits_per_pixel, msssim, psnr

QUALITIES = tuple(range(1, 96))


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    """Pillow JPEG, 4:2:0, optimised Huffman tables (its best rate at a quality)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality, optimize=True)
    return buf.getvalue()


@dataclass(frozen=True)
class MatchedPoint:
    bpp: float
    psnr: float
    msssim: float


def jpeg_at_bpp(image: Image.Image, target_bpp: float) -> MatchedPoint | None:
    """JPEG's PSNR/MS-SSIM at exactly `target_bpp`, interpolated (in log-rate) between
    the two Pillow qualities whose file sizes bracket it; None if JPEG's lowest rate
    (quality 1) is above the target."""
    rates = {q: bits_per_pixel(len(encode_jpeg(image, q)), image) for q in QUALITIES}
    below = [q for q in QUALITIES if rates[q] <= target_bpp]
    above = [q for q in QUALITIES if rates[q] >= target_bpp]
    if not below or not above:
        return None
    lo, hi = max(below, key=lambda q: rates[q]), min(above, key=lambda q: rates[q])
    points = []
    for q in (lo, hi):
        decoded = Image.open(io.BytesIO(encode_jpeg(image, q))).convert("RGB")
        points.append((rates[q], psnr(image, decoded), msssim(image, decoded)))
    (r0, p0, s0), (r1, p1, s1) = points
    t = 0.0 if r1 == r0 else (np.log(target_bpp) - np.log(r0)) / (np.log(r1) - np.log(r0))
    return MatchedPoint(bpp=target_bpp, psnr=p0 + t * (p1 - p0), msssim=s0 + t * (s1 - s0))


def lowest_jpeg_bpp(image: Image.Image) -> float:
    return bits_per_pixel(len(encode_jpeg(image, 1)), image)
