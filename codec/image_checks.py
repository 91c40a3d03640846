"""Is all the image data a file's header promises really there? Checked before coding.

Pillow fills in what a stream lacks without a word: a PNG whose zlib stream ends early
(or holds fewer rows than its header) decodes with the missing rows blank, and a JPEG
cut inside its scan data and closed with an end-of-image marker decodes with the rest
grey. Other formats' decoders refuse short data themselves (libwebp, libtiff, Pillow's
raw, BMP and GIF decoders). So:

- PNG (`check_png`, before decoding, without allocating the image): every chunk inside
  the file with a good CRC, IEND present, and the inflated IDAT stream exactly as long
  as the header's size asks (Adam7 interlacing included), its zlib stream complete.
- JPEG (`check_jpeg` before decoding, `check_jpeg_decoded` after): the marker structure
  up to the end-of-image marker, at least one bit of scan data per 8x8 block (a tiny file
  claiming 8192 x 8192 stops here, in microseconds), and then the decoder must not have
  read past the end of its data: decoding again with bytes inserted before the end
  marker must give the same pixels (a complete stream never reads them; a short one
  decodes them instead of the blank fill).
- TIFF (`check_tiff`, from the parsed tags): as many strips or tiles as the size needs,
  each inside the file, uncompressed ones long enough for their rows (Pillow decodes
  only the strips a file lists, and leaves the rest of the image blank). libtiff prints
  its warnings on stderr (fd 2); `decoder_messages` catches them while a TIFF decodes,
  and any message is a damaged image.
- MPO (multi-picture JPEG): every picture its index lists lies inside the file, up to
  its end marker (an incomplete frame), though only the first is decoded.
- Lossy WebP (`check_webp_decoded`, after decoding): libwebp reads a missing byte or so
  at the end of a VP8 stream as zeros without a word; decoding again with bytes appended
  to the VP8 chunk must give the same pixels (the coder's own flush makes a complete
  stream independent of what follows it).

All refusals are ImageReadError (exit code 3). The JPEG checks live in codec/jpeg_checks.py.
"""

import os
import struct
import sys
import tempfile
import zlib
from contextlib import contextmanager

from PIL import Image

from .errors import ImageReadError
from .jpeg_checks import check_jpeg, check_jpeg_decoded, check_mpo
from .stream_probes import PROBES, decodes_the_same

JPEG_FORMATS = ("JPEG", "MPO")  # MPO: a camera's multi-picture JPEG, whose first image is decoded

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_INFLATE_STEP = 1 << 20  # bytes of inflated data held at a time: counting, not keeping


def check_stream(im: Image.Image, name: str) -> bytes:
    """Before decoding a just-opened image: ImageReadError if its file is short.

    Returns the file's bytes where `check_decoded` needs them (JPEG), else b"".
    """
    if im.format == "TIFF":
        check_tiff(im, _file_size(im.fp), name)
    if im.format not in ("PNG", "WEBP", *JPEG_FORMATS):
        return b""
    data = _file_bytes(im.fp)
    if im.format == "WEBP":
        return data
    if im.format == "PNG":
        check_png(data, name)
        return b""
    layout = check_jpeg(data, name)
    if im.format == "MPO":
        check_mpo(im, layout, data, name)
    return data


def check_decoded(im: Image.Image, data: bytes, name: str) -> None:
    """After decoding: ImageReadError if the decoder ran out of data (JPEG, WebP; see the module docstring)."""
    if im.format in JPEG_FORMATS:
        check_jpeg_decoded(im, data, name)
    elif im.format == "WEBP":
        check_webp_decoded(im, data, name)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _file_bytes(fp) -> bytes:
    pos = fp.tell()
    try:
        fp.seek(0)
        return fp.read()
    finally:
        fp.seek(pos)


def _file_size(fp) -> int:
    pos = fp.tell()
    try:
        return fp.seek(0, os.SEEK_END)
    finally:
        fp.seek(pos)


# -- PNG -------------------------------------------------------------------------------------------
def check_png(data: bytes, name: str) -> None:
    if data[:8] != _PNG_SIGNATURE:
        raise ImageReadError(f"{name} is not a PNG file")
    header, idat, pos, ended = None, [], 8, False
    while not ended:
        if pos + 12 > len(data):
            raise ImageReadError(f"{name} is cut short: it ends before its IEND chunk")
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length
        if end > len(data):
            raise ImageReadError(f"{name} is cut short: its {_chunk_name(kind)} chunk runs past the end")
        body = data[pos + 8 : end - 4]
        if zlib.crc32(kind + body) != struct.unpack(">I", data[end - 4 : end])[0]:
            raise ImageReadError(f"{name} is damaged: its {_chunk_name(kind)} chunk fails its CRC")
        if (kind == b"IHDR") != (header is None) or (kind == b"IHDR" and length != 13):
            raise ImageReadError(f"{name} is damaged: it does not start with one IHDR chunk")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            if idat and idat[-1][1] != pos:
                raise ImageReadError(f"{name} is damaged: its IDAT chunks are not consecutive")
            idat.append((body, end))
        ended = kind == b"IEND"
        pos = end
    if not idat:
        raise ImageReadError(f"{name} has no image data (no IDAT chunk)")
    width, height, depth, colour, _, _, interlace = header
    if colour not in _PNG_CHANNELS:
        raise ImageReadError(f"{name} is damaged: colour type {colour} does not exist")
    expected = _png_data_size(width, height, _PNG_CHANNELS[colour] * depth, interlace)
    got, complete = _inflated_size((body for body, _ in idat), expected, name)
    if not complete or got < expected:
        rows = f"{got // (1 + (width * _PNG_CHANNELS[colour] * depth + 7) // 8)} of {height} rows"
        held = f"{got} of {expected} bytes" if interlace else rows
        raise ImageReadError(f"{name} is cut short: its image data holds {held}")


def _chunk_name(kind: bytes) -> str:
    return kind.decode("latin-1") if kind.isalpha() else repr(kind)


def _png_data_size(width: int, height: int, bits_per_pixel: int, interlace: int) -> int:
    """Bytes of filtered scanlines (a filter byte per row) the header's size asks for."""

    def rows(w: int, h: int) -> int:
        return h * (1 + (w * bits_per_pixel + 7) // 8) if w > 0 and h > 0 else 0

    if not interlace:
        return rows(width, height)
    return sum(rows(_ceil(width - x0, dx), _ceil(height - y0, dy)) for x0, y0, dx, dy in _ADAM7)


def _inflated_size(chunks, expected: int, name: str) -> tuple[int, bool]:
    """(bytes the zlib stream inflates to, whether it ends); more than `expected` is refused at once."""
    inflate = zlib.decompressobj()
    got = 0
    try:
        for body in chunks:
            if inflate.eof:
                raise ImageReadError(f"{name} is damaged: data follows the end of its compressed image data")
            pending = body
            while True:
                out = len(inflate.decompress(pending, _INFLATE_STEP))
                got += out
                if got > expected:
                    raise ImageReadError(f"{name} is damaged: it holds more image data than its header's size")
                pending = inflate.unconsumed_tail
                if not pending and (inflate.eof or out < _INFLATE_STEP):  # input used up, no output pending
                    break
            if inflate.unused_data:
                raise ImageReadError(f"{name} is damaged: data follows the end of its compressed image data")
    except zlib.error as exc:
        raise ImageReadError(f"{name} is damaged: its compressed image data is corrupt ({exc})") from None
    return got, inflate.eof


# -- WebP ------------------------------------------------------------------------------------------
def check_webp_decoded(image: Image.Image, data: bytes, name: str) -> None:
    chunks, pos = [], 12
    while pos + 8 <= len(data):
        kind, length = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        chunks.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 8 + length + (length & 1)
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP" or not any(kind == b"VP8 " for kind, _ in chunks):
        return  # lossless (VP8L) and animated files: libwebp refuses short data itself
    for probe in PROBES:
        grown = [(kind, body + probe if kind == b"VP8 " else body) for kind, body in chunks]
        body = b"WEBP" + b"".join(k + struct.pack("<I", len(b)) + b + b"\0" * (len(b) & 1) for k, b in grown)
        if not decodes_the_same(image, b"RIFF" + struct.pack("<I", len(body)) + body):
            raise ImageReadError(f"{name} is cut short: its VP8 data ends before its last pixels")


# -- TIFF ------------------------------------------------------------------------------------------
def check_tiff(im: Image.Image, size: int, name: str) -> None:
    """The first page's strips (or tiles) cover its size and lie inside the file."""
    try:
        _check_tiff_pieces(im.tag_v2, *im.size, size, name)
    except (TypeError, ValueError, ArithmeticError, IndexError) as exc:  # tags of the wrong type or count
        raise ImageReadError(f"{name} is damaged: unusable strip or tile tags ({exc})") from None


def _check_tiff_pieces(tags, width: int, height: int, size: int, name: str) -> None:
    tiled = 324 in tags
    offsets, counts = (
        (_ints(tags.get(324)), _ints(tags.get(325))) if tiled else (_ints(tags.get(273)), _ints(tags.get(279)))
    )
    if not offsets:
        return  # Pillow refuses it itself
    samples, planar = int(tags.get(277, 1)), int(tags.get(284, 1))
    bits = _ints(tags.get(258)) or (1,)
    bits = bits if len(bits) >= samples else bits[:1] * samples
    if tiled:
        tile_w, tile_h = int(tags.get(322, width)) or 1, int(tags.get(323, height)) or 1
        per_plane, row_px = _ceil(width, tile_w) * _ceil(height, tile_h), tile_w
    else:
        rows_per_strip = min(int(tags.get(278, height)) or height, height)
        per_plane, row_px = _ceil(height, rows_per_strip), width
    needed = per_plane * (samples if planar == 2 else 1)
    what = "tiles" if tiled else "strips"
    if len(offsets) < needed or (counts and len(counts) < needed):
        raise ImageReadError(f"{name} is cut short: its size needs {needed} {what}, it lists {len(offsets)}")
    for k in range(needed if counts else 0):
        if offsets[k] + counts[k] > size:
            raise ImageReadError(f"{name} is cut short: its {what} run past the end of the file")
        if int(tags.get(259, 1)) != 1:
            continue  # compressed: libtiff refuses a short one
        rows = tile_h if tiled else min(rows_per_strip, height - (k % per_plane) * rows_per_strip)
        pixel_bits = bits[k // per_plane] if planar == 2 else sum(bits[:samples])
        if counts[k] < rows * _ceil(row_px * pixel_bits, 8):
            raise ImageReadError(f"{name} is cut short: its {what} hold fewer rows than its size needs")


def _ints(value) -> tuple[int, ...]:
    if value is None:
        return ()
    return tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else (int(value),)


# -- decoder messages --------------------------------------------------------------------------------
@contextmanager
def decoder_messages(fmt: str | None):
    """While a TIFF decodes, catch what libtiff writes to stderr; yields a list, filled on exit."""
    messages: list[str] = []
    if fmt != "TIFF":
        yield messages
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield messages
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            messages.extend(line for line in caught.read().decode(errors="replace").splitlines() if line.strip())
