"""Fuzz the image side: what `dpc compress` makes of cut, damaged and lying image files.

    python -m scripts.fuzz --target images --cases 10000 --json out/fuzz-images.json
    python -m scripts.fuzz --target images --replay out/fuzz-images-failures/*.png

Seeds are small synthetic images (16x12 and 37x21 px) written by Pillow as PNG (RGB,
gray, palette, RGBA, 16-bit, 1-bit; one hand-made Adam7-interlaced file and one with its
IDAT split in chunks), JPEG (4:2:0, 4:4:4, progressive, gray, CMYK, restart markers, an
MPO), WebP (lossy, lossless, with alpha), TIFF (raw in strips, LZW, deflate, packbits,
16-bit gray), GIF and BMP. Each case mutates one of them and hands the bytes to what
`load_image` runs (`decode_image` + `to_rgb`, no neural codec); the mutations are:

    intact        the seed itself: must be accepted
    cut           cut at a random point: must be refused
    cut-closed    cut inside the image data, then closed again so the container looks whole
                  (PNG: a zlib stream cut or holding fewer rows, with IEND; JPEG: scan data
                  cut, then an end-of-image marker; WebP: the last chunk cut, sizes fixed):
                  must be refused
    lying-larger  the header claims a larger width and/or height (1..8 px more, twice,
                  16 times, or 8192 x 8192; PNG CRC fixed): must be refused
    lying-smaller the header claims fewer pixels: anything but a crash
    bit-flips, overwrite, insert, delete, splice, header-bytes, random: anything but a crash

A case fails as "crash" (anything but a codec.CodecError, or the worker dying), "hang"
(over --time-limit; killed after --kill-after), "accepted-cut" (a must-refuse case
accepted: a silent acceptance of a cut stream), "refused-intact", "bad-image" (accepted,
but not RGB) or "stderr" (a decoder wrote to stderr, which breaks dpc's one-line
errors). Two exceptions, which are no silent acceptance because nothing is lost: a cut
that decodes to exactly the seed's pixels (outcome "accepted-identical": the bytes cut
off carried no pixel, e.g. the last flush byte of a WebP's arithmetic coder), and a
larger size that fits in the blocks the stream codes (a JPEG's 8x8..16x16 MCUs, a lossy
WebP's 16x16 macroblocks hold the edge pixels beyond the true size): that is not a
must-refuse case. Case i is a pure function of (--seed, i).
"""

import io
import logging
import multiprocessing as mp
import os
import queue
import random
import resource
import struct
import sys
import tempfile
import time
import traceback
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from codec.errors import CodecError
from codec.images import DEFAULT_MAX_PIXELS, decode_image, to_rgb
from scripts.fuzz_report import CasePeak, failure_record, write_outputs

SEED_SIZES = ((16, 12), (37, 21))
MUTATOR_WEIGHTS = {
    "intact": 2,
    "cut": 18,
    "cut-closed": 16,
    "lying-larger": 16,
    "lying-smaller": 6,
    "bit-flips": 10,
    "overwrite": 8,
    "insert": 4,
    "delete": 4,
    "splice": 4,
    "header-bytes": 8,
    "random": 4,
}
FAILURES = ("crash", "hang", "accepted-cut", "refused-intact", "bad-image", "stderr")
MAGICS = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF\x00\x01\x00\x00WEBP", b"II*\x00", b"MM\x00*", b"GIF89a", b"BM")
CHUNK = 200  # cases per work item
logging.getLogger("PIL").addHandler(logging.NullHandler())  # as `dpc` does: Pillow's log lines are not dpc's


@dataclass(frozen=True)
class Seed:
    name: str
    fmt: str  # PNG, JPEG, WEBP, TIFF, GIF, BMP
    data: bytes


@dataclass(frozen=True)
class Case:
    index: int
    mutator: str
    seed: str
    data: bytes
    must_refuse: bool = False  # it lacks image data its header promises (see CaseMaker.case)


# -- seeds -------------------------------------------------------------------------------------------
def synthetic(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    rgb = np.stack([40 + 180 * xx / max(width - 1, 1), 30 + 190 * yy / max(height - 1, 1), 128 + 60 * np.sin(xx)], -1)
    rgb += rng.normal(0, 12, rgb.shape)
    return Image.fromarray(np.clip(np.round(rgb), 0, 255).astype(np.uint8))


def _saved(im: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **options)
    return buf.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_file(width: int, height: int, raw: bytes, colour: int = 2, interlace: int = 0, split: int = 0) -> bytes:
    """A PNG from filtered scanline bytes (filter 0), its IDAT split in `split`-byte chunks if asked."""
    z = zlib.compress(raw, 9)
    parts = [z[k : k + split] for k in range(0, len(z), split)] if split else [z]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, interlace)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + b"".join(_png_chunk(b"IDAT", p) for p in parts)
        + _png_chunk(b"IEND", b"")
    )


def _adam7_png(im: Image.Image) -> bytes:
    a = np.asarray(im.convert("RGB"))
    raw = b""
    for x0, y0, dx, dy in (
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    ):
        sub = a[y0::dy, x0::dx]
        if sub.size:
            raw += b"".join(b"\x00" + row.tobytes() for row in sub)
    return _png_file(im.width, im.height, raw, interlace=1)


def make_seeds() -> list[Seed]:
    seeds = []
    for k, (w, h) in enumerate(SEED_SIZES):
        im = synthetic(w, h, seed=k)
        rgba = im.copy()
        rgba.putalpha(Image.fromarray((np.arange(w * h).reshape(h, w) * 7 % 256).astype(np.uint8)))
        gray16 = Image.fromarray(np.asarray(im.convert("L")).astype(np.uint16) * 257)
        raw_rows = b"".join(b"\x00" + row.tobytes() for row in np.asarray(im))
        variants = [
            ("png-rgb", "PNG", _saved(im, "PNG")),
            ("png-gray", "PNG", _saved(im.convert("L"), "PNG")),
            ("png-palette", "PNG", _saved(im.convert("P"), "PNG")),
            ("png-rgba", "PNG", _saved(rgba, "PNG")),
            ("png-16bit", "PNG", _saved(gray16, "PNG")),
            ("png-1bit", "PNG", _saved(im.convert("1"), "PNG")),
            ("png-adam7", "PNG", _adam7_png(im)),
            ("png-split-idat", "PNG", _png_file(w, h, raw_rows, split=64)),
            ("jpeg-420", "JPEG", _saved(im, "JPEG", quality=90)),
            ("jpeg-444", "JPEG", _saved(im, "JPEG", quality=90, subsampling=0)),
            ("jpeg-progressive", "JPEG", _saved(im, "JPEG", quality=90, progressive=True)),
            ("jpeg-gray", "JPEG", _saved(im.convert("L"), "JPEG")),
            ("jpeg-cmyk", "JPEG", _saved(im.convert("CMYK"), "JPEG")),
            ("jpeg-restart", "JPEG", _saved(im, "JPEG", restart_marker_blocks=2)),
            ("jpeg-mpo", "JPEG", _saved(im, "MPO", save_all=True, append_images=[im.rotate(90)])),
            ("webp-lossy", "WEBP", _saved(im, "WEBP", quality=80)),
            ("webp-lossless", "WEBP", _saved(im, "WEBP", lossless=True)),
            ("webp-alpha", "WEBP", _saved(rgba, "WEBP", quality=80)),
            ("tiff-raw-strips", "TIFF", _saved(im, "TIFF", tiffinfo={278: 4})),
            ("tiff-lzw", "TIFF", _saved(im, "TIFF", compression="tiff_lzw")),
            ("tiff-deflate", "TIFF", _saved(im, "TIFF", compression="tiff_adobe_deflate")),
            ("tiff-packbits", "TIFF", _saved(im, "TIFF", compression="packbits")),
            ("tiff-16bit", "TIFF", _saved(gray16, "TIFF")),
            ("gif", "GIF", _saved(im, "GIF")),
            ("bmp", "BMP", _saved(im, "BMP")),
        ]
        seeds += [Seed(f"{name}-{w}x{h}", fmt, data) for name, fmt, data in variants]
    return seeds


# -- format-aware mutations -----------------------------------------------------------------------
def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, pos = [], 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def _png_build(chunks) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(_png_chunk(kind, body) for kind, body in chunks)


def _png_closed_cut(data: bytes, rng: random.Random) -> bytes:
    chunks = _png_chunks(data)
    head = [c for c in chunks if c[0] not in (b"IDAT", b"IEND")]
    z = b"".join(body for kind, body in chunks if kind == b"IDAT")
    if rng.random() < 0.5:  # the zlib stream itself cut short
        z = z[: rng.randrange(1, len(z))]
    else:  # a complete zlib stream holding fewer rows than the header says
        raw = zlib.decompress(z)
        z = zlib.compress(raw[: rng.randrange(0, len(raw))])
    return _png_build([*head, (b"IDAT", z), (b"IEND", b"")])


def _png_resized(data: bytes, width: int, height: int) -> bytes:
    chunks = _png_chunks(data)
    kind, body = chunks[0]
    return _png_build([(kind, struct.pack(">II", width, height) + body[8:]), *chunks[1:]])


def _jpeg_frame_offset(data: bytes) -> int | None:
    """Offset of the first SOFn marker's height field."""
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker in (0xC0, 0xC1, 0xC2):
            return pos + 5
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        pos += 2 + length
    return None


def _jpeg_resized(data: bytes, width: int, height: int) -> bytes:
    at = _jpeg_frame_offset(data)
    return data[:at] + struct.pack(">HH", height & 0xFFFF, width & 0xFFFF) + data[at + 4 :]


def _jpeg_closed_cut(data: bytes, rng: random.Random) -> bytes:
    first_scan = data.find(b"\xff\xda")
    eoi = _first_eoi(data)
    cut = rng.randrange(first_scan + 4, eoi)
    return data[:cut] + b"\xff\xd9" + data[eoi + 2 :]  # an MPO's later pictures stay behind it


def _first_eoi(data: bytes) -> int:
    from codec.jpeg_checks import check_jpeg

    return check_jpeg(data, "seed").end


def _webp_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, pos = [], 12
    while pos + 8 <= len(data):
        kind, length = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        chunks.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 8 + length + (length & 1)
    return chunks


def _webp_build(chunks) -> bytes:
    body = b"WEBP" + b"".join(k + struct.pack("<I", len(b)) + b + b"\0" * (len(b) & 1) for k, b in chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _webp_closed_cut(data: bytes, rng: random.Random) -> bytes:
    chunks = _webp_chunks(data)
    kind, body = chunks[-1]
    return _webp_build([*chunks[:-1], (kind, body[: rng.randrange(0, len(body))])])


def _webp_resized(data: bytes, width: int, height: int) -> bytes:
    out = []
    for kind, body in _webp_chunks(data):
        if kind == b"VP8X":
            body = body[:4] + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little") + body[10:]
        elif kind == b"VP8 " and len(body) >= 10:
            w = (struct.unpack("<H", body[6:8])[0] & 0xC000) | (width & 0x3FFF)
            h = (struct.unpack("<H", body[8:10])[0] & 0xC000) | (height & 0x3FFF)
            body = body[:6] + struct.pack("<HH", w, h) + body[10:]
        elif kind == b"VP8L" and len(body) >= 5:
            bits = struct.unpack("<I", body[1:5])[0] & ~((1 << 28) - 1)
            bits |= ((width - 1) & 0x3FFF) | (((height - 1) & 0x3FFF) << 14)
            body = body[:1] + struct.pack("<I", bits) + body[5:]
        out.append((kind, body))
    return _webp_build(out)


def _tiff_resized(data: bytes, width: int, height: int) -> bytes:
    out = bytearray(data)
    (ifd,) = struct.unpack("<I", data[4:8])
    (count,) = struct.unpack("<H", data[ifd : ifd + 2])
    for k in range(count):
        entry = ifd + 2 + 12 * k
        tag, kind = struct.unpack("<HH", data[entry : entry + 4])
        if tag in (256, 257):
            value = width if tag == 256 else height
            out[entry + 8 : entry + 12] = (
                struct.pack("<HH", value & 0xFFFF, 0) if kind == 3 else struct.pack("<I", value)
            )
    return bytes(out)


RESIZERS = {"PNG": _png_resized, "JPEG": _jpeg_resized, "WEBP": _webp_resized, "TIFF": _tiff_resized}
CLOSED_CUTS = {"PNG": _png_closed_cut, "JPEG": _jpeg_closed_cut, "WEBP": _webp_closed_cut}


class CaseMaker:
    """Case i of a run: a pure function of (seed, i) and the seed files."""

    def __init__(self, seeds: list[Seed]):
        self.seeds = seeds
        self.sizes = {s.name: Image.open(io.BytesIO(s.data)).size for s in seeds}
        self.blocks = {s.name: _coded_block(s) for s in seeds}
        self._references: dict[str, Image.Image] = {}
        names, weights = zip(*MUTATOR_WEIGHTS.items(), strict=True)
        self.names, self.weights = names, weights

    def case(self, run_seed: int, index: int) -> Case:
        rng = random.Random(run_seed * 1_000_003 + index)
        mutator = rng.choices(self.names, self.weights)[0]
        if mutator in ("cut-closed",):
            pool = [s for s in self.seeds if s.fmt in CLOSED_CUTS]
        elif mutator.startswith("lying"):
            pool = [s for s in self.seeds if s.fmt in RESIZERS]
        else:
            pool = self.seeds
        seed = rng.choice(pool)
        data, must_refuse = self._mutate(mutator, seed, rng)
        return Case(index, mutator, seed.name, data, must_refuse)

    def reference(self, name: str) -> Image.Image:
        """The intact seed as load_image gives it."""
        if name not in self._references:
            seed = next(s for s in self.seeds if s.name == name)
            self._references[name] = to_rgb(decode_image(io.BytesIO(seed.data), name))
        return self._references[name]

    def _mutate(self, mutator: str, seed: Seed, rng: random.Random) -> tuple[bytes, bool]:
        """(bytes, whether they must be refused)."""
        data = seed.data
        if mutator == "intact":
            return data, False
        if mutator == "cut":
            return data[: rng.randrange(0, len(data))], True
        if mutator == "cut-closed":
            return CLOSED_CUTS[seed.fmt](data, rng), True
        if mutator.startswith("lying"):
            (w, h), (bw, bh) = self.sizes[seed.name], self.blocks[seed.name]
            if mutator == "lying-larger":
                options = [(w, h + rng.randint(1, 8)), (w + rng.randint(1, 8), h), (w * 2, h * 2)]
                w2, h2 = rng.choice([*options, (w * 16, h), (w, h * 16), (8192, 8192)])
            else:
                w2, h2 = rng.choice([(w, rng.randint(1, h - 1)), (rng.randint(1, w - 1), h), (w // 2, h // 2)])
            more_blocks = -(-w2 // bw) * -(-h2 // bh) > -(-w // bw) * -(-h // bh)
            return RESIZERS[seed.fmt](data, w2, h2), more_blocks
        return self._mutated(mutator, seed, rng), False

    def _mutated(self, mutator: str, seed: Seed, rng: random.Random) -> bytes:
        data = seed.data
        out = bytearray(data)
        if mutator == "bit-flips":
            for _ in range(rng.randint(1, 8)):
                bit = rng.randrange(8 * len(out))
                out[bit // 8] ^= 1 << (bit % 8)
        elif mutator == "overwrite":
            for _ in range(rng.randint(1, 8)):
                out[rng.randrange(len(out))] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif mutator == "header-bytes":  # where sizes, depths, colour types and offsets live
            for _ in range(rng.randint(1, 4)):
                out[rng.randrange(min(len(out), 64))] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif mutator == "insert":
            at = rng.randrange(len(out) + 1)
            out[at:at] = rng.randbytes(rng.randint(1, 16))
        elif mutator == "delete":
            at = rng.randrange(len(out))
            del out[at : at + rng.randint(1, 16)]
        elif mutator == "splice":
            other = rng.choice(self.seeds).data
            out = out[: rng.randrange(len(out))] + other[rng.randrange(len(other)) :]
        elif mutator == "random":
            out = bytearray(rng.choice(MAGICS) + rng.randbytes(rng.randint(0, 400)))
        return bytes(out)


def _coded_block(seed: Seed) -> tuple[int, int]:
    """The pixel block a format codes whole: a JPEG's MCU, a lossy WebP's macroblock, the pixels in a
    byte of a 1-bit PNG row, else 1 x 1."""
    if seed.fmt == "JPEG":
        at = _jpeg_frame_offset(seed.data)  # height field; then width, count, (id, sampling, table) each
        count = seed.data[at + 4]
        sampling = [seed.data[at + 6 + 3 * k] for k in range(count)]
        return 8 * max(s >> 4 for s in sampling), 8 * max(s & 15 for s in sampling)
    if seed.fmt == "WEBP" and any(kind == b"VP8 " for kind, _ in _webp_chunks(seed.data)):
        return 16, 16
    if seed.fmt == "PNG":  # rows of fewer than 8 bits per pixel end in padding bits
        depth, colour = seed.data[24:26]
        bits = depth * {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
        return (8 // bits if bits < 8 else 1), 1
    return 1, 1


# -- running cases -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    kind: str  # "accepted", the CodecError subclass's name, or "crash: <exception type>"
    seconds: float
    failures: tuple[str, ...]
    detail: str = ""


def _same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and a.tobytes() == b.tobytes()


def run_case(case: Case, max_pixels: int, time_limit: float, reference: Image.Image | None = None) -> Outcome:
    """What load_image does with the case's bytes, classified (see the module docstring).

    `reference`: the intact seed's image, which a must-refuse case may only match (nothing lost)."""
    sys.stderr.flush()
    saved = os.dup(2)
    caught = tempfile.TemporaryFile()
    os.dup2(caught.fileno(), 2)
    start = time.perf_counter()
    image, exc, crash = None, None, None
    try:
        image = to_rgb(decode_image(io.BytesIO(case.data), "case", max_pixels), max_pixels)
    except CodecError as e:
        exc = e
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # noqa: B036 -- a crash is anything but a CodecError
        crash = traceback.format_exc()
    finally:
        seconds = time.perf_counter() - start
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        caught.seek(0)
        noise = caught.read().decode(errors="replace")
        caught.close()
    failures = []
    if crash is not None:
        failures.append("crash")
        kind, detail = f"crash: {crash.strip().splitlines()[-1].split(':')[0]}", crash
    elif exc is None:
        kind, detail = "accepted", f"{image.mode} {image.size}"
        if case.must_refuse and reference is not None and _same_pixels(image, reference):
            kind = "accepted-identical"
        elif case.must_refuse:
            failures.append("accepted-cut")
        if image.mode != "RGB" or min(image.size) < 1:
            failures.append("bad-image")
    else:
        kind, detail = type(exc).__name__, str(exc)
        if case.mutator == "intact":
            failures.append("refused-intact")
    if noise.strip():
        failures.append("stderr")
        detail += f"\nstderr: {noise.strip()[:500]}"
    if seconds > time_limit:
        failures.append("hang")
    return Outcome(kind, seconds, tuple(failures), detail)


def peak_rss_mb(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


@dataclass
class Summary:
    cases: int = 0
    must_refuse: int = 0  # cases that lack data their header promises
    outcomes: Counter = field(default_factory=Counter)
    by_mutator: dict = field(default_factory=dict)  # mutator -> Counter(kind)
    by_format: dict = field(default_factory=dict)  # format -> Counter(kind)
    failure_counts: Counter = field(default_factory=Counter)
    failures: list = field(default_factory=list)
    max_seconds: float = 0.0
    max_case: dict = field(default_factory=dict)
    case_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    case_peak: dict = field(default_factory=dict)  # the case with the highest peak RSS during it

    def add(self, case: Case, outcome: Outcome, case_peak_mb: float | None = None) -> None:
        self.cases += 1
        if case_peak_mb is not None and case_peak_mb > self.case_peak.get("mb", 0.0):
            self.case_peak = {
                "index": case.index,
                "mutator": case.mutator,
                "seed": case.seed,
                "mb": round(case_peak_mb, 1),
            }
        self.must_refuse += case.must_refuse
        self.outcomes[outcome.kind] += 1
        self.by_mutator.setdefault(case.mutator, Counter())[outcome.kind] += 1
        self.by_format.setdefault(case.seed.split("-")[0], Counter())[outcome.kind] += 1
        self.case_seconds += outcome.seconds
        if outcome.seconds > self.max_seconds:
            self.max_seconds = outcome.seconds
            self.max_case = {"index": case.index, "mutator": case.mutator, "seed": case.seed, "kind": outcome.kind}
        self.failure_counts.update(outcome.failures)
        if outcome.failures:
            self.failures.append(failure_record(case, outcome, seed=case.seed))

    def merge(self, other: "Summary") -> None:
        self.cases += other.cases
        self.must_refuse += other.must_refuse
        self.outcomes.update(other.outcomes)
        for mine, theirs in ((self.by_mutator, other.by_mutator), (self.by_format, other.by_format)):
            for name, counts in theirs.items():
                mine.setdefault(name, Counter()).update(counts)
        self.failure_counts.update(other.failure_counts)
        self.failures.extend(other.failures)
        self.case_seconds += other.case_seconds
        if other.max_seconds > self.max_seconds:
            self.max_seconds, self.max_case = other.max_seconds, other.max_case
        self.peak_rss_mb = max(self.peak_rss_mb, other.peak_rss_mb)
        if other.case_peak.get("mb", 0.0) > self.case_peak.get("mb", 0.0):
            self.case_peak = other.case_peak

    @property
    def failed(self) -> bool:
        return any(self.failure_counts[f] for f in FAILURES)


def run_cases(maker: CaseMaker, seed: int, indexes, max_pixels: int, time_limit: float) -> Summary:
    """Run cases in this process (what the test suite uses)."""
    summary = Summary()
    for index in indexes:
        case = maker.case(seed, index)
        summary.add(case, run_case(case, max_pixels, time_limit, maker.reference(case.seed)))
    summary.peak_rss_mb = peak_rss_mb()
    return summary


def _worker(args, tasks, results, current, started):
    maker = CaseMaker(make_seeds())
    while (task := tasks.get()) is not None:
        summary = Summary()
        for index in range(*task):
            started.value, current.value = time.time(), index
            case = maker.case(args.seed, index)
            with CasePeak() as peak:
                outcome = run_case(case, args.max_pixels, args.time_limit, maker.reference(case.seed))
            summary.add(case, outcome, peak.mb)
        current.value = -1
        summary.peak_rss_mb = peak_rss_mb()
        results.put(summary)


def run_watched(args, maker: CaseMaker, progress) -> Summary:
    """Run the cases in one worker process that is killed (and restarted) if a case runs past --kill-after."""
    ctx = mp.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    current, started = ctx.RawValue("q", -1), ctx.RawValue("d", 0.0)
    pending = [(lo, min(lo + CHUNK, args.cases)) for lo in range(0, args.cases, CHUNK)]
    for task in pending:
        tasks.put(task)
    total, done = Summary(), 0

    def start():
        proc = ctx.Process(target=_worker, args=(args, tasks, results, current, started), daemon=True)
        proc.start()
        return proc

    proc = start()
    while done < args.cases:
        try:
            summary = results.get(timeout=0.5)
        except queue.Empty:
            index = current.value
            stuck = index >= 0 and time.time() - started.value > args.kill_after
            if proc.is_alive() and not stuck:
                continue
            proc.kill()
            proc.join()
            if index < 0:
                proc = start()
                continue
            # The case that was running fails; the rest of its chunk runs again (in a new process).
            case = maker.case(args.seed, index)
            failure = ("hang",) if stuck else ("crash",)
            kind = "hang: killed" if stuck else f"crash: worker exit code {proc.exitcode}"
            one = Summary()
            one.add(case, Outcome(kind, time.time() - started.value, failure, kind))
            total.merge(one)
            done += 1
            progress.update(1)
            chunk_end = min((index // CHUNK + 1) * CHUNK, args.cases)
            if index + 1 < chunk_end:
                tasks.put((index + 1, chunk_end))
            current.value = -1
            proc = start()
            continue
        total.merge(summary)
        done += summary.cases
        progress.update(summary.cases)
    tasks.put(None)
    proc.join(timeout=10)
    return total


# -- report --------------------------------------------------------------------------------------------
def report(summary: Summary, args, wall: float) -> dict:
    return {
        "command": "python -m scripts.fuzz " + " ".join(sys.argv[1:]),
        "target": "images",
        "cases": summary.cases,
        "seed": args.seed,
        "time_limit_s": args.time_limit,
        "max_pixels": args.max_pixels,
        "outcomes": dict(summary.outcomes.most_common()),
        "by_mutator": {k: dict(v.most_common()) for k, v in sorted(summary.by_mutator.items())},
        "by_format": {k: dict(v.most_common()) for k, v in sorted(summary.by_format.items())},
        "must_refuse_cases": summary.must_refuse,
        **{f.replace("-", "_"): summary.failure_counts[f] for f in FAILURES},
        "max_case_s": round(summary.max_seconds, 4),
        "max_case": summary.max_case,
        "mean_case_ms": round(1000 * summary.case_seconds / max(summary.cases, 1), 3),
        "peak_rss_mb": round(summary.peak_rss_mb, 1),
        "max_case_peak_rss": summary.case_peak,
        "wall_s": round(wall, 1),
        "failures": summary.failures,
    }


def print_summary(r: dict) -> None:
    print(f"{'cases':>16}  {r['cases']} (seed {r['seed']}, limit {r['time_limit_s']} s/case)")
    print(f"{'outcomes':>16}  " + " | ".join(f"{k} {v}" for k, v in r["outcomes"].items()))
    for name, counts in [*r["by_mutator"].items(), *r["by_format"].items()]:
        print(f"{name:>16}  " + " | ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"{'must refuse':>16}  {r['must_refuse_cases']} cases (cut, cut-closed, lying-larger beyond its blocks)")
    print(f"{'failures':>16}  " + ", ".join(f"{f} {r[f.replace('-', '_')]}" for f in FAILURES))
    print(f"{'max case time':>16}  {r['max_case_s']:.3f} s {r['max_case']} (mean {r['mean_case_ms']:.2f} ms)")
    print(f"{'peak RSS':>16}  {r['peak_rss_mb']:.0f} MB; wall time {r['wall_s']:.1f} s")
    print(
        f"{'per-case peak':>16}  at most {r['max_case_peak_rss'].get('mb', 'unmeasured')} MB {r['max_case_peak_rss']}"
    )


def main(args) -> int:
    """`python -m scripts.fuzz --target images` (its parsed arguments)."""
    max_pixels = args.max_pixels = DEFAULT_MAX_PIXELS if args.max_pixels is None else args.max_pixels
    if args.replay:
        bad = 0
        for path in args.replay:
            outcome = run_case(Case(-1, "replay", path.name, path.read_bytes()), max_pixels, args.time_limit)
            bad += bool(outcome.failures)
            print(f"{path}: {outcome.kind} in {outcome.seconds:.3f} s {list(outcome.failures) or ''}\n{outcome.detail}")
        return 1 if bad else 0
    from tqdm import tqdm

    t0 = time.perf_counter()
    seeds = make_seeds()
    maker = CaseMaker(seeds)
    print(
        f"{len(seeds)} seed files, {min(len(s.data) for s in seeds)}-{max(len(s.data) for s in seeds)} B",
        file=sys.stderr,
    )
    with tqdm(total=args.cases, unit="case", smoothing=0.02) as progress:
        summary = run_watched(args, maker, progress)
    # CasePeak resets the kernel's high-water mark before each case: ru_maxrss afterwards knows only the
    # latest cases, so the peak is the larger of that and the cases' own peaks
    cases_peak = summary.case_peak.get("mb", 0.0)
    summary.peak_rss_mb = max(summary.peak_rss_mb, cases_peak, peak_rss_mb(resource.RUSAGE_CHILDREN))
    summary.failures.sort(key=lambda f: f["index"])
    r = report(summary, args, time.perf_counter() - t0)
    print_summary(r)
    folder = args.save_failures or Path("out/fuzz-images-failures")
    write_outputs(r, args.json, summary.failures, folder, ".img")
    return 1 if summary.failed else 0
