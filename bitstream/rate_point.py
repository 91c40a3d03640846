"""The rate vocabulary every layer shares: a point on the continuous quality scale.

    quality 2.75  ==  RatePoint(nearest=3, offset=-8)  ==  level 1.75 (0-based)

A file stores `nearest` (its header's quality byte: the trained level the point is
closest to) and, from format version 3, `offset` in 1/RATE_STEPS of a level.
"""

from dataclasses import dataclass

RATE_STEPS = 32  # rate offset unit: 1/32 of a quality level


@dataclass(frozen=True)
class RatePoint:
    """Trained quality `nearest` (1-based) plus `offset` / RATE_STEPS of a level."""

    nearest: int
    offset: int = 0

    @property
    def level(self) -> float:
        """0-based level, as the models' gains and conditioning take it."""
        return self.nearest - 1 + self.offset / RATE_STEPS

    @property
    def quality(self) -> float:
        """1-based quality, as users give it (`--quality 2.75`)."""
        return self.level + 1


def bits_per_pixel(num_bytes: int, pixels: int) -> float:
    """The rate of a file: its whole size (header included) x 8 / pixels."""
    return num_bytes * 8 / pixels
