"""Compress to a target rate: the quality on the continuous scale whose file is nearest a bpp.

The autoencoder runs once; each quality tried is a real file, and its rate is file bytes x 8 /
pixels, header included. With effort, the search runs on one-pass files, then the effort search
at most twice: at that quality, and at the quality whose one-pass rate is the target scaled by
what the first search saved.
"""

import math

from bitstream import RatePoint, bits_per_pixel

from .errors import InvalidOptionError
from .images import encodable


def search_bpp(codec, image, bpp: float, effort: int, progress, refine_overrides: dict) -> tuple[bytes, float]:
    """(bytes of the file whose rate is nearest `bpp`, its quality), written by `codec` (a Codec)."""
    if isinstance(bpp, bool) or not isinstance(bpp, (int, float)) or not 0 < bpp < 64:
        raise InvalidOptionError(f"target bpp must be a number in (0, 64), got {bpp!r}")
    image = encodable(image, codec.limits)
    latent = codec._encode_rgb(image)
    pixels = image.width * image.height
    files: dict[tuple[RatePoint, int], bytes] = {}

    def bpp_of(rate: RatePoint, effort: int = 0) -> float:
        if (rate, effort) not in files:
            try:
                settings = codec.refiner.default(rate.nearest).with_overrides(**refine_overrides)
            except ValueError as exc:
                raise InvalidOptionError(str(exc)) from None
            files[rate, effort] = codec._write(image, latent, rate, settings, effort, progress)
        return bits_per_pixel(len(files[rate, effort]), pixels)

    rate = codec.rates.search(bpp_of, bpp)
    if effort:
        saved = bpp_of(rate, effort) / bpp_of(rate)
        bpp_of(codec.rates.search(bpp_of, bpp / saved), effort)
        rate = min((r for r, e in files if e == effort), key=lambda r: abs(math.log(bpp_of(r, effort) / bpp)))
    return files[rate, effort], rate.quality
