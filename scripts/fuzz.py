"""Fuzz the .dpc container parser and the whole decode path (or, with --target images, the image side).

    python scripts/fuzz.py --cases 100000 --json out/fuzz.json --save-failures out/fuzz-failures
    python scripts/fuzz.py --replay out/fuzz-failures/*.dpc     # re-run saved failing cases
    python scripts/fuzz.py --target images --cases 10000        # cut and lying images (scripts/fuzz_images.py)

Seeds are real files, made at start-up by `Codec.compress` from small synthetic
images (1x1, 17x31, 64x48 and 200x120 pixels at the lowest, a middle and the
highest quality; one seed is re-wrapped with decoder hints). Every case mutates
seeds and hands the bytes to `Codec.decompress`; the mutations are:

    bit-flips       1..8 random bits flipped
    overwrite       1..8 bytes overwritten (random or boundary values)
    truncate        cut at a random point
    extend          random bytes appended, or inserted before the trailer
    splice          the head of one file joined to the tail of another
    insert, delete  1..16 bytes inserted or removed at a random point
    header-fields   1..3 header fields (magic, version, model id, width, height,
                    quality, hints flag/length/bytes, z length, symbol check) set to
                    random or boundary values, written with a raw writer that
                    accepts out-of-range values (non-terminated varints included)
    sections        a sound header around random, swapped, emptied or cut sections
    symbols         1..8 (sometimes thousands of) decoded symbols changed, escapes up
                    to 2**30 included, then re-encoded with a correct symbol check
                    and CRC: a valid file, which must decode to an image
    stacked         2..4 of the byte-level mutations above in a row
    random          a random buffer, half of them behind "DP\\x01"

The byte-level mutations recompute the CRC in 85% of the cases (the header and
section mutations in 85% and 100%), so most cases get past the integrity check
to the header checks, the entropy decoder and the symbol check.

A case passes if it ends in an RGB PIL image of the size its header gives, or in
a `codec.CodecError`, within --time-limit seconds. Failures: "crash" (any other
exception, or the worker process dying), "hang" (over the time limit; a case
still running after --kill-after seconds is killed), "bad-image" (an image of
the wrong size or mode), "not-decoded" (a valid file from the symbols mutation
that does not decode). Failing cases are saved as files; the exit code is 1 if
there is any failure.

Case i is a pure function of (--seed, i) and the weights, so a run can be
repeated exactly. Work and memory per case grow with the image size a header
claims (up to the Codec's pixel limit), so the fuzzer's Codec uses a smaller
pixel limit (--max-pixels, 4 Mpx) than the default; see docs/reliability.md.
"""

import argparse
import base64
import binascii
import json
import math
import multiprocessing as mp
import queue
import random
import resource
import struct
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from bitstream import MAGIC, Container, Header, read_container, write_container
from codec import Codec, CodecError, DecoderDesyncError, ImageTooLargeError, ModelMismatchError, UnsupportedVersionError
from codec.api import Symbols

SEED_SIZES = ((1, 1), (17, 31), (64, 48), (200, 120))
FUZZ_MAX_PIXELS = 1 << 22
CRC_FIX_RATE = 0.85
CHUNK = 50  # cases per work item in multi-process runs


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
    header, symbols = codec.decode_symbols(data)
    return SeedFile(name, bytes(data), header, symbols.z, symbols.y)


def make_seeds(codec: Codec, sizes=SEED_SIZES, qualities=None) -> list[SeedFile]:
    """Compress one synthetic image per size at each quality; add one seed that carries decoder hints."""
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
    c = read_container(seeds[len(seeds) // 2].data)
    # Version 1 files may carry opaque hints, which readers keep and ignore.
    hinted = Container(replace(c.header, hints=b"fuzz-hints", version=1), c.z_data, c.y_data, c.symbol_check)
    seeds.append(seed_from_bytes(codec, seeds[len(seeds) // 2].name + "-hints", write_container(hinted)))
    return seeds


# -- raw container writer: any field value, in or out of range ------------------------------------
def fix_crc(data: bytes) -> bytes:
    """Treat the last two bytes as the trailer CRC and make it match everything before it."""
    if len(data) < 2:
        return data
    return data[:-2] + struct.pack("<H", binascii.crc_hqx(data[:-2], 0xFFFF))


def leb128(value: int, extra: int = 0) -> bytes:
    """Unsigned LEB128 of any size (>= 2**28 makes the 5+ bytes the reader refuses); `extra` pads it."""
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
                (leb128(len(self.hints) if self.hints_len is None else self.hints_len) + self.hints) if flag else b"",
                leb128(len(self.z) if self.z_len is None else self.z_len),
                self.z,
                self.y,
                struct.pack("<H", self.check & 0xFFFF),
            ]
        )
        return fix_crc(body + b"\0\0") if crc else body + struct.pack("<H", binascii.crc_hqx(body, 0xFFFF) ^ 0x1D0F)


# -- cases ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    index: int
    mutator: str
    data: bytes
    must_decode: bool = False  # a valid file by construction


BYTE_MUTATORS = ("bit-flips", "overwrite", "truncate", "extend", "splice", "insert", "delete")
MUTATOR_WEIGHTS = {
    "bit-flips": 12,
    "overwrite": 9,
    "truncate": 6,
    "extend": 6,
    "splice": 6,
    "insert": 6,
    "delete": 6,
    "header-fields": 20,
    "sections": 9,
    "symbols": 8,
    "stacked": 7,
    "random": 5,
}
BOUNDARY_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF)


class CaseMaker:
    """Case i of a run: a pure function of (seed, i), the seed files and the weights."""

    def __init__(self, codec: Codec, seeds: list[SeedFile], crc_fix_rate: float = CRC_FIX_RATE):
        self.codec, self.seeds, self.crc_fix_rate = codec, seeds, crc_fix_rate
        self.names = list(MUTATOR_WEIGHTS)
        self.weights = list(MUTATOR_WEIGHTS.values())

    def case(self, seed: int, index: int, mutator: str | None = None) -> Case:
        rng = random.Random(f"dpc-fuzz:{seed}:{index}")
        mutator = mutator or rng.choices(self.names, self.weights)[0]
        if mutator == "symbols":
            return Case(index, mutator, self._symbols(rng), must_decode=True)
        if mutator == "header-fields":
            return Case(index, mutator, self._header_fields(rng))
        if mutator == "sections":
            return Case(index, mutator, self._sections(rng))
        if mutator == "random":
            n = rng.randrange(rng.choice((16, 64, 600)))
            data = (b"DP\x01" if rng.random() < 0.5 else b"") + rng.randbytes(n)
            return Case(index, mutator, fix_crc(data) if rng.random() < 0.5 else data)
        data = rng.choice(self.seeds).data
        steps = [rng.choice(BYTE_MUTATORS) for _ in range(rng.randint(2, 4))] if mutator == "stacked" else [mutator]
        for step in steps:
            data = self._bytes(rng, step, data)
        if rng.random() < self.crc_fix_rate:
            data = fix_crc(data)
        return Case(index, mutator, data)

    # byte-level mutations (the caller decides about the CRC)
    def _bytes(self, rng: random.Random, how: str, data: bytes) -> bytes:
        out = bytearray(data)
        n = len(out)
        if how == "bit-flips" and n:
            header_only = rng.random() < 0.3  # the header is a few % of a file: aim there too
            for _ in range(rng.randint(1, 8)):
                bit = rng.randrange(8 * min(n, 16) if header_only else 8 * n)
                out[bit // 8] ^= 1 << (bit % 8)
        elif how == "overwrite" and n:
            for _ in range(rng.randint(1, 8)):
                pos = rng.randrange(min(n, 16)) if rng.random() < 0.3 else rng.randrange(n)
                out[pos] = rng.choice(BOUNDARY_BYTES) if rng.random() < 0.4 else rng.randrange(256)
        elif how == "truncate" and n:
            del out[rng.randrange(n) :]
        elif how == "extend":
            extra = rng.randbytes(rng.randint(1, 64))
            pos = n if rng.random() < 0.5 else max(n - 4, 0)  # at the end, or into the y section
            out[pos:pos] = extra
        elif how == "splice":
            other = rng.choice(self.seeds).data
            out = out[: rng.randint(0, n)] + other[rng.randint(0, len(other)) :]
        elif how == "insert":
            pos = rng.randint(0, n)
            out[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif how == "delete" and n:
            pos = rng.randrange(n)
            del out[pos : pos + rng.randint(1, 16)]
        return bytes(out)

    def _size(self, rng: random.Random, current: int) -> int:
        limits = self.codec.limits
        padded = -(-current // 64) * 64
        root = math.isqrt(limits.max_pixels)
        return max(
            0,
            rng.choice(
                [
                    0,
                    1,
                    2,
                    63,
                    64,
                    65,
                    current - 1,
                    current + 1,
                    padded,
                    padded + 1,
                    padded - 63,
                    root,
                    root + 1,
                    limits.max_side - 1,
                    limits.max_side,
                    limits.max_side + 1,
                    (1 << 28) - 1,
                    1 << 28,
                    rng.randint(1, 1024),
                    rng.randint(1, limits.max_side),
                    rng.randrange(1 << 28),
                ]
            ),
        )

    def _header_fields(self, rng: random.Random) -> bytes:
        s = rng.choice(self.seeds)
        f = RawFields.of(s.data)
        levels = list(self.codec.qualities)
        for what in rng.sample(
            [
                "size",
                "width",
                "height",
                "quality",
                "rate",
                "model",
                "hints",
                "z_len",
                "check",
                "varint",
                "version",
                "magic",
            ],
            rng.randint(1, 3),
        ):
            if what == "size":  # both sides, often right at the pixel limit
                f.width = rng.randint(1, self.codec.limits.max_side)
                f.height = self.codec.limits.max_pixels // f.width + rng.choice((0, 0, 1))
            elif what == "width":
                f.width = self._size(rng, f.width)
            elif what == "height":
                f.height = self._size(rng, f.height)
            elif what == "quality":
                f.quality = rng.choice([0, levels[0], levels[-1], levels[-1] + 1, 0x7F, rng.randrange(128)])
            elif what == "rate":  # the version-3 rate offset, at and past the scale's ends
                f.version = 3
                f.rate_offset = rng.choice([-128, -97, -1, 0, 1, 63, 64, 65, 127, rng.randint(-128, 127)])
            elif what == "model":
                f.model_id = rng.choice([f.model_id ^ (1 << rng.randrange(16)), rng.randrange(1 << 16)])
            elif what == "hints":
                f.hints = rng.randbytes(rng.choice([0, 1, rng.randint(2, 64), 65, 200]))
                f.hints_flag = rng.random() < 0.8
                if rng.random() < 0.3:
                    f.hints_len = rng.choice([0, len(f.hints) + 1, max(len(f.hints) - 1, 0), rng.randrange(1 << 28)])
            elif what == "z_len":
                total = len(f.z) + len(f.y)
                f.z_len = max(
                    0,
                    rng.choice([0, len(f.z) + rng.randint(-4, 4), total, total + 1, total + 4, rng.randrange(1 << 28)]),
                )
            elif what == "check":
                f.check = rng.randrange(1 << 16)
            elif what == "varint":
                f.width_pad, f.height_pad = rng.choice([(1, 0), (0, 2), (3, 3), (4, 0)])
            elif what == "version":
                f.version = rng.choice([0, 1, 2, 3, 4, 255])
            elif what == "magic":
                f.magic = rng.choice([b"DQ", b"PD", b"dp", rng.randbytes(2)])
        return f.build(crc=rng.random() < CRC_FIX_RATE)

    def _sections(self, rng: random.Random) -> bytes:
        """A sound header (and CRC) around coded sections that do not belong to it."""
        s, other = rng.choice(self.seeds), RawFields.of(rng.choice(self.seeds).data)
        f = RawFields.of(s.data)
        how = rng.choice(["random-z", "random-y", "other-z", "other-y", "swap", "empty-z", "empty-y", "cut", "grow"])
        if how == "random-z":
            f.z = rng.randbytes(rng.randrange(2 * len(f.z) + 8))
        elif how == "random-y":
            f.y = rng.randbytes(rng.randrange(2 * len(f.y) + 8))
        elif how == "other-z":
            f.z = other.z
        elif how == "other-y":
            f.y = other.y
        elif how == "swap":
            f.z, f.y = f.y, f.z
        elif how == "empty-z":
            f.z = b""
        elif how == "empty-y":
            f.y = b""
        elif how == "cut":
            f.y = f.y[: rng.randrange(len(f.y) + 1)]
        else:
            f.z = f.z + rng.randbytes(rng.randint(1, 8))
        if rng.random() < 0.3:
            f.check = rng.randrange(1 << 16)
        return f.build(crc=True)

    def _symbols(self, rng: random.Random) -> bytes:
        """Change decoded symbols, re-encode them with their own check: a valid file."""
        s = rng.choice(self.seeds)
        z, y = s.z.copy(), s.y.copy()
        for arr in {"z": [z], "y": [y], "both": [z, y]}[rng.choice(["z", "y", "y", "both"])]:
            flat = arr.reshape(-1)
            many = rng.random() < 0.1
            for _ in range(rng.randint(1, max(flat.size // 4, 1)) if many else rng.randint(1, 8)):
                pos = rng.randrange(flat.size)
                flat[pos] = rng.choice(
                    [
                        int(flat[pos]) + rng.choice((-1, 1)),
                        int(flat[pos]) + rng.randint(-100, 100),
                        0,
                        rng.choice((-1, 1)) * rng.randrange(1 << rng.randint(1, 30)),
                        rng.choice((-1, 1)) * ((1 << 30) - 1),
                    ]
                )
        header = s.header
        if rng.random() < 0.3:  # another size with the same padded shape: same symbols, other crop
            pw, ph = -(-header.width // 64) * 64, -(-header.height // 64) * 64
            header = replace(header, width=rng.randint(pw - 63, pw), height=rng.randint(ph - 63, ph))
        return encode_file(self.codec, header, z, y)


@torch.inference_mode()
def encode_file(codec: Codec, header: Header, z: np.ndarray, y: np.ndarray) -> bytes:
    """Entropy-code given symbols exactly as Codec.compress does: a valid file, symbol check and CRC included."""
    z = np.ascontiguousarray(z, dtype=np.int32)
    y = np.ascontiguousarray(y, dtype=np.int32)
    return codec.write_symbols(header, Symbols(z=z, y=y))


# -- running cases ------------------------------------------------------------------------------------
FAILURES = ("crash", "hang", "bad-image", "not-decoded")


@dataclass(frozen=True)
class Outcome:
    kind: str  # "decoded", the CodecError subclass's name, or "crash: <exception type>"
    stage: str  # how far the case got (see `stage_of`)
    seconds: float
    failures: tuple[str, ...]  # subset of FAILURES
    detail: str = ""  # error message or traceback


def stage_of(exc: BaseException | None) -> str:
    """Which check stopped a case (for the report: do the mutations get past the CRC?)."""
    if exc is None:
        return "decoded"
    msg = str(exc)
    if isinstance(exc, UnsupportedVersionError):
        return "version"
    if isinstance(exc, ModelMismatchError):
        return "model id"
    if isinstance(exc, DecoderDesyncError):
        return "symbol check"
    if isinstance(exc, ImageTooLargeError) or "corrupt header" in msg or "quality" in msg or "runs past" in msg:
        return "header"
    if "magic" in msg:
        return "magic"
    if "shorter than any" in msg:
        return "length"
    if "CRC" in msg:
        return "crc"
    if "entropy" in msg or "unused bytes" in msg:
        return "entropy decoder"
    return "other"


def run_case(codec: Codec, data: bytes, time_limit: float, must_decode: bool = False) -> Outcome:
    """Decode `data`; classify the result (see the module docstring)."""
    start = time.perf_counter()
    exc, image = None, None
    try:
        image = codec.decompress(data)
    except CodecError as e:
        exc = e
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: B036 -- a crash is any non-CodecError, Rust panics (BaseException) included
        seconds = time.perf_counter() - start
        failures = ("crash", "hang") if seconds > time_limit else ("crash",)
        return Outcome(f"crash: {type(e).__name__}", "crash", seconds, failures, traceback.format_exc())
    seconds = time.perf_counter() - start
    failures = []
    if exc is None:
        header = codec.read_header(data)
        if not isinstance(image, Image.Image) or image.mode != "RGB" or image.size != (header.width, header.height):
            failures.append("bad-image")
        detail = f"{getattr(image, 'mode', type(image).__name__)} {getattr(image, 'size', '')}"
    else:
        detail = f"{type(exc).__name__}: {exc}"
        if must_decode:
            failures.append("not-decoded")
    if seconds > time_limit:
        failures.append("hang")
    kind = "decoded" if exc is None else type(exc).__name__
    return Outcome(kind, stage_of(exc), seconds, tuple(failures), detail)


def peak_rss_mb(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


@dataclass
class Summary:
    cases: int = 0
    outcomes: Counter = field(default_factory=Counter)  # kind -> cases
    stages: Counter = field(default_factory=Counter)  # stage -> cases
    by_mutator: dict = field(default_factory=dict)  # mutator -> Counter(kind)
    failure_counts: Counter = field(default_factory=Counter)
    failures: list = field(default_factory=list)  # dicts, see `add`
    max_seconds: float = 0.0
    max_case: dict = field(default_factory=dict)
    case_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    rss_after_load_mb: float = 0.0
    rss_jump: dict = field(default_factory=dict)  # the case after which a process's peak RSS grew most

    def add(self, case: Case, outcome: Outcome, rss_before: float | None = None, rss_after: float | None = None):
        self.cases += 1
        self.outcomes[outcome.kind] += 1
        self.stages[outcome.stage] += 1
        self.by_mutator.setdefault(case.mutator, Counter())[outcome.kind] += 1
        self.case_seconds += outcome.seconds
        if outcome.seconds > self.max_seconds:
            self.max_seconds = outcome.seconds
            self.max_case = {
                "index": case.index,
                "mutator": case.mutator,
                "kind": outcome.kind,
                "bytes": len(case.data),
            }
        if rss_before is not None and rss_after - rss_before > self.rss_jump.get("mb", 0.0):
            self.rss_jump = {"index": case.index, "mutator": case.mutator, "mb": rss_after - rss_before}
        for failure in outcome.failures:
            self.failure_counts[failure] += 1
        if outcome.failures:
            self.failures.append(
                {
                    "index": case.index,
                    "mutator": case.mutator,
                    "failures": list(outcome.failures),
                    "kind": outcome.kind,
                    "seconds": round(outcome.seconds, 4),
                    "detail": outcome.detail,
                    "data_base64": base64.b64encode(case.data).decode(),
                }
            )

    def merge(self, other: "Summary") -> None:
        self.cases += other.cases
        self.outcomes.update(other.outcomes)
        self.stages.update(other.stages)
        for name, counts in other.by_mutator.items():
            self.by_mutator.setdefault(name, Counter()).update(counts)
        self.failure_counts.update(other.failure_counts)
        self.failures.extend(other.failures)
        self.case_seconds += other.case_seconds
        if other.max_seconds > self.max_seconds:
            self.max_seconds, self.max_case = other.max_seconds, other.max_case
        if other.rss_jump.get("mb", 0.0) > self.rss_jump.get("mb", 0.0):
            self.rss_jump = other.rss_jump
        self.peak_rss_mb = max(self.peak_rss_mb, other.peak_rss_mb)
        self.rss_after_load_mb = max(self.rss_after_load_mb, other.rss_after_load_mb)

    @property
    def crashes(self) -> int:
        return self.failure_counts["crash"]

    @property
    def hangs(self) -> int:
        return self.failure_counts["hang"]

    @property
    def failed(self) -> bool:
        return any(self.failure_counts[f] for f in FAILURES)


def run_cases(codec: Codec, maker: CaseMaker, seed: int, indexes, time_limit: float, progress=None) -> Summary:
    """Run cases in this process (what the test suite and --workers 1 use)."""
    summary = Summary()
    for index in indexes:
        case = maker.case(seed, index)
        before = peak_rss_mb()
        outcome = run_case(codec, case.data, time_limit, case.must_decode)
        summary.add(case, outcome, before, peak_rss_mb())
        if progress is not None:
            progress.update(1)
    summary.peak_rss_mb = peak_rss_mb()
    return summary


def load_codec(max_pixels: int) -> Codec:
    """One thread per process: with several processes on few cores, torch's intra-op threads only wait on each other."""
    torch.set_num_threads(1)
    return Codec.load(max_pixels=max_pixels)


def warm_up(codec: Codec, seeds: list[SeedFile]) -> None:
    """Build every entropy model once, so no case pays for it."""
    for tables in (codec._z_tables, codec._y_tables):
        for t in range(tables.num_tables):
            tables.model(t)
    for s in seeds:
        codec.decompress(s.data)


# -- multi-process runs ---------------------------------------------------------------------------------
def _worker(wid, seed_blobs, args, tasks, results, current, started, chunk_lo, chunk_hi):
    codec = load_codec(args.max_pixels)
    seeds = [seed_from_bytes(codec, name, data) for name, data in seed_blobs]
    maker = CaseMaker(codec, seeds)
    warm_up(codec, seeds)
    results.put(("ready", wid, peak_rss_mb()))
    while (task := tasks.get()) is not None:
        lo, hi = task
        chunk_lo[wid], chunk_hi[wid] = lo, hi
        summary = Summary()
        for index in range(lo, hi):
            started[wid] = time.time()
            current[wid] = index
            case = maker.case(args.seed, index)
            before = peak_rss_mb()
            outcome = run_case(codec, case.data, args.time_limit, case.must_decode)
            summary.add(case, outcome, before, peak_rss_mb())
        current[wid] = -1
        summary.peak_rss_mb = peak_rss_mb()
        results.put(("chunk", wid, summary))
    results.put(("done", wid, peak_rss_mb()))


def run_parallel(args, codec: Codec, maker: CaseMaker, seeds: list[SeedFile], progress) -> Summary:
    ctx = mp.get_context("spawn")  # each worker loads its own Codec; no torch state crosses a fork
    tasks, results = ctx.Queue(), ctx.Queue()
    n = args.workers
    current, started = ctx.RawArray("q", [-1] * n), ctx.RawArray("d", [0.0] * n)
    chunk_lo, chunk_hi = ctx.RawArray("q", n), ctx.RawArray("q", n)
    blobs = [(s.name, s.data) for s in seeds]
    procs = [None] * n

    def start(wid):
        current[wid] = -1
        procs[wid] = ctx.Process(
            target=_worker,
            args=(wid, blobs, args, tasks, results, current, started, chunk_lo, chunk_hi),
            daemon=True,
        )
        procs[wid].start()

    for lo in range(0, args.cases, CHUNK):
        tasks.put((lo, min(lo + CHUNK, args.cases)))
    if args.cases <= 0:
        for _ in range(n):
            tasks.put(None)
    for wid in range(n):
        start(wid)
    total = Summary()
    done = 0
    finished = set()
    while len(finished) < n:
        try:
            msg = results.get(timeout=0.5)
        except queue.Empty:
            msg = None
        if msg and msg[0] == "ready":
            total.rss_after_load_mb = max(total.rss_after_load_mb, msg[2])
        elif msg and msg[0] == "chunk":
            total.merge(msg[2])
            done += msg[2].cases
            progress.update(msg[2].cases)
            progress.set_postfix(crashes=total.crashes, hangs=total.hangs, refresh=False)
            if done >= args.cases:
                for _ in range(n):
                    tasks.put(None)
        elif msg and msg[0] == "done":
            finished.add(msg[1])
            total.peak_rss_mb = max(total.peak_rss_mb, msg[2])
        for wid, proc in enumerate(procs):
            if wid in finished:
                continue
            index = current[wid]
            killed = index >= 0 and time.time() - started[wid] > args.kill_after
            if (proc.is_alive() and not killed) or proc.exitcode == 0:
                continue  # running, or finished with its "done" message on the way
            if killed:
                proc.kill()
            proc.join()
            if index < 0:  # died between cases: nothing to blame, just restart
                start(wid)
                continue
            # The case that was running is a failure; the rest of its chunk is run again.
            case = maker.case(args.seed, index)
            failure = ("hang",) if killed else ("crash",)
            kind = "hang: killed" if killed else f"crash: worker exit code {proc.exitcode}"
            seconds = time.time() - started[wid]
            one = Summary()
            one.add(case, Outcome(kind, "crash", seconds, failure, kind))
            total.merge(one)
            done += 1
            progress.update(1)
            for lo, hi in ((chunk_lo[wid], index), (index + 1, chunk_hi[wid])):
                if lo < hi:
                    tasks.put((lo, hi))
            if done >= args.cases:
                for _ in range(n):
                    tasks.put(None)
            start(wid)
    for proc in procs:
        proc.join(timeout=10)
    return total


# -- report ------------------------------------------------------------------------------------------------
def report(summary: Summary, args, wall: float) -> dict:
    return {
        "command": "python scripts/fuzz.py " + " ".join(sys.argv[1:]),
        "cases": summary.cases,
        "seed": args.seed,
        "workers": args.workers,
        "time_limit_s": args.time_limit,
        "max_pixels": args.max_pixels,
        "outcomes": dict(summary.outcomes.most_common()),
        "stages": dict(summary.stages.most_common()),
        "by_mutator": {k: dict(v.most_common()) for k, v in sorted(summary.by_mutator.items())},
        "crashes": summary.crashes,
        "hangs": summary.hangs,
        "bad_images": summary.failure_counts["bad-image"],
        "not_decoded": summary.failure_counts["not-decoded"],
        "max_case_s": round(summary.max_seconds, 4),
        "max_case": summary.max_case,
        "mean_case_ms": round(1000 * summary.case_seconds / max(summary.cases, 1), 3),
        "peak_rss_mb": round(summary.peak_rss_mb, 1),
        "rss_after_load_mb": round(summary.rss_after_load_mb, 1),
        "largest_rss_jump": summary.rss_jump,
        "wall_s": round(wall, 1),
        "cases_per_s": round(summary.cases / wall, 1) if wall else None,
        "failures": summary.failures,
    }


def print_summary(r: dict) -> None:
    past_crc = sum(v for k, v in r["stages"].items() if k not in ("magic", "version", "length", "crc"))
    rows = [
        ("cases", f"{r['cases']} (seed {r['seed']}, {r['workers']} worker(s), limit {r['time_limit_s']} s/case, "
         f"max pixels {r['max_pixels']})"),
        ("outcomes", " | ".join(f"{k} {v}" for k, v in r["outcomes"].items())),
        ("stopped at", " | ".join(f"{k} {v}" for k, v in r["stages"].items())),
        ("past the CRC", f"{past_crc} ({100 * past_crc / max(r['cases'], 1):.1f}%)"),
        ("crashes", r["crashes"]),
        ("hangs", r["hangs"]),
        ("bad images", r["bad_images"]),
        ("valid, not decoded", r["not_decoded"]),
        ("max case time", f"{r['max_case_s']:.3f} s {r['max_case']} (mean {r['mean_case_ms']:.2f} ms)"),
        ("peak RSS", f"{r['peak_rss_mb']:.0f} MB per process ({r['rss_after_load_mb']:.0f} MB after loading "
         f"the weights; largest jump {r['largest_rss_jump']})"),
        ("wall time", f"{r['wall_s']:.1f} s ({r['cases_per_s']} cases/s)"),
    ]  # fmt: skip
    for name, value in rows:
        print(f"{name:>20}  {value}")


def save_failures(summary: Summary, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for f in summary.failures:
        stem = folder / f"case-{f['index']:07d}-{'-'.join(f['failures'])}"
        stem.with_suffix(".dpc").write_bytes(base64.b64decode(f["data_base64"]))
        info = {k: v for k, v in f.items() if k != "data_base64"}
        stem.with_suffix(".txt").write_text(json.dumps(info, indent=1) + "\n")


def replay(paths: list[Path], args) -> int:
    codec = load_codec(args.max_pixels)
    bad = 0
    for path in paths:
        outcome = run_case(codec, path.read_bytes(), args.time_limit)
        bad += bool(outcome.failures)
        print(f"{path}: {outcome.kind} in {outcome.seconds:.3f} s {list(outcome.failures) or ''}\n{outcome.detail}")
    return 1 if bad else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--target", choices=("dpc", "images"), default="dpc", help="decode .dpc files, or read images (fuzz_images.py)"
    )
    p.add_argument("--cases", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0, help="case i is a function of (seed, i)")
    p.add_argument("--time-limit", type=float, default=2.0, help="seconds per case; slower is a hang")
    p.add_argument("--kill-after", type=float, default=60.0, help="seconds after which a running case is killed")
    p.add_argument("--workers", type=int, default=2, help="processes (1: run in this process)")
    p.add_argument(
        "--max-pixels", type=int, help=f"pixel limit (default {FUZZ_MAX_PIXELS} for .dpc files, 2**26 for images)"
    )
    p.add_argument("--json", type=Path, help="write the summary (and failing cases, base64) here")
    p.add_argument("--save-failures", type=Path, metavar="DIR", help="default out/fuzz-failures (images: -images-)")
    p.add_argument("--replay", type=Path, nargs="+", metavar="FILE", help="decode saved cases instead of fuzzing")
    args = p.parse_args(argv)
    if args.target == "images":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import fuzz_images

        return fuzz_images.main(args)
    args.max_pixels = FUZZ_MAX_PIXELS if args.max_pixels is None else args.max_pixels
    args.save_failures = args.save_failures or Path("out/fuzz-failures")
    if args.replay:
        return replay(args.replay, args)
    t0 = time.perf_counter()
    codec = load_codec(args.max_pixels)
    seeds = make_seeds(codec)
    maker = CaseMaker(codec, seeds)
    print(f"{len(seeds)} seed files: " + ", ".join(f"{s.name} ({len(s.data)} B)" for s in seeds), file=sys.stderr)
    with tqdm(total=args.cases, unit="case", smoothing=0.02) as progress:
        if args.workers <= 1:
            warm_up(codec, seeds)
            rss = peak_rss_mb()
            summary = run_cases(codec, maker, args.seed, range(args.cases), args.time_limit, progress)
            summary.rss_after_load_mb = rss
        else:
            summary = run_parallel(args, codec, maker, seeds, progress)
    summary.peak_rss_mb = max(summary.peak_rss_mb, peak_rss_mb(), peak_rss_mb(resource.RUSAGE_CHILDREN))
    summary.failures.sort(key=lambda f: f["index"])
    r = report(summary, args, time.perf_counter() - t0)
    print_summary(r)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(r, indent=1) + "\n")
    if summary.failures:
        save_failures(summary, args.save_failures)
        print(f"{len(summary.failures)} failing case(s) saved in {args.save_failures}/", file=sys.stderr)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
