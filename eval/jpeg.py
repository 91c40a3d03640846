"""JPEG (Pillow) at an exactly matched rate, interpolated: the baseline of the Kodak table (docs/results.md).

`eval.baselines.encode_at_bpp` picks one real JPEG file near a target rate;
this interpolates JPEG's metrics between the two qualities whose file sizes
bracket the target, so the comparison is at exactly our bpp.
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .baselines import BASELINES
from .metrics import bits_per_pixel, msssim, psnr

_JPEG = BASELINES["jpeg"]


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    return _JPEG.encode(image, quality)


@dataclass(frozen=True)
class MatchedPoint:
    bpp: float
    psnr: float
    msssim: float


def jpeg_at_bpp(image: Image.Image, target_bpp: float) -> MatchedPoint | None:
    """JPEG's PSNR/MS-SSIM at exactly `target_bpp`, interpolated (in log-rate) between
    the two qualities whose file sizes bracket it; None if JPEG's lowest rate is above it."""
    qualities = list(_JPEG.qualities)
    rates = {q: bits_per_pixel(len(encode_jpeg(image, q)), image) for q in qualities}
    below = [q for q in qualities if rates[q] <= target_bpp]
    above = [q for q in qualities if rates[q] >= target_bpp]
    if not below or not above:
        return None
    lo, hi = max(below, key=lambda q: rates[q]), min(above, key=lambda q: rates[q])
    points = []
    for q in (lo, hi):
        decoded = _JPEG.decode(encode_jpeg(image, q))
        points.append((rates[q], psnr(image, decoded), msssim(image, decoded)))
    (r0, p0, s0), (r1, p1, s1) = points
    t = 0.0 if r1 == r0 else (np.log(target_bpp) - np.log(r0)) / (np.log(r1) - np.log(r0))
    return MatchedPoint(bpp=target_bpp, psnr=p0 + t * (p1 - p0), msssim=s0 + t * (s1 - s0))
