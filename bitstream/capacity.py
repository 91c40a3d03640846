"""Can a section hold the symbols its header claims? Plain Python (no numpy), so that the CLI can
ask before it imports anything heavy (codec/shipped.py: refuse_early).

Every symbol costs at least `min_bits` (CdfTables.min_bits: the most probable bin of the most
peaked table); a section shorter than half of count x min_bits (a margin) is refused, before the
work and the memory that decoding its symbols would take.
"""

from .errors import BitstreamError


def check_bits(data: bytes, count: int, min_bits: float, what: str) -> None:
    """BitstreamError if `data` cannot hold `count` symbols of at least `min_bits` each."""
    if 8 * len(data) < count * min_bits / 2:
        raise BitstreamError(
            f"corrupt file: its {what} ({len(data)} bytes) cannot hold the {count} symbols its header claims"
        )


def check_sections_capacity(
    z_data: bytes, z_count: int, z_min_bits: float, y_data: bytes, y_count: int, y_min_bits: float
) -> None:
    """`check_bits` for a file's z and y sections."""
    check_bits(z_data, z_count, z_min_bits, "z section")
    check_bits(y_data, y_count, y_min_bits, "y section")
