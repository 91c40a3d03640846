"""JPEG and MPO streams: is all the scan data the header promises there? (codec/image_checks.py)

`check_jpeg` walks the markers before decoding; `check_jpeg_decoded` probes the decoded image;
`check_mpo` checks the further pictures of a camera's multi-picture file.
"""

import re
import struct
from dataclasses import dataclass, field

from PIL import Image

from .errors import ImageReadError
from .stream_probes import PROBES, decodes_the_same

# A marker inside JPEG scan data: 0xFF followed by anything but 0x00 (a stuffed 0xFF byte),
# RST0..7 (restart markers, part of the scan) or 0xFF (fill bytes before a marker).
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_RESTART = re.compile(rb"\xff[\xd0-\xd7]")
_FRAMES = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_DCT_FRAMES = _FRAMES - {0xC3, 0xC7, 0xCB, 0xCF}  # not lossless
_PROGRESSIVE_FRAMES = {0xC2, 0xC6, 0xCA, 0xCE}
_HUFFMAN_FRAMES = (0xC0, 0xC1, 0xC2)  # baseline, extended, progressive: >= 1 coded bit per block


@dataclass
class JpegLayout:
    """What the marker walk finds in a JPEG's first image."""

    end: int = 0  # offset of its end-of-image marker
    frame: int = 0  # the SOFn marker
    width: int = 0
    height: int = 0
    sampling: dict = field(default_factory=dict)  # component id -> (h, v)
    scan_bytes: int = 0  # entropy-coded bytes, all scans
    restart_interval: int = 0  # MCUs per restart segment (DRI), 0 = none
    last_scan_restarts: int = 0  # RSTn markers in the last scan
    coded: dict = field(default_factory=dict)  # component id -> coefficients coded to their last bit
    mp_offset: int = 0  # where an MPO's picture offsets count from (its MP index's TIFF header)


def check_jpeg(data: bytes, name: str) -> JpegLayout:
    """The first image's structure up to its end marker; ImageReadError if it is short."""
    j = _jpeg_layout(data, name)
    if not j.frame:
        raise ImageReadError(f"{name} is damaged: it has no frame header")
    if j.frame in _DCT_FRAMES:
        # Every component needs all 64 coefficients coded to their last bit: a progressive file
        # cut between two scans (and closed again) lacks some.
        full = set(range(64)) if j.frame in _PROGRESSIVE_FRAMES else None
        for component in j.sampling:
            if component not in j.coded or (full is not None and j.coded[component] != full):
                raise ImageReadError(f"{name} is cut short: its scans stop before its last coefficients")
    if j.frame in _HUFFMAN_FRAMES and j.height:
        hmax, vmax = (max(s[k] for s in j.sampling.values()) for k in (0, 1))
        blocks = sum(
            _ceil(_ceil(j.width * h, hmax), 8) * _ceil(_ceil(j.height * v, vmax), 8) for h, v in j.sampling.values()
        )
        if j.scan_bytes * 8 < blocks:
            raise ImageReadError(
                f"{name} is cut short: {j.scan_bytes} bytes of scan data cannot code its {j.width}x{j.height} pixels"
            )
    return j


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _jpeg_layout(data: bytes, name: str) -> JpegLayout:
    if data[:2] != b"\xff\xd8":
        raise ImageReadError(f"{name} is not a JPEG file")
    j, pos, n = JpegLayout(), 2, len(data)
    cut = ImageReadError(f"{name} is cut short: it has no end-of-image marker")
    while True:
        if pos >= n:
            raise cut
        if data[pos] != 0xFF:
            raise ImageReadError(f"{name} is damaged: stray bytes at offset {pos} where a marker belongs")
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            raise cut
        marker, pos = data[pos], pos + 1
        if marker == 0xD9:
            j.end = pos - 2
            return j
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length field
            continue
        if pos + 2 > n:
            raise cut
        length = struct.unpack(">H", data[pos : pos + 2])[0]
        if length < 2 or pos + length > n:
            raise cut
        body = data[pos + 2 : pos + length]
        pos += length
        if marker in _FRAMES and not j.frame:
            _jpeg_frame(j, marker, body, name)
        elif marker == 0xDD and len(body) >= 2:
            j.restart_interval = struct.unpack(">H", body[:2])[0]
        elif marker == 0xE2 and body[:4] == b"MPF\0" and not j.mp_offset:
            j.mp_offset = pos - length + 2 + 4
        elif marker == 0xDA:  # a scan: its header, then entropy-coded data up to the next marker
            _jpeg_scan(j, body, name)
            found = _SCAN_END.search(data, pos)
            if found is None:
                raise ImageReadError(f"{name} is cut short: its scan data has no end")
            j.scan_bytes += found.start() - pos
            j.last_scan_restarts = len(_RESTART.findall(data, pos, found.start()))
            pos = found.start()


def _jpeg_frame(j: JpegLayout, marker: int, body: bytes, name: str) -> None:
    if len(body) < 6 or len(body) < 6 + 3 * body[5]:
        raise ImageReadError(f"{name} is damaged: its frame header is too short")
    j.frame = marker
    j.height, j.width = struct.unpack(">HH", body[1:5])
    j.sampling = {body[6 + 3 * k]: (body[7 + 3 * k] >> 4, body[7 + 3 * k] & 15) for k in range(body[5])}
    if not j.sampling or any(h == 0 or v == 0 for h, v in j.sampling.values()):
        raise ImageReadError(f"{name} is damaged: its frame header has a bad component")


def _jpeg_scan(j: JpegLayout, body: bytes, name: str) -> None:
    if not body or len(body) < 4 + 2 * body[0]:
        raise ImageReadError(f"{name} is damaged: a scan header is too short")
    count = body[0]
    start, stop, approximation = body[1 + 2 * count : 4 + 2 * count]
    band = set(range(start, min(stop, 63) + 1)) if j.frame in _PROGRESSIVE_FRAMES else set(range(64))
    for k in range(count):
        if approximation & 15 == 0:  # the coefficients' last bit
            j.coded.setdefault(body[1 + 2 * k], set()).update(band)


def check_jpeg_decoded(image: Image.Image, data: bytes, name: str) -> None:
    """After decoding: refuse `image` if the decoder ran out of scan data before its last block.

    Bytes are inserted before the end marker, and the image decoded again: a complete
    stream never reads them, a short one decodes them instead of the blank fill. They are
    a run of bytes (the rest of the segment the stream was cut in), a restart marker
    where the file has restart intervals (the one a short stream looks for next), and
    another run (the segment after it); twice, with the runs swapped, so that one of
    them at least differs from the fill in its first bits.
    """
    j = check_jpeg(data, name)
    restart = bytes([0xFF, 0xD0 + j.last_scan_restarts % 8]) if j.restart_interval else b""
    for first, second in (PROBES, PROBES[::-1]):
        if not decodes_the_same(image, data[: j.end] + first + restart + second + data[j.end :]):
            raise ImageReadError(f"{name} is cut short: its scan data ends before its last pixels")


def check_mpo(im: Image.Image, layout: JpegLayout, data: bytes, name: str) -> None:
    """Every further picture the MP index lists starts inside the file and reaches its end marker."""
    entries = im.mpinfo.get(0xB002, []) if getattr(im, "mpinfo", None) else []
    for k, entry in enumerate(entries[1:], start=2):
        start = entry["DataOffset"] + layout.mp_offset
        try:
            if start + entry["Size"] > len(data):
                raise ImageReadError("")
            _jpeg_layout(data[start:], name)
        except ImageReadError:
            raise ImageReadError(f"{name} is cut short: its picture {k} of {len(entries)} is incomplete") from None
