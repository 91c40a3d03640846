"""Unsigned LEB128 of at most 4 bytes (values below 2**28): the header's sizes and the hints' seed.

300 -> 0xAC 0x02      (7 bits per byte, low first; the top bit says "more follows")
"""

MAX_BYTES = 4
LIMIT = 1 << (7 * MAX_BYTES)


class VarintError(ValueError):
    """A varint that runs past the end of its data (`truncated`) or past MAX_BYTES."""

    def __init__(self, truncated: bool):
        super().__init__("truncated varint" if truncated else f"varint longer than {MAX_BYTES} bytes")
        self.truncated = truncated


def encode_varint(value: int) -> bytes:
    if not 0 <= value < LIMIT:
        raise ValueError(f"varint out of range: {value}")
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def decode_varint(data: bytes, pos: int, end: int | None = None) -> tuple[int, int]:
    """The varint at data[pos:end] -> (value, position after it); VarintError if malformed."""
    end = len(data) if end is None else end
    value = 0
    for shift in range(0, 7 * MAX_BYTES, 7):
        if pos >= end:
            raise VarintError(truncated=True)
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    raise VarintError(truncated=False)
