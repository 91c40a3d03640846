"""The .dpc container (bitstream/container.py): exact round trip, compact header, field checks.

Layout: magic "DP" | version | model id (2) | width varint | height varint | flags
| [hints length | hints] | z length varint | z | y | symbol check (2) | CRC-16 (2).
"""

from dataclasses import replace

import pytest
from helpers import representable_refine_settings, with_crc
from hypothesis import given, settings
from hypothesis import strategies as st

from bitstream import (
    BitstreamLimits,
    Container,
    Header,
    RefineSettings,
    pack_hints,
    read_container,
    read_header,
    write_container,
)
from codec.errors import BitstreamError, ImageTooLargeError, UnsupportedVersionError

# Generous enough for any 16-bit size: the round trip is about the format, not the size guard.
NO_PIXEL_LIMIT = BitstreamLimits(max_pixels=1 << 32)

refine_settings = representable_refine_settings()
_fields = dict(
    width=st.integers(1, 65535),
    height=st.integers(1, 65535),
    quality=st.integers(1, 127),
    model_id=st.integers(0, 65535),
)
headers = st.one_of(
    # Version 1: hints are opaque bytes that readers keep. Version 2: packed RefineSettings.
    st.builds(Header, **_fields, hints=st.binary(max_size=64), version=st.just(1)),
    st.builds(Header, **_fields, hints=st.one_of(st.just(b""), refine_settings.map(pack_hints)), version=st.just(2)),
)
containers = st.builds(
    Container,
    header=headers,
    z_data=st.binary(max_size=300),
    y_data=st.binary(max_size=300),
    symbol_check=st.integers(0, 65535),
)


@settings(max_examples=200, deadline=None)
@given(containers)
def test_any_valid_container_round_trips_exactly(c):
    data = write_container(c)
    assert isinstance(data, bytes)
    assert read_container(data, NO_PIXEL_LIMIT) == c
    assert read_container(bytearray(data), NO_PIXEL_LIMIT) == c


@settings(max_examples=100, deadline=None)
@given(containers)
def test_default_limits_refuse_exactly_the_headers_over_the_pixel_limit(c):
    """With default BitstreamLimits a header is read iff width*height <= max_pixels (2**26, 67 Mpx)."""
    data = write_container(c)
    if c.header.width * c.header.height > BitstreamLimits().max_pixels:
        with pytest.raises(ImageTooLargeError):
            read_container(data)
    else:
        assert read_container(data) == c


@pytest.mark.parametrize("z_len", [0, 60, 127])
def test_a_768x512_file_with_a_small_z_section_spends_at_most_20_bytes_outside_the_payload(z_len):
    hints = pack_hints(RefineSettings(steps=4, sampler="dpmpp", guidance=2.0))
    c = Container(Header(768, 512, quality=3, model_id=0x9197, hints=hints), b"\x5a" * z_len, b"\xa5" * 3000, 0x1234)
    assert c.overhead_bytes <= 20
    assert Container(replace(c.header, hints=b""), c.z_data, c.y_data, 0).overhead_bytes == c.overhead_bytes - 4
    assert len(write_container(c)) == z_len + 3000 + c.overhead_bytes


def test_a_larger_z_section_costs_one_more_length_byte_only():
    small = Container(Header(768, 512, 3, 1), b"z" * 127, b"y" * 100, 0)
    large = Container(Header(768, 512, 3, 1), b"z" * 128, b"y" * 100, 0)
    assert large.overhead_bytes == small.overhead_bytes + 1 <= 16


def test_hints_cost_their_length_plus_one_byte():
    plain = Container(Header(768, 512, 3, 1), b"z", b"y", 0)
    hinted = Container(Header(768, 512, 3, 1, hints=b"h" * 10), b"z", b"y", 0)
    assert hinted.overhead_bytes == plain.overhead_bytes + 11


def test_the_header_can_be_read_without_parsing_the_payload():
    c = Container(Header(640, 480, quality=5, model_id=0xBEEF, hints=b"\x04\x01\x14"), b"zz", b"yyy", 7)
    header, _ = read_header(write_container(c))
    assert header == c.header


@pytest.mark.parametrize(
    "header, symbol_check",
    [
        (Header(0, 10, 3, 1), 0),
        (Header(10, 0, 3, 1), 0),
        (Header(1 << 28, 10, 3, 1), 0),
        (Header(10, 10, 0, 1), 0),
        (Header(10, 10, 128, 1), 0),
        (Header(10, 10, 3, -1), 0),
        (Header(10, 10, 3, 1 << 16), 0),
        (Header(10, 10, 3, 1, hints=b"x" * 65), 0),
        (Header(10, 10, 3, 1), 1 << 16),
        (Header(10, 10, 3, 1), -1),
    ],
)
def test_the_writer_refuses_fields_it_cannot_represent(header, symbol_check):
    with pytest.raises(ValueError):
        write_container(Container(header, b"", b"", symbol_check))


def test_sides_up_to_the_limit_are_accepted_and_one_more_is_refused():
    limits = BitstreamLimits(max_pixels=1 << 40)
    ok = write_container(Container(Header(1 << 16, 1, 1, 1), b"", b"", 0))
    assert read_header(ok, limits)[0].width == 1 << 16
    too_wide = write_container(Container(Header((1 << 16) + 1, 1, 1, 1), b"", b"", 0))
    with pytest.raises(ImageTooLargeError):
        read_header(too_wide, limits)


def test_the_pixel_limit_is_inclusive():
    assert BitstreamLimits().max_pixels == 1 << 26
    exactly = write_container(Container(Header(1 << 16, 1 << 10, 1, 1), b"", b"", 0))  # 2**26 pixels
    assert read_header(exactly)[0].height == 1 << 10
    over = write_container(Container(Header(1 << 16, (1 << 10) + 1, 1, 1), b"", b"", 0))
    with pytest.raises(ImageTooLargeError):
        read_header(over)


def test_a_newer_format_version_is_refused_as_unsupported():
    data = write_container(Container(Header(8, 8, 1, 1, version=6), b"", b"", 0))
    with pytest.raises(UnsupportedVersionError, match="reads version\\(s\\) 1, 2, 3, 4, 5"):
        read_container(data)


@pytest.mark.parametrize("offset", [-128, -1, 1, 127])
def test_version_3_carries_a_rate_offset(offset):
    header = Header(40, 24, 3, 7, version=3, rate_offset=offset)
    back = read_container(write_container(Container(header, b"z", b"yy", 5))).header
    assert back == header and back.level == 2 + offset / 32


def test_a_rate_offset_needs_version_3_and_an_int8():
    for header in (Header(8, 8, 1, 1, rate_offset=1), Header(8, 8, 1, 1, version=3, rate_offset=128)):
        with pytest.raises(ValueError, match="rate offset"):
            write_container(Container(header, b"", b"", 0))


def test_quality_zero_in_a_header_with_a_valid_crc_is_corrupt():
    data = bytearray(write_container(Container(Header(8, 8, 1, 1), b"", b"", 0)))
    data[7] = 0  # magic(2) version(1) model(2) width(1) height(1) -> flags
    with pytest.raises(BitstreamError, match="quality"):
        read_container(with_crc(bytes(data)))


def test_a_hints_flag_with_zero_hint_bytes_is_corrupt():
    """Writers set the hints flag only with at least one hint byte; anything else is corrupt."""
    good = write_container(Container(Header(8, 8, 1, 1), b"", b"", 0))
    forged = good[:7] + bytes([good[7] | 0x80, 0]) + good[8:]
    with pytest.raises(BitstreamError):
        read_container(with_crc(forged))


def test_a_z_length_past_the_end_is_a_truncation_error():
    good = write_container(Container(Header(8, 8, 1, 1), b"zz", b"yy", 0))
    forged = good[:8] + bytes([100]) + good[9:]  # z length 2 -> 100
    with pytest.raises(BitstreamError, match="truncated"):
        read_container(with_crc(forged))
