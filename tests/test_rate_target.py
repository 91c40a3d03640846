"""Continuous rates: qualities between and beyond the trained levels (format version 3), and
`--bpp TARGET` / Codec.compress_to_bpp, which searches that scale per image."""

import numpy as np
import pytest
from helpers import make_textured, with_crc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitstream import LAYOUT_VERSION
from codec import Codec, CodecError
from codec.model_files import LEGACY_WEIGHTS


@pytest.fixture(scope="module")
def image():
    return make_textured(128, 96)


@pytest.fixture(scope="module")
def level_bpp(codec, image):
    pixels = image.width * image.height
    return {q: len(codec.compress(image, q)) * 8 / pixels for q in codec.qualities}


@pytest.fixture(scope="module")
def v1() -> Codec:
    """The older shipped weights (one y pass)."""
    return Codec.load(LEGACY_WEIGHTS[0])


def test_one_pass_weights_write_version_5_with_one_y_section_and_the_image_centred(v1, image):
    header = v1.read_header(v1.compress(image, 2))
    assert (header.version, header.quality, header.rate_offset) == (LAYOUT_VERSION, 2, 0)
    assert header.centred and not header.two_pass


@pytest.mark.parametrize(
    "quality, nearest, offset", [(2.25, 2, 8), (2.75, 3, -8), (-3, 1, -128), (8, 6, 64), (0, 1, -32)]
)
def test_other_qualities_write_a_rate_offset(v1, codec, image, quality, nearest, offset):
    data = v1.compress(image, quality)
    header = v1.read_header(data)
    assert (header.version, header.quality, header.rate_offset) == (LAYOUT_VERSION, nearest, offset)
    assert header.level == quality - 1
    assert codec.decompress(data, steps=0).size == image.size  # the default codec decodes them too


@pytest.mark.parametrize(
    "quality, nearest, offset", [(2, 2, 0), (2.25, 2, 8), (2.75, 3, -8), (-3, 1, -128), (8, 6, 64), (0, 1, -32)]
)
def test_the_shipped_two_pass_weights_write_version_5_with_its_rate_offset(codec, image, quality, nearest, offset):
    data = codec.compress(image, quality)
    header = codec.read_header(data)
    assert (header.version, header.quality, header.rate_offset) == (LAYOUT_VERSION, nearest, offset)
    assert header.two_pass and header.centred
    assert header.level == quality - 1
    assert codec.decompress(data, steps=0).size == image.size


def test_rate_grows_along_the_whole_quality_scale(codec, image):
    rates = [len(codec.compress(image, q)) for q in (-3, -2, -1, 0, 1, 1.5, 2, 3, 4, 5, 6, 7, 8)]
    assert rates == sorted(rates) and rates[0] < rates[4] < rates[-1]


def test_a_header_rate_beyond_the_scale_is_corrupt(codec, image):
    from dataclasses import replace

    from bitstream import read_container, write_container
    from codec import BitstreamError

    container = read_container(codec.compress(image, 6.5))
    bad = replace(container, header=replace(container.header, rate_offset=127))  # level 6 + 127/32 > 8
    with pytest.raises(BitstreamError, match="rate level"):
        codec.decompress(write_container(bad))


def test_bpp_targets_land_close_on_the_continuous_scale(codec, image, level_bpp):
    pixels = image.width * image.height
    for target in (0.6 * level_bpp[1], np.sqrt(level_bpp[2] * level_bpp[3]), 1.1 * level_bpp[6]):
        data, quality = codec.compress_to_bpp(image, target)
        assert len(data) * 8 / pixels == pytest.approx(target, rel=0.05)
        assert codec.read_header(data).level == quality - 1


def test_the_file_equals_a_compress_at_the_returned_quality(codec, image):
    data, quality = codec.compress_to_bpp(image, 0.3)
    assert data == codec.compress(image, quality)


def test_targets_beyond_reach_give_the_ends_of_the_scale(codec, image):
    assert codec.compress_to_bpp(image, 1e-5)[1] == -3
    assert codec.compress_to_bpp(image, 30.0)[1] == 8


def test_refinement_overrides_are_recorded(codec, image):
    data, _ = codec.compress_to_bpp(image, 0.2, steps=3, sampler="ddim")
    refine = codec.read_header(data).refine
    assert (refine.steps, refine.sampler) == (3, "ddim")


@pytest.mark.parametrize("target", [0, -1, float("nan"), float("inf"), "0.1", True])
def test_bad_targets_are_refused(codec, image, target):
    with pytest.raises(CodecError, match="target bpp"):
        codec.compress_to_bpp(image, target)


def test_cli_bpp(dpc, tmp_path, image, codec):
    src = tmp_path / "a.png"
    image.save(src)
    assert dpc("compress", src, "--bpp", "0.3").code == 0
    assert "quality:" in dpc("info", tmp_path / "a.dpc").out
    # the target reaches the encoder: the file is the one compress_to_bpp picks, not quality 3's
    assert (tmp_path / "a.dpc").read_bytes() == codec.compress_to_bpp(image, 0.3)[0]
    assert dpc("compress", src, "--bpp", "0.05", "-o", tmp_path / "low.dpc").code == 0
    assert (tmp_path / "low.dpc").stat().st_size < (tmp_path / "a.dpc").stat().st_size
    assert dpc("compress", src, "-q", "2.25", "-o", tmp_path / "h.dpc").code == 0
    assert "quality:         2.25 (nearest trained level 2, offset 8/32)" in dpc("info", tmp_path / "h.dpc").out
    for bad in (["--bpp", "0.3", "-q", "2"], ["--bpp", "0"], ["--bpp", "nan"]):
        with pytest.raises(SystemExit) as exc:  # argparse's usage error
            dpc("compress", src, *bad, "-o", tmp_path / "b.dpc")
        assert exc.value.code == 2
    assert not (tmp_path / "b.dpc").exists()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(2, 40), value=st.integers(0, 255), fix_crc=st.booleans())
def test_a_mutated_version_3_file_decodes_or_fails_cleanly(codec, v3_file, position, value, fix_crc):
    data = bytearray(v3_file)
    data[min(position, len(data) - 5)] = value
    mutated = with_crc(bytes(data)) if fix_crc else bytes(data)
    try:
        codec.decompress(mutated, steps=0)
    except CodecError:
        pass  # one clean error; anything else (or a hang) fails the test


@pytest.fixture(scope="module")
def v3_file(v1):
    """A version-3 file of the older shipped weights, which the default codec decodes with them."""
    return v1.compress(make_textured(64, 48), quality=-1.5)
