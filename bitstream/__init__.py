"""Bytes on disk: the `.dpc` container and the entropy coding of integer symbols.

Nothing here knows about neural networks: it receives integer symbols plus
integer CDF tables and returns bytes, and back.

Names are imported on first use, so `bitstream.errors` (the base of the codec's
exception family) costs no numpy or constriction import.
"""

import importlib

_SOURCES = {  # public name -> the submodule that defines it (imported on first use, PEP 562)
    **dict.fromkeys(
        (
            "FORMAT_VERSION",
            "LAYOUT_CENTRED",
            "LAYOUT_TWO_PASS",
            "LAYOUT_VERSION",
            "MAGIC",
            "RATE_OFFSET_VERSION",
            "TWO_PASS_VERSION",
            "BitstreamLimits",
            "Container",
            "Header",
            "read_container",
            "read_header",
            "write_container",
        ),
        "container",
    ),
    **dict.fromkeys(("CdfTables", "decode_symbols", "encode_symbols", "symbol_check"), "entropy_coding"),
    **dict.fromkeys(("SAMPLERS", "RefineSettings", "pack_hints", "unpack_hints"), "hints"),
    **dict.fromkeys(("RATE_STEPS", "RatePoint", "bits_per_pixel"), "rate_point"),
}

__all__ = sorted(_SOURCES)


def __getattr__(name: str):
    if name not in _SOURCES:
        raise AttributeError(f"module 'bitstream' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_SOURCES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SOURCES))
