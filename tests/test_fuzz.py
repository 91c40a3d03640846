"""Fuzzing: whatever bytes it is given, the decoder ends in an image or a CodecError, quickly.

The seeds live in scripts/fuzz_seeds.py, the mutations in scripts/fuzz_mutators.py, and
the runner and outcome classification in scripts/fuzz.py (its long run, 100k cases, is
described in docs/reliability.md). Here: a short run of the same cases, checks that the
harness itself reports failures, and hypothesis properties.
"""

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from bitstream import BitstreamLimits
from codec import BitstreamError, Codec, CodecError, ImageTooLargeError
from codec.model_files import LEGACY_WEIGHTS, model_id_from_sha256
from scripts import fuzz, fuzz_mutators, fuzz_seeds

SHORT_RUN_CASES = 1000
FUZZ_SEED = 20240601  # not the long run's seed 0: the suite adds different cases
CASE_TIME_LIMIT = 5.0  # seconds; the long run uses 2 s on an otherwise idle core


@pytest.fixture(scope="module")
def fuzz_codec(codec) -> Codec:
    """The shipped weights with the fuzzer's pixel limit (decoding work grows with the claimed size), one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # thousands of tiny decodes: a thread pool only adds waiting
    yield Codec(codec.bundle, limits=BitstreamLimits(max_pixels=fuzz.FUZZ_MAX_PIXELS))
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def seeds(fuzz_codec) -> list:
    return fuzz_seeds.make_seeds(fuzz_codec)


@pytest.fixture(scope="module")
def maker(fuzz_codec, seeds):
    return fuzz_mutators.CaseMaker(fuzz_codec, seeds)


def assert_image_or_codec_error(codec: Codec, data: bytes) -> None:
    """The decoder's contract for arbitrary input: an RGB image of the header's size, or a CodecError."""
    try:
        image = codec.decompress(data)
    except CodecError:
        return
    header = codec.read_header(data)
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    assert image.size == (header.width, header.height)


# -- the harness ------------------------------------------------------------------------------------
def test_seed_files_are_real_files_of_every_size_and_quality(fuzz_codec, seeds):
    sizes = {(s.header.width, s.header.height) for s in seeds}
    qualities = {s.header.quality for s in seeds if not s.header.rate_offset}
    assert sizes == set(fuzz_seeds.SEED_SIZES)
    assert {min(fuzz_codec.qualities), max(fuzz_codec.qualities)} <= qualities and len(qualities) == 3
    offsets = {s.header.rate_offset for s in seeds if s.header.version >= 3}
    assert {-128, 64} <= offsets  # the ends of the continuous scale (qualities -3 and 8)
    assert any(s.header.hints for s in seeds)
    # the default codec decodes the older shipped weights' files too: they are seeds as well
    older = {model_id_from_sha256(Path(f"{w}.sha256").read_text().split()[0]) for w in LEGACY_WEIGHTS}
    assert {s.header.model_id for s in seeds} == {fuzz_codec.model_id, *older}
    for s in seeds:
        assert fuzz_codec.decompress(s.data).size == (s.header.width, s.header.height)


def test_the_raw_writer_reproduces_real_files_byte_for_byte(seeds):
    """Header mutations are written by RawFields.build; unchanged fields must give the original file."""
    for s in seeds:
        assert fuzz_seeds.RawFields.of(s.data).build() == s.data


def test_the_raw_writer_can_forge_what_the_container_writer_refuses(seeds):
    f = fuzz_seeds.RawFields.of(seeds[0].data)
    f.width, f.quality, f.hints, f.hints_flag, f.width_pad = 1 << 28, 0, b"", True, 4
    data = f.build()
    assert data[:2] == b"DP" and fuzz_seeds.fix_crc(data) == data
    assert f.build(crc=False) != data


def test_cases_are_a_function_of_seed_and_index(maker):
    assert maker.case(3, 41) == maker.case(3, 41)
    assert len({maker.case(3, i).data for i in range(40)}) > 35


def test_every_mutator_can_be_drawn_and_changes_the_file(maker, seeds):
    originals = {s.data for s in seeds}
    for name in fuzz_mutators.MUTATOR_WEIGHTS:
        made = [maker.case(0, i, mutator=name) for i in range(20)]
        assert all(c.mutator == name for c in made)
        assert sum(c.data not in originals for c in made) >= 15, name


class _FakeCodec:
    """Stands in for a Codec whose decompress misbehaves, to show the harness notices."""

    def __init__(self, real: Codec, decompress):
        self.read_header = real.read_header
        self.decompress = decompress


class _Panic(BaseException):
    """Like pyo3's PanicException: a Rust panic surfaces as a BaseException, not an Exception."""


def _raise(exc):
    def decompress(data):
        raise exc

    return decompress


@pytest.mark.parametrize(
    "decompress, failures",
    [
        (_raise(ValueError("boom")), ("crash",)),
        (_raise(IndexError("boom")), ("crash",)),
        (_raise(_Panic("boom")), ("crash",)),
        (lambda data: Image.new("RGB", (3, 3)), ("bad-image",)),
        (lambda data: Image.new("L", (17, 31)), ("bad-image",)),
        (lambda data: np.zeros((31, 17, 3), np.uint8), ("bad-image",)),
        (lambda data: time.sleep(0.05) or Image.new("RGB", (17, 31)), ("hang",)),
        (lambda data: Image.new("RGB", (17, 31)), ()),
        (_raise(BitstreamError("corrupt")), ()),
    ],
    ids=["ValueError", "IndexError", "panic", "wrong size", "wrong mode", "not an image", "slow", "ok", "refused"],
)
def test_the_harness_reports_crashes_hangs_and_bad_images(fuzz_codec, seeds, decompress, failures):
    data = next(s.data for s in seeds if (s.header.width, s.header.height) == (17, 31))
    outcome = fuzz.run_case(_FakeCodec(fuzz_codec, decompress), data, time_limit=0.02)
    assert outcome.failures == failures


def test_a_valid_file_that_is_refused_is_a_failure(fuzz_codec, seeds):
    outcome = fuzz.run_case(_FakeCodec(fuzz_codec, _raise(BitstreamError("x"))), seeds[0].data, 1.0, must_decode=True)
    assert outcome.failures == ("not-decoded",)


# -- the short run ---------------------------------------------------------------------------------------
def test_a_short_fuzz_run_ends_every_case_in_an_image_or_a_codec_error(fuzz_codec, maker):
    summary = fuzz.run_cases(fuzz_codec, maker, FUZZ_SEED, range(SHORT_RUN_CASES), CASE_TIME_LIMIT)

    first = summary.failures[0] if summary.failures else {}
    assert not summary.failures, f"{len(summary.failures)} failing cases; first: {first.get('detail')} {first}"
    assert summary.cases == SHORT_RUN_CASES
    codec_errors = {cls.__name__ for cls in _subclasses(CodecError)}
    assert set(summary.outcomes) <= codec_errors | {"decoded"}
    assert set(summary.by_mutator) == set(fuzz_mutators.MUTATOR_WEIGHTS)
    # The mutations reach deep: most get past the CRC, many into the entropy decoder, some decode.
    past_crc = summary.cases - sum(summary.stages[s] for s in ("magic", "version", "length", "crc"))
    assert past_crc > 0.5 * summary.cases
    assert summary.stages["entropy decoder"] > 0.2 * summary.cases
    assert summary.stages["symbol check"] > 0 and summary.stages["header"] > 0 and summary.stages["decoded"] > 0
    assert summary.max_seconds < CASE_TIME_LIMIT


def _subclasses(cls):
    return {cls}.union(*(_subclasses(c) for c in cls.__subclasses__()))


# -- properties ------------------------------------------------------------------------------------------
FAST = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings(FAST, max_examples=150)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_with_a_valid_crc_end_in_an_image_or_a_codec_error(fuzz_codec, body):
    assert_image_or_codec_error(fuzz_codec, fuzz_seeds.fix_crc(b"DP\x01" + body))


@settings(FAST, max_examples=150)
@given(
    seed_index=st.integers(0, 12),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=12),
    cut=st.integers(0, 8),
)
def test_a_real_file_with_arbitrary_byte_edits_and_a_recomputed_crc_ends_in_an_image_or_a_codec_error(
    fuzz_codec, seeds, seed_index, edits, cut
):
    data = bytearray(seeds[seed_index % len(seeds)].data)
    for pos, value in edits:
        data[pos % len(data)] = value
    data = bytes(data[: len(data) - cut])
    assert_image_or_codec_error(fuzz_codec, fuzz_seeds.fix_crc(data))


@settings(FAST, max_examples=100)
@given(
    width=st.integers(0, 300) | st.integers(0, (1 << 28) - 1),
    height=st.integers(0, 300) | st.integers(0, (1 << 28) - 1),
    quality=st.integers(0, 127),
    hints=st.binary(max_size=70),
)
def test_any_header_ends_in_an_image_or_a_codec_error_and_oversize_claims_are_too_large(
    fuzz_codec, seeds, width, height, quality, hints
):
    f = fuzz_seeds.RawFields.of(seeds[4].data)
    f.width, f.height, f.quality, f.hints = width, height, quality, hints
    data = f.build()
    limits = fuzz_codec.limits
    if not (1 <= width <= limits.max_side and 1 <= height <= limits.max_side) or width * height > limits.max_pixels:
        with pytest.raises(ImageTooLargeError):
            fuzz_codec.decompress(data)
    else:
        assert_image_or_codec_error(fuzz_codec, data)


@settings(FAST, max_examples=60)
@given(
    seed_index=st.integers(0, 12),
    edits=st.lists(
        st.tuples(st.sampled_from("zy"), st.integers(0, 1 << 20), st.integers(-(1 << 30) + 1, (1 << 30) - 1)),
        min_size=1,
        max_size=6,
    ),
)
def test_any_symbols_entropy_coded_with_their_check_decode_to_an_image_of_the_header_size(
    fuzz_codec, seeds, seed_index, edits
):
    """Valid files need not come from an encoder's analysis: any symbols (escapes up to 2**30) decode."""
    s = seeds[seed_index % len(seeds)]
    symbols = {"z": s.z.copy(), "y": s.y.copy()}
    for which, pos, value in edits:
        flat = symbols[which].reshape(-1)
        flat[pos % flat.size] = value
    data = fuzz_seeds.encode_file(fuzz_codec, s.header, symbols["z"], symbols["y"])
    image = fuzz_codec.decompress(data)
    assert image.size == (s.header.width, s.header.height) and image.mode == "RGB"


def test_the_raw_writer_refuses_a_negative_length_instead_of_looping_for_ever():
    """A y length mutated below 0 (a seed's anchors section under 4 bytes) made leb128 loop and grow
    without bound: case 1755 of seed 0 took 19 GB before it was killed."""
    with pytest.raises(ValueError, match="negative"):
        fuzz_seeds.leb128(-3)
    assert fuzz_seeds.leb128(300) == bytes([0xAC, 0x02])


def test_every_case_of_a_short_run_is_made_quickly(seeds, fuzz_codec):
    maker = fuzz_mutators.CaseMaker(fuzz_codec, seeds)
    for index in range(1700, 1800):  # 1755 was the endless one
        start = time.perf_counter()
        maker.case(0, index)
        assert time.perf_counter() - start < 5, index
