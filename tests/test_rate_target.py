"""`--bpp TARGET` / Codec.compress_to_bpp: per image, the level whose file is nearest a rate."""

import numpy as np
import pytest
from helpers import make_textured

from codec import CodecError


@pytest.fixture(scope="module")
def image():
    return make_textured(128, 96)


@pytest.fixture(scope="module")
def level_bpp(codec, image):
    pixels = image.width * image.height
    return {q: len(codec.compress(image, q)) * 8 / pixels for q in codec.qualities}


def test_the_file_nearest_the_target_in_log_rate_is_kept(codec, image, level_bpp):
    qs = sorted(level_bpp)
    for lo, hi in zip(qs[:-1], qs[1:], strict=True):
        for target in (level_bpp[lo] * 1.01, np.sqrt(level_bpp[lo] * level_bpp[hi]) * 1.02, level_bpp[hi] * 0.99):
            data, quality = codec.compress_to_bpp(image, target)
            expected = min(qs, key=lambda q: abs(np.log(level_bpp[q] / target)))
            assert quality == expected == codec.read_header(data).quality
            assert len(data) * 8 / (image.width * image.height) == pytest.approx(level_bpp[expected])


def test_targets_beyond_reach_give_the_nearest_level(codec, image, level_bpp):
    assert codec.compress_to_bpp(image, 1e-4)[1] == min(level_bpp)
    assert codec.compress_to_bpp(image, 20.0)[1] == max(level_bpp)


def test_the_file_equals_a_plain_compress_at_that_quality(codec, image):
    data, quality = codec.compress_to_bpp(image, 0.3)
    assert data == codec.compress(image, quality)


def test_refinement_overrides_are_recorded(codec, image):
    data, _ = codec.compress_to_bpp(image, 0.2, steps=3, sampler="ddim")
    refine = codec.read_header(data).refine
    assert (refine.steps, refine.sampler) == (3, "ddim")


@pytest.mark.parametrize("target", [0, -1, float("nan"), float("inf"), "0.1", True])
def test_bad_targets_are_refused(codec, image, target):
    with pytest.raises(CodecError, match="target bpp"):
        codec.compress_to_bpp(image, target)


def test_cli_bpp(dpc, tmp_path, image):
    src = tmp_path / "a.png"
    image.save(src)
    assert dpc("compress", src, "--bpp", "0.3").code == 0
    assert "quality:" in dpc("info", tmp_path / "a.dpc").out
    for bad in (["--bpp", "0.3", "-q", "2"], ["--bpp", "0"], ["--bpp", "nan"]):
        with pytest.raises(SystemExit) as exc:  # argparse's usage error
            dpc("compress", src, *bad, "-o", tmp_path / "b.dpc")
        assert exc.value.code == 2
    assert not (tmp_path / "b.dpc").exists()
