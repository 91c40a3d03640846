"""The continuous quality scale of one set of weights, and the search for a target rate.

    quality  -3 ........ 1 ... 2 ... 3 ... 4 ... 5 ... 6 ..... 8      (steps of 1/32)
             extrapolated |<------ trained levels ------>| extrapolated

Trained levels are the integers 1..L; between them the compressor's gains are
interpolated, up to RATE_EXTRAPOLATION levels beyond the ends extrapolated (docs/rates.md
measures those rates). A quality becomes a bitstream.RatePoint, which the header stores.
"""

import math
from collections.abc import Callable
from numbers import Real

from bitstream import RATE_STEPS, RatePoint

from .errors import CodecError, InvalidOptionError

DEFAULT_QUALITY = 3
# Gains extrapolated this many levels below the first and above the last trained level.
RATE_EXTRAPOLATION = (4, 2)


class RateScale:
    """The rate points a compressor with `levels` trained levels codes."""

    def __init__(self, levels: int):
        self.levels = levels

    @property
    def qualities(self) -> range:
        """The trained qualities 1..L."""
        return range(1, self.levels + 1)

    @property
    def span(self) -> tuple[int, int]:
        """The lowest and highest quality of the scale (trained and extrapolated)."""
        return 1 - RATE_EXTRAPOLATION[0], self.levels + RATE_EXTRAPOLATION[1]

    def point(self, quality: float) -> RatePoint:
        """quality -> its RatePoint; InvalidOptionError if off the scale or off its 1/32 grid."""
        if isinstance(quality, bool) or not isinstance(quality, Real):
            raise InvalidOptionError(f"quality must be a number, got {quality!r}")
        low, high = self.span
        if not low <= quality <= high:  # also refuses nan
            raise InvalidOptionError(
                f"quality must be between {low} and {high} (1..{self.levels} are trained), got {quality!r}"
            )
        # Rounding 3.01 to 3 would write a file other than the one asked for, without a word. A float
        # times 32 is exact, so a quality on the grid (2.5, -2.96875) passes and any other is refused.
        steps = float(quality) * RATE_STEPS
        if steps != round(steps):
            below = math.floor(steps) / RATE_STEPS
            raise InvalidOptionError(
                f"quality must be a multiple of 1/{RATE_STEPS}, got {quality!r} "
                f"(the nearest are {below:g} and {below + 1 / RATE_STEPS:g})"
            )
        return self.point_at(round(steps) - RATE_STEPS)

    def point_at(self, step: int) -> RatePoint:
        """The point `step` grid steps (1/32 level) above quality 1."""
        nearest = min(max(round(step / RATE_STEPS) + 1, 1), self.levels)
        return RatePoint(nearest, step - (nearest - 1) * RATE_STEPS)

    def check(self, rate: RatePoint, error: type[CodecError]) -> RatePoint:
        """`rate` if this scale codes it (a file's header), else `error`."""
        if isinstance(rate.nearest, bool) or rate.nearest not in self.qualities:
            raise error(f"quality must be one of {list(self.qualities)}, got {rate.nearest!r}")
        low, high = self.span
        if not low <= rate.quality <= high:
            raise error(f"corrupt header: rate level {rate.quality:g} is outside {low}..{high}")
        return rate

    def search(self, bpp_of: Callable[[RatePoint], float], target: float) -> RatePoint:
        """The point whose file is nearest `target` bpp (in log ratio), rate growing with quality.

        Every integer quality first, then bisection on the 1/32 grid between the two that
        bracket the target; a target beyond reach gives the end of the scale. `bpp_of` is
        called once per point tried.
        """
        tried: dict[int, float] = {}

        def bpp(step: int) -> float:
            if step not in tried:
                tried[step] = bpp_of(self.point_at(step))
            return tried[step]

        low, high = self.span
        grid = [(q - 1) * RATE_STEPS for q in range(low, high + 1)]
        below = [g for g in grid if bpp(g) <= target]
        if not below or below[-1] == grid[-1]:  # beyond reach: the end of the scale, even where the
            return self.point_at(below[-1] if below else grid[0])  # rate wobbles between fine steps
        a = below[-1]
        b = next(g for g in grid if g > a and bpp(g) > target)
        while b - a > 1:
            mid = (a + b) // 2
            a, b = (mid, b) if bpp(mid) <= target else (a, mid)
        return self.point_at(min(tried, key=lambda k: abs(math.log(tried[k] / target))))
