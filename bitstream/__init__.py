"""Bytes on disk: the `.dpc` container and the entropy coding of integer symbols.

Nothing here knows about neural networks: it receives integer symbols plus
integer CDF tables and returns bytes, and back.
"""

from .container import (
    FORMAT_VERSION,
    MAGIC,
    RATE_OFFSET_VERSION,
    RATE_STEPS,
    BitstreamLimits,
    Container,
    Header,
    read_container,
    read_header,
    write_container,
)
from .entropy_coding import CdfTables, decode_symbols, encode_symbols, symbol_check
from .hints import SAMPLERS, RefineSettings, pack_hints, unpack_hints

__all__ = [
    "FORMAT_VERSION",
    "RATE_OFFSET_VERSION",
    "RATE_STEPS",
    "MAGIC",
    "BitstreamLimits",
    "CdfTables",
    "Container",
    "Header",
    "RefineSettings",
    "SAMPLERS",
    "decode_symbols",
    "encode_symbols",
    "pack_hints",
    "read_container",
    "read_header",
    "symbol_check",
    "unpack_hints",
    "write_container",
]
