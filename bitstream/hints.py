"""Decoder hints (format version 2): the refinement settings the encoder intends.

    steps (1) | sampler (1) | guidance x 10 (1) | [seed varint | start % (1) | early exit x 1000 (1)]

The bracketed extension is written only when one of its fields is not the
default (seed 0, start 100 %, early exit off), so the usual hints cost 3 bytes
(plus the 1-byte length in the header). A file without hints decodes without
refinement (steps 0), as every version-1 file does.
"""

from dataclasses import dataclass, replace

from .errors import BitstreamError
from .varint import VarintError, decode_varint, encode_varint

SAMPLERS = ("ddim", "dpmpp", "unipc")  # sampler byte = index
MAX_STEPS = 100
MAX_GUIDANCE = 25.5  # stored in tenths in one byte
MAX_SEED = (1 << 28) - 1  # varint of at most 4 bytes


@dataclass(frozen=True)
class RefineSettings:
    """How the decoder refines the latent (what `dpc decompress --steps ...` sets)."""

    steps: int = 0  # 0 = no refinement
    sampler: str = "ddim"
    guidance: float = 1.0  # classifier-free guidance scale S; 1 = conditional pass only
    seed: int = 0  # of the starting noise
    start: float = 1.0  # fraction of the noise schedule to start from (1 = pure noise)
    early_exit: float = 0.0  # stop once a step moves the predicted residual less (mean abs); 0 = off

    def __post_init__(self):
        problems = []
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or not 0 <= self.steps <= MAX_STEPS:
            problems.append(f"steps must be an integer 0..{MAX_STEPS}, got {self.steps!r}")
        if self.sampler not in SAMPLERS:
            problems.append(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if not _number_in(self.guidance, 0.0, MAX_GUIDANCE):
            problems.append(f"guidance must be 0..{MAX_GUIDANCE}, got {self.guidance!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            problems.append(f"seed must be an integer 0..{MAX_SEED}, got {self.seed!r}")
        if not _number_in(self.start, 0.01, 1.0):
            problems.append(f"start must be 0.01..1, got {self.start!r}")
        if not _number_in(self.early_exit, 0.0, 0.255):
            problems.append(f"early exit threshold must be 0..0.255, got {self.early_exit!r}")
        if problems:
            raise ValueError("; ".join(problems))

    def with_overrides(self, **changes) -> "RefineSettings":
        """These settings with every non-None keyword replaced (ValueError if invalid)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _number_in(v, lo: float, hi: float) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and lo <= v <= hi


def pack_hints(s: RefineSettings) -> bytes:
    """Settings -> hint bytes (guidance, start and early exit rounded to what fits)."""
    out = bytearray([s.steps, SAMPLERS.index(s.sampler), round(s.guidance * 10)])
    start, exit_ = round(s.start * 100), round(s.early_exit * 1000)
    if s.seed or start != 100 or exit_:
        out += encode_varint(s.seed) + bytes([start, exit_])
    return bytes(out)


def unpack_hints(data: bytes) -> RefineSettings:
    """Hint bytes -> settings; BitstreamError for anything malformed or out of range."""
    if not data:
        return RefineSettings()
    if len(data) < 3:
        raise BitstreamError(f"corrupt header: {len(data)} bytes of decoder hints (need 3)")
    steps, sampler, guidance = data[0], data[1], data[2]
    seed, start, exit_ = 0, 100, 0
    if len(data) > 3:
        try:
            seed, pos = decode_varint(data, 3)
        except VarintError:
            raise BitstreamError("corrupt header: bad seed in decoder hints") from None
        if len(data) - pos != 2:
            raise BitstreamError("corrupt header: decoder hints have the wrong length")
        start, exit_ = data[pos], data[pos + 1]
    if sampler >= len(SAMPLERS):
        raise BitstreamError(f"corrupt header: unknown sampler {sampler} in decoder hints")
    try:
        return RefineSettings(
            steps=steps,
            sampler=SAMPLERS[sampler],
            guidance=guidance / 10,
            seed=seed,
            start=start / 100,
            early_exit=exit_ / 1000,
        )
    except ValueError as exc:
        raise BitstreamError(f"corrupt header: decoder hints out of range ({exc})") from None
