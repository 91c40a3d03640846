"""Decoder hints (bitstream/hints.py): the refinement settings a version-2 header carries."""

import pytest
from helpers import representable_refine_settings
from hypothesis import given, settings

from bitstream import (
    Container,
    Header,
    RefineSettings,
    pack_hints,
    read_header,
    unpack_hints,
    write_container,
)
from codec.errors import BitstreamError

representable = representable_refine_settings()


@settings(max_examples=300, deadline=None)
@given(representable)
def test_every_representable_setting_round_trips_exactly(s):
    assert unpack_hints(pack_hints(s)) == s


def test_the_usual_hints_cost_three_bytes_and_the_extension_only_when_needed():
    assert len(pack_hints(RefineSettings(steps=4, sampler="dpmpp", guidance=1.5))) == 3
    assert len(pack_hints(RefineSettings(steps=4, seed=300))) == 3 + 2 + 2
    assert len(pack_hints(RefineSettings(steps=4, start=0.5))) == 3 + 1 + 2


def test_no_hints_mean_the_plain_decoder_and_version_1_hints_are_ignored():
    assert unpack_hints(b"").steps == 0
    v1 = Header(8, 8, 1, 1, hints=b"\x04\x00\x0a", version=1)
    assert v1.refine == RefineSettings()
    assert Header(8, 8, 1, 1, hints=b"\x04\x00\x0a", version=2).refine.steps == 4


@pytest.mark.parametrize(
    "hints",
    [
        b"\x04",  # too short
        b"\x04\x00",
        b"\x65\x00\x0a",  # 101 steps
        b"\x04\x03\x0a",  # unknown sampler
        b"\x04\x00\x0a\x80",  # seed varint never ends
        b"\x04\x00\x0a\x00\x64",  # extension cut short
        b"\x04\x00\x0a\x00\x64\x00\x00",  # extension too long
        b"\x04\x00\x0a\x00\x00\x00",  # start 0 %
        b"\x04\x00\x0a\x00\x65\x00",  # start 101 %
        b"\x04\x00\x0a\xff\xff\xff\xff\x7f\x64\x00",  # seed beyond 2^28
    ],
)
def test_malformed_hints_in_a_version_2_header_are_refused_when_the_header_is_read(hints):
    data = write_container(Container(Header(8, 8, 1, 1, hints=hints, version=2), b"", b"", 0))
    with pytest.raises(BitstreamError, match="decoder hints"):
        read_header(data)


@pytest.mark.parametrize(
    "changes",
    [
        dict(steps=101),
        dict(steps=-1),
        dict(steps=2.5),
        dict(sampler="euler"),
        dict(guidance=26.0),
        dict(guidance=-1.0),
        dict(seed=-1),
        dict(seed=1 << 28),
        dict(start=0.0),
        dict(start=1.5),
        dict(early_exit=0.3),
    ],
)
def test_out_of_range_settings_are_refused(changes):
    with pytest.raises(ValueError):
        RefineSettings(**changes)
