"""The files the .dpc fuzzer (scripts/fuzz.py) starts from, and the writers that make new files from their parts.

Seeds are real files, made at start-up by `Codec.compress` from small synthetic
images (1x1, 17x31, 64x48 and 200x120 pixels at the lowest, a middle and the
highest quality; three 1x1 version-3 files at qualities off the trained levels;
one seed re-wrapped as version 1 with decoder hints). Each keeps the header and
symbols it decodes to, for the mutators (scripts/fuzz_mutators.py) to change.

Two writers turn changed parts back into bytes:

    encode_file   symbols -> a valid file: entropy-coded, with a correct symbol
                  check and CRC, as `Codec.compress` writes it
    RawFields     every field as given, in or out of range (non-terminated varints,
                  oversize lengths, a wrong CRC on request): files that the container
                  writer refuses to write, for the header and section mutations
"""

import binascii
import struct
from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image

from bitstream import MAGIC, Container, Header, RefineSettings, read_container, write_container
from codec import Codec, Symbols
from codec.canvas import Canvas
from codec.model_files import LEGACY_WEIGHTS

SEED_SIZES = ((1, 1), (17, 31), (128, 128), (200, 120))


# -- seeds -------------------------------------------------------------------------------------
def synthetic_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """Gradients, a sine pattern, noise and one flat rectangle: a little of everything a photo has."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = xx / max(width - 1, 1), yy / max(height - 1, 1)
    rgb = np.stack([50 + 150 * u, 40 + 170 * v, 128 + 70 * np.sin(6 * np.pi * (u + 0.5 * v))], -1)
    rgb += rng.normal(0, 8, rgb.shape)
    x0, y0 = rng.integers(0, width), rng.integers(0, height)
    rgb[y0 : y0 + max(height // 3, 1), x0 : x0 + max(width // 3, 1)] = rng.integers(0, 256, 3)
    return Image.fromarray(np.clip(np.round(rgb), 0, 255).astype(np.uint8), "RGB")


@dataclass(frozen=True)
class SeedFile:
    """A real .dpc file and what it decodes to."""

    name: str
    data: bytes
    header: Header
    z: np.ndarray  # int32 symbols, as decoded
    y: np.ndarray


def seed_from_bytes(codec: Codec, name: str, data: bytes) -> SeedFile:
    header, symbols = codec.stages.decode_symbols(data)
    return SeedFile(name, bytes(data), header, symbols.z, symbols.y)


def make_seeds(codec: Codec, sizes=SEED_SIZES, qualities=None, legacy: bool = True) -> list[SeedFile]:
    """Compress one synthetic image per size at each quality, one at three off-level qualities; add one with
    hints; with the shipped weights (and `legacy`), seeds of each older shipped model too (the first sizes)."""
    levels = list(codec.qualities)
    qualities = qualities or sorted({levels[0], levels[len(levels) // 2], levels[-1]})
    seeds = []
    for k, (width, height) in enumerate(sizes):
        image = synthetic_image(width, height, seed=k)
        for quality in qualities:
            seeds.append(seed_from_bytes(codec, f"{width}x{height}-q{quality}", codec.compress(image, quality)))
    # Version 3: qualities off the trained levels (a rate offset in the header).
    width, height = sizes[0]
    for quality in (-3, 2.5, 8):
        data = codec.compress(synthetic_image(width, height, seed=99), quality)
        seeds.append(seed_from_bytes(codec, f"{width}x{height}-q{quality}", data))
    # Version 1 files may carry opaque hints, which readers keep and ignore (one-pass weights only:
    # version 1 has one y section; later versions' hints are the refinement settings). Made of a
    # 128 x 128 file: its canvas is the same top-left (version 1) and centred (codec/canvas.py).
    if not codec.format.two_pass:
        c = read_container(codec.compress(synthetic_image(128, 128, seed=97), levels[0]))
        assert placed_as_top_left(Canvas.of_header(c.header))
        version_1 = replace(c.header, hints=b"fuzz-hints", version=1, rate_offset=0, layout=0)
        hinted = Container(version_1, c.z_data, c.y_data, c.symbol_check)
        seeds.append(seed_from_bytes(codec, f"128x128-q{levels[0]}-v1-hints", write_container(hinted)))
    else:
        refine = RefineSettings(steps=2, sampler="ddim", guidance=1.0)
        data = codec.compress(synthetic_image(width, height, seed=98), levels[0], refine=refine)
        seeds.append(seed_from_bytes(codec, f"{width}x{height}-q{levels[0]}-hints", data))
    if codec.bundle.shipped and legacy:  # the default codec decodes the older shipped weights' files too
        for path in LEGACY_WEIGHTS:
            older = make_seeds(Codec.load(path, max_pixels=codec.limits.max_pixels), sizes[:2], legacy=False)
            seeds += [replace(seed, name=f"{path.stem}-{seed.name}") for seed in older]
    return seeds


def placed_as_top_left(canvas: Canvas) -> bool:
    """The canvas is the one a top-left file (format versions 1-4) of the same size codes."""
    top_left = replace(canvas, centred=False)
    return (canvas.padded, canvas.offset) == (top_left.padded, top_left.offset)


# -- valid files from symbols ------------------------------------------------------------------
@torch.inference_mode()
def encode_file(codec: Codec, header: Header, z: np.ndarray, y: np.ndarray) -> bytes:
    """Entropy-code given symbols exactly as Codec.compress does: a valid file, symbol check and CRC included."""
    z = np.ascontiguousarray(z, dtype=np.int32)
    y = np.ascontiguousarray(y, dtype=np.int32)
    return codec.stages.write_symbols(header, Symbols(z=z, y=y))


# -- raw container writer: any field value, in or out of range ------------------------------------
def fix_crc(data: bytes) -> bytes:
    """Treat the last two bytes as the trailer CRC and make it match everything before it."""
    if len(data) < 2:
        return data
    return data[:-2] + struct.pack("<H", binascii.crc_hqx(data[:-2], 0xFFFF))


def leb128(value: int, extra: int = 0) -> bytes:
    """Unsigned LEB128 of any size (>= 2**28 makes the 5+ bytes the reader refuses); `extra` pads it.
    A negative value has no encoding (its shifts never reach 0): ValueError, not an endless loop."""
    if value < 0:
        raise ValueError(f"LEB128 of a negative value: {value}")
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value or extra else 0))
        if not value:
            break
    for k in range(extra):
        out.append(0x80 if k < extra - 1 else 0x00)
    return bytes(out)


@dataclass
class RawFields:
    """Every field of a .dpc file, with no checks, for forging (see docs/bitstream.md)."""

    model_id: int
    width: int
    height: int
    quality: int
    z: bytes
    y: bytes
    check: int
    magic: bytes = MAGIC
    version: int = 1
    hints: bytes = b""
    hints_flag: bool | None = None  # None: set when there are hints
    hints_len: int | None = None  # None: len(hints)
    z_len: int | None = None  # None: len(z)
    width_pad: int = 0  # redundant varint bytes
    height_pad: int = 0
    rate_offset: int = 0  # version 3 and later: written as one raw byte
    layout: int = 0  # version 5 and later: written as one raw byte after the rate offset
    y_rest: bytes | None = None  # two-pass files: the second y section (None: not written)
    y_len: int | None = None  # two-pass files: the first y section's length field (None: len(y))

    @classmethod
    def of(cls, data: bytes) -> "RawFields":
        c = read_container(data)
        h = c.header
        return cls(
            h.model_id,
            h.width,
            h.height,
            h.quality,
            c.z_data,
            c.y_data,
            c.symbol_check,
            version=h.version,
            hints=h.hints,
            rate_offset=h.rate_offset,
            layout=h.layout,
            y_rest=c.y_rest_data,
        )

    def build(self, crc: bool = True) -> bytes:
        flag = bool(self.hints) if self.hints_flag is None else self.hints_flag
        body = b"".join(
            [
                self.magic,
                bytes([self.version & 0xFF]),
                struct.pack("<H", self.model_id & 0xFFFF),
                leb128(self.width, self.width_pad),
                leb128(self.height, self.height_pad),
                bytes([(self.quality & 0x7F) | (0x80 if flag else 0)]),
                bytes([self.rate_offset & 0xFF]) if self.version >= 3 else b"",
                bytes([self.layout & 0xFF]) if self.version >= 5 else b"",
                (leb128(len(self.hints) if self.hints_len is None else self.hints_len) + self.hints) if flag else b"",
                leb128(len(self.z) if self.z_len is None else self.z_len),
                self.z,
                leb128(len(self.y) if self.y_len is None else self.y_len) if self.y_rest is not None else b"",
                self.y,
                self.y_rest or b"",
                struct.pack("<H", self.check & 0xFFFF),
            ]
        )
        return fix_crc(body + b"\0\0") if crc else body + struct.pack("<H", binascii.crc_hqx(body, 0xFFFF) ^ 0x1D0F)
