"""The .dpc fuzzer's cases: mutated seed files (scripts/fuzz_seeds.py), one per index.

Every case mutates seeds; the mutations are:

    bit-flips       1..8 random bits flipped
    overwrite       1..8 bytes overwritten (random or boundary values)
    truncate        cut at a random point
    extend          random bytes appended, or inserted before the trailer
    splice          the head of one file joined to the tail of another
    insert, delete  1..16 bytes inserted or removed at a random point
    header-fields   1..3 header fields (magic, version, model id, width, height,
                    quality, layout, hints flag/length/bytes, z length, symbol check) set to
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

Case i is a pure function of (seed, i), the seed files and the weights, so a run
can be repeated exactly.
"""

import math
import random
from dataclasses import dataclass, replace

from codec import Codec
from codec.canvas import Canvas
from scripts.fuzz_seeds import RawFields, SeedFile, encode_file, fix_crc

CRC_FIX_RATE = 0.85


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
    "claim-large": 5,
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
        if mutator == "claim-large":
            return Case(index, mutator, self._claim_large(rng))
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
                "y_len",
                "check",
                "varint",
                "version",
                "layout",
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
            elif what == "y_len":  # two-pass files: the anchors section's length; else adds one
                f.y_rest = f.y_rest if f.y_rest is not None else rng.randbytes(rng.randint(0, 8))
                f.y_len = max(0, rng.choice([0, len(f.y) + rng.randint(-4, 4), len(f.y) + len(f.y_rest) + 1, 1 << 28]))
            elif what == "check":
                f.check = rng.randrange(1 << 16)
            elif what == "varint":
                f.width_pad, f.height_pad = rng.choice([(1, 0), (0, 2), (3, 3), (4, 0)])
            elif what == "version":
                f.version = rng.choice([0, 1, 2, 3, 4, 5, 6, 255])
            elif what == "layout":  # version 5's layout byte: the pass count flipped, reserved bits set
                f.version = 5
                f.layout = rng.choice([f.layout ^ 1, f.layout ^ 2, 4, 0x80, rng.randrange(256)])
            elif what == "magic":
                f.magic = rng.choice([b"DQ", b"PD", b"dp", rng.randbytes(2)])
        return f.build(crc=rng.random() < CRC_FIX_RATE)

    def _claim_large(self, rng: random.Random) -> bytes:
        """A sound header (and CRC) claiming a large image over a seed's few coded bytes (its own
        sections, none, or a little noise): at the pixel limit, just past it, 8192 x 8192 (the default
        limit), or a long strip. Refused or decoded, within the time limit, never a crash."""
        f = RawFields.of(rng.choice(self.seeds).data)
        root = math.isqrt(self.codec.limits.max_pixels)
        f.width, f.height = rng.choice(
            [(root, root), (root + 1, root), (8192, 8192), (self.codec.limits.max_side, 64), (64, 4096), (root, 1)]
        )
        how = rng.choice(["own", "empty", "noise"])
        if how == "empty":
            f.z, f.y = b"", b""
            f.y_rest = b"" if f.y_rest is not None else None
        elif how == "noise":
            f.z, f.y = rng.randbytes(rng.randint(1, 16)), rng.randbytes(rng.randint(1, 64))
        return f.build(crc=True)

    def _sections(self, rng: random.Random) -> bytes:
        """A sound header (and CRC) around coded sections that do not belong to it."""
        s, other = rng.choice(self.seeds), RawFields.of(rng.choice(self.seeds).data)
        f = RawFields.of(s.data)
        hows = ["random-z", "random-y", "other-z", "other-y", "swap", "empty-z", "empty-y", "cut", "grow"]
        how = rng.choice(hows + (["random-rest", "swap-passes", "cut-rest"] if f.y_rest is not None else []))
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
        elif how == "random-rest":  # a two-pass file's second pass
            f.y_rest = rng.randbytes(rng.randrange(2 * len(f.y_rest) + 8))
        elif how == "swap-passes":
            f.y, f.y_rest = f.y_rest, f.y
        elif how == "cut-rest":
            f.y_rest = f.y_rest[: rng.randrange(len(f.y_rest) + 1)]
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
            ph, pw = Canvas.of_header(header).padded
            size = [rng.randint(max(side - 63, 1), side) for side in (pw, ph)]
            header = replace(header, width=size[0], height=size[1])
        return encode_file(self.codec, header, z, y)
