"""The `.dpc` container: a compact header, two entropy-coded sections, a trailer.

Layout (specified in docs/bitstream.md; all multi-byte integers little-endian,
"varint" = unsigned LEB128 of at most 4 bytes):

    magic "DP" (2) | version (1) | model id (2) | width varint | height varint
    | flags (1: bit 7 = hints follow, bits 0-6 = quality) | [version 3: rate offset, int8]
    | [hints length varint | hints]
    | z length varint
    | z section | y section (runs up to the trailer)
    | symbol check (2) | CRC-16 of everything before it (2)

Version 4 (weights with a checkerboard context, codec/entropy/context.py) always has the rate
offset and codes y in two passes: ... | z section | y anchors length varint | y anchors section
| y non-anchors section (runs up to the trailer) | symbol check | CRC.

Version 5 (every new file) always has the rate offset, then a layout byte: bit 0 = y in two
passes (sections as in version 4), bit 1 = the image is centred in a padded canvas of at least
128 px a side (codec/canvas.py places it and crops it; before, the image sat top-left, and its
top and left edges and 1 x N images decoded badly, on the canvas edge). The other bits are
reserved: a file that sets them is refused.

A typical 768x512 file spends 20 bytes outside the coded sections (19 when
the z section is under 128 bytes): 4 of them are the decoder hints.
Parsing checks every field against `BitstreamLimits` before anything is sized
from it, so a hostile header cannot make the decoder allocate.
"""

import binascii
import struct
from dataclasses import dataclass
from numbers import Integral

from .errors import BitstreamError, ImageTooLargeError, InvalidOptionError, UnsupportedVersionError
from .hints import RefineSettings, unpack_hints
from .rate_point import RatePoint
from .varint import VarintError, decode_varint, encode_varint

MAGIC = b"DP"
FORMAT_VERSION = 2  # 2: decoder hints carry the refinement settings (bitstream/hints.py)
RATE_OFFSET_VERSION = 3  # 3: adds a rate offset (written only for rates off the trained levels)
TWO_PASS_VERSION = 4  # 4: y in two sections (checkerboard anchors, then the rest); the rate offset always
LAYOUT_VERSION = 5  # 5: a layout byte (LAYOUT_TWO_PASS, LAYOUT_CENTRED) after the rate offset
SUPPORTED_VERSIONS = (1, 2, 3, 4, 5)
LAYOUT_TWO_PASS = 0x01
LAYOUT_CENTRED = 0x02
_LAYOUT_BITS = LAYOUT_TWO_PASS | LAYOUT_CENTRED
MAX_HINTS_BYTES = 64
# 67 Mpx, e.g. 8192 x 8192: the default cap on images and .dpc files. Decoding work and memory
# follow the size a header claims (docs/reliability.md): services decoding untrusted files may want less.
MAX_PIXELS = 1 << 26
_TRAILER = 4
_HINTS_FLAG = 0x80
MAX_QUALITY = 0x7F
_MIN_SIZE = len(MAGIC) + 1 + 2 + 1 + 1 + 1 + 1 + _TRAILER


@dataclass(frozen=True)
class BitstreamLimits:
    """Bounds a decoder enforces before allocating (decompression-bomb guard)."""

    max_pixels: int = MAX_PIXELS
    max_side: int = 1 << 16

    def __post_init__(self):
        # A limit of 0 (or less) would refuse every file with a misleading "too large"; the CLI
        # refuses it as a usage error, and the API (Codec.load(max_pixels=...)) now does the same.
        for name in ("max_pixels", "max_side"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
                raise InvalidOptionError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class Header:
    """What a `.dpc` file says about itself."""

    width: int  # pixels
    height: int  # pixels
    quality: int  # 1 = lowest rate; with a rate offset, the nearest trained level
    model_id: int  # 16-bit id of the weights that made the file
    hints: bytes = b""  # decoder hints: packed RefineSettings (bitstream/hints.py)
    version: int = FORMAT_VERSION
    rate_offset: int = 0  # version 3: -128..127, in 1/RATE_STEPS of a level from `quality`
    layout: int = 0  # version 5: LAYOUT_TWO_PASS | LAYOUT_CENTRED bits

    @property
    def two_pass(self) -> bool:
        """y is coded in two sections (checkerboard anchors, then the rest): version 4, or 5 with the bit."""
        return self.version == TWO_PASS_VERSION or bool(
            self.version >= LAYOUT_VERSION and self.layout & LAYOUT_TWO_PASS
        )

    @property
    def centred(self) -> bool:
        """The image sits centred in its padded canvas (version 5 with the bit), else top-left."""
        return bool(self.version >= LAYOUT_VERSION and self.layout & LAYOUT_CENTRED)

    @property
    def rate(self) -> RatePoint:
        """The point on the rate scale the file was coded at."""
        return RatePoint(self.quality, self.rate_offset)

    @property
    def level(self) -> float:
        """The 0-based rate level the file was coded at: quality - 1 + rate_offset / 32."""
        return self.rate.level

    @property
    def refine(self) -> RefineSettings:
        """The refinement the encoder intended; version 1 files (no diffusion prior then)
        and files without hints decode without refinement."""
        return unpack_hints(self.hints) if self.version >= 2 else RefineSettings()


@dataclass(frozen=True)
class Container:
    header: Header
    z_data: bytes  # entropy-coded hyper-latent symbols
    y_data: bytes  # entropy-coded latent symbols (two-pass: the checkerboard's anchors)
    symbol_check: int  # 16-bit check of the decoded symbols
    y_rest_data: bytes | None = None  # two-pass only: the other latent symbols (second pass)

    @property
    def overhead_bytes(self) -> int:
        """Bytes that are not entropy-coded payload (header + lengths + trailer)."""
        payload = len(self.z_data) + len(self.y_data) + len(self.y_rest_data or b"")
        return len(write_container(self)) - payload


def write_container(c: Container) -> bytes:
    h = c.header
    if not (0 < h.width < 1 << 28 and 0 < h.height < 1 << 28):
        raise ValueError("image size out of range")
    if not 0 < h.quality <= MAX_QUALITY or not 0 <= h.model_id < 1 << 16 or not 0 <= c.symbol_check < 1 << 16:
        raise ValueError("header field out of range")
    if len(h.hints) > MAX_HINTS_BYTES:
        raise ValueError(f"decoder hints exceed {MAX_HINTS_BYTES} bytes")
    if not -128 <= h.rate_offset <= 127 or (h.rate_offset and h.version < RATE_OFFSET_VERSION):
        raise ValueError("a rate offset needs format version 3 or later and must fit in -128..127")
    if h.layout & ~_LAYOUT_BITS or (h.layout and h.version < LAYOUT_VERSION):
        raise ValueError(f"format version {h.version} with layout {h.layout:#x} cannot be written")
    two_pass = h.two_pass
    if (c.y_rest_data is not None) != two_pass:
        raise ValueError("a second y section is written exactly for two-pass files")
    body = b"".join(
        [
            MAGIC,
            bytes([h.version]),
            struct.pack("<H", h.model_id),
            encode_varint(h.width),
            encode_varint(h.height),
            bytes([h.quality | (_HINTS_FLAG if h.hints else 0)]),
            struct.pack("<b", h.rate_offset) if h.version >= RATE_OFFSET_VERSION else b"",
            bytes([h.layout]) if h.version >= LAYOUT_VERSION else b"",
            encode_varint(len(h.hints)) if h.hints else b"",
            h.hints,
            encode_varint(len(c.z_data)),
            c.z_data,
            encode_varint(len(c.y_data)) if two_pass else b"",
            c.y_data,
            c.y_rest_data if two_pass else b"",
            struct.pack("<H", c.symbol_check),
        ]
    )
    return body + struct.pack("<H", _crc16(body))


def _crc16(data: bytes) -> int:
    # CRC-16/CCITT-FALSE: catches every 1-bit error and every burst up to 16 bits.
    return binascii.crc_hqx(data, 0xFFFF)


class _Reader:
    def __init__(self, data: bytes, end: int):
        self.data, self.pos, self.end = data, 0, end

    def take(self, n: int, what: str) -> bytes:
        if n > self.end - self.pos:
            raise BitstreamError(f"truncated file: {what} runs past the end")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def varint(self, what: str) -> int:
        try:
            value, self.pos = decode_varint(self.data, self.pos, self.end)
        except VarintError as exc:
            if exc.truncated:
                raise BitstreamError(f"truncated file: {what} runs past the end") from None
            raise BitstreamError(f"corrupt header: {what} is not a valid varint") from None
        return value


def read_header(data: bytes, limits: BitstreamLimits = BitstreamLimits()) -> tuple[Header, "_Reader"]:
    """Check magic, version, integrity and every header field; return the header.

    Raises BitstreamError (or a subclass) for anything that is not a sound
    .dpc file, ImageTooLargeError for sizes beyond `limits`.
    """
    data = bytes(data)
    if not data:
        raise BitstreamError("empty (0 bytes): not a .dpc file")
    if len(data) < len(MAGIC) + 1 or data[: len(MAGIC)] != MAGIC:
        raise BitstreamError("not a .dpc file (bad magic)")
    version = data[len(MAGIC)]
    if version not in SUPPORTED_VERSIONS:
        raise UnsupportedVersionError(
            f"unsupported .dpc format version {version}; this decoder reads version(s) "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))}"
        )
    if len(data) < _MIN_SIZE:
        raise BitstreamError(f"truncated file: {len(data)} bytes is shorter than any .dpc file")
    (crc,) = struct.unpack("<H", data[-2:])
    if crc != _crc16(data[:-2]):
        raise BitstreamError("corrupt or truncated file: integrity check (CRC-16) failed")
    r = _Reader(data, len(data) - _TRAILER)
    r.pos = len(MAGIC) + 1
    (model_id,) = struct.unpack("<H", r.take(2, "model id"))
    width = r.varint("width")
    height = r.varint("height")
    if not (1 <= width <= limits.max_side and 1 <= height <= limits.max_side):
        raise ImageTooLargeError(f"header claims a {width}x{height} image; sides must be 1..{limits.max_side}")
    if width * height > limits.max_pixels:
        raise ImageTooLargeError(
            f"header claims a {width}x{height} image ({width * height} pixels), over the "
            f"limit of {limits.max_pixels} pixels"
        )
    flags = r.take(1, "quality")[0]
    quality = flags & MAX_QUALITY
    if quality == 0:
        raise BitstreamError("corrupt header: quality level 0")
    rate_offset = struct.unpack("<b", r.take(1, "rate offset"))[0] if version >= RATE_OFFSET_VERSION else 0
    layout = r.take(1, "layout")[0] if version >= LAYOUT_VERSION else 0
    if layout & ~_LAYOUT_BITS:
        raise BitstreamError(f"corrupt header: unknown layout bits {layout:#04x}")
    n_hints = r.varint("hints length") if flags & _HINTS_FLAG else 0
    if n_hints > MAX_HINTS_BYTES or (flags & _HINTS_FLAG and n_hints == 0):
        raise BitstreamError(f"corrupt header: {n_hints} bytes of decoder hints")
    hints = r.take(n_hints, "decoder hints")
    header = Header(
        width=width,
        height=height,
        quality=quality,
        model_id=model_id,
        hints=hints,
        version=version,
        rate_offset=rate_offset,
        layout=layout,
    )
    header.refine  # noqa: B018 - malformed hints are refused here, before any decoding
    return header, r


def read_container(data: bytes, limits: BitstreamLimits = BitstreamLimits()) -> Container:
    """Parse and validate a whole `.dpc` file (bytes) into its parts."""
    header, r = read_header(data, limits)
    z_len = r.varint("z section length")
    z_data = r.take(z_len, "z section")
    y_rest_data = None
    if header.two_pass:
        y_data = r.take(r.varint("y anchors section length"), "y anchors section")
        y_rest_data = r.take(r.end - r.pos, "y section")
    else:
        y_data = r.take(r.end - r.pos, "y section")
    (check,) = struct.unpack("<H", bytes(data[-_TRAILER:-2]))
    return Container(header=header, z_data=z_data, y_data=y_data, symbol_check=check, y_rest_data=y_rest_data)
