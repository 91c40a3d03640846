"""The Python API (codec/pipeline.py): exact latent round trip, reproducibility, rate and quality."""

import numpy as np
import pytest
from helpers import make_smooth, make_textured, psnr
from PIL import Image

from codec import Codec, CodecError, ImageTooLargeError, InvalidOptionError, ModelFileError
from codec.errors import BitstreamError

QUALITIES = [1, 2, 3, 4, 5, 6]


def test_the_shipped_weights_offer_six_quality_levels(codec):
    assert list(codec.qualities) == QUALITIES
    assert 0 <= codec.model_id < 1 << 16


@pytest.mark.parametrize("quality", QUALITIES)
def test_decoding_a_file_recovers_exactly_the_symbols_the_encoder_analysed(codec, smooth_image, quality):
    """analyse(image, q) and decode_symbols(compress(image, q)) give identical z and y arrays."""
    analysed = codec.stages.analyse(smooth_image, quality)
    header, decoded = codec.stages.decode_symbols(codec.compress(smooth_image, quality))
    assert np.array_equal(decoded.z, analysed.z)
    assert np.array_equal(decoded.y, analysed.y)
    assert decoded.z.dtype == decoded.y.dtype == np.int32
    # 96x64 is centred in a 128x128 canvas (sides of 64 px multiples, at least 128: codec/canvas.py):
    # z at 1/64, y at 1/16 of it.
    assert decoded.z.shape == (1, 32, 2, 2)
    assert decoded.y.shape == (1, 64, 8, 8)
    assert (header.width, header.height, header.quality, header.model_id) == (96, 64, quality, codec.model_id)


def test_latent_round_trip_is_exact_on_a_photo_with_odd_size(codec):
    """Also for a real photo whose size is not a multiple of the 64-pixel padding."""
    image = make_textured(77, 45)
    for quality in (1, 6):
        analysed = codec.stages.analyse(image, quality)
        _, decoded = codec.stages.decode_symbols(codec.compress(image, quality))
        assert np.array_equal(decoded.z, analysed.z) and np.array_equal(decoded.y, analysed.y)


def test_the_quality_levels_really_quantise_differently(codec, textured_image):
    """Guards the round-trip tests against a codec that ignores `quality`."""
    y1 = codec.stages.analyse(textured_image, 1).y
    y6 = codec.stages.analyse(textured_image, 6).y
    assert np.abs(y6).sum() > np.abs(y1).sum()


def test_decompress_returns_rgb_of_the_input_size(codec, smooth_image):
    out = codec.decompress(codec.compress(smooth_image, 3))
    assert out.mode == "RGB"
    assert out.size == smooth_image.size


def test_compressing_the_same_image_twice_gives_identical_bytes(codec, textured_image):
    assert codec.compress(textured_image, 4) == codec.compress(textured_image, 4)


def test_a_freshly_loaded_codec_produces_the_same_bytes_and_pixels(codec, smooth_image):
    """Files do not depend on the process or Codec instance that made them."""
    data = codec.compress(smooth_image, 2)
    other = Codec.load()
    assert other.model_id == codec.model_id
    assert other.compress(smooth_image, 2) == data
    assert np.array_equal(np.asarray(other.decompress(data)), np.asarray(codec.decompress(data)))


def test_decompressing_the_same_bytes_twice_gives_identical_pixels(codec, textured_image):
    data = codec.compress(textured_image, 3)
    first = np.asarray(codec.decompress(data))
    second = np.asarray(codec.decompress(bytearray(data)))
    assert np.array_equal(first, second)


def test_file_size_grows_strictly_with_quality_on_a_textured_image(codec, textured_image):
    sizes = [len(codec.compress(textured_image, q)) for q in QUALITIES]
    assert all(np.diff(sizes) > 0), sizes


def test_highest_quality_reconstructs_a_smooth_image_above_20_db_psnr(codec, smooth_image):
    out = codec.decompress(codec.compress(smooth_image, 6))
    assert psnr(out, smooth_image) > 20.0


def test_distortion_does_not_grow_from_the_lowest_to_the_highest_quality(codec, textured_image):
    low = psnr(codec.decompress(codec.compress(textured_image, 1)), textured_image)
    high = psnr(codec.decompress(codec.compress(textured_image, 6)), textured_image)
    assert high > low


@pytest.mark.parametrize("quality", [9, 8.5, -3.5, float("nan"), float("inf"), "3", True, None])
def test_an_invalid_quality_is_a_codec_error(codec, smooth_image, quality):
    with pytest.raises(CodecError, match="quality"):
        codec.compress(smooth_image, quality)
    with pytest.raises(CodecError, match="quality"):
        codec.stages.analyse(smooth_image, quality)


def test_numpy_integer_qualities_are_accepted(codec, smooth_image):
    assert codec.compress(smooth_image, np.int64(2)) == codec.compress(smooth_image, 2)


def test_a_pixel_limit_set_at_load_time_applies_to_compress_and_decompress(codec, smooth_image):
    small = Codec(codec.bundle, limits=type(codec.limits)(max_pixels=96 * 64 - 1))
    with pytest.raises(ImageTooLargeError):
        small.compress(smooth_image, 1)
    with pytest.raises(ImageTooLargeError):
        small.decompress(codec.compress(smooth_image, 1))
    assert small.decompress(codec.compress(make_smooth(32, 32), 1)).size == (32, 32)


def test_codec_load_accepts_max_pixels(smooth_image):
    with pytest.raises(ImageTooLargeError):
        Codec.load(max_pixels=100).compress(smooth_image, 1)


def test_decompress_refuses_a_non_bytes_argument(codec):
    with pytest.raises(BitstreamError):
        codec.decompress("DP\x01 not bytes")


def test_missing_weight_file_is_a_model_file_error(tmp_path):
    with pytest.raises(ModelFileError):
        Codec.load(tmp_path / "nope.safetensors")


def test_a_weight_file_that_is_not_safetensors_is_a_model_file_error(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(ModelFileError):
        Codec.load(path)


def test_compress_accepts_any_pil_mode(codec):
    """The API applies the same input rules as load_image (see test_images.py)."""
    gray = Image.fromarray(np.tile(np.arange(0, 256, 4, dtype=np.uint8), (16, 1)), "L")
    out = codec.decompress(codec.compress(gray, 6))
    assert out.mode == "RGB" and out.size == (64, 16)


def test_compress_refuses_an_image_its_own_decoder_would_refuse(codec):
    """.dpc headers allow sides up to BitstreamLimits.max_side (65536) and decompress enforces it,
    so compress must refuse a wider image (a 65537x1 strip here; a 70000x1000 panorama alike, at
    70 Mpx well under the pixel limit) instead of writing a file that can never be decoded."""
    image = Image.new("RGB", (codec.limits.max_side + 1, 1), (120, 130, 140))
    with pytest.raises(ImageTooLargeError):
        codec.compress(image, 1)


@pytest.mark.parametrize("quality", [3.01, 1 / 3, 2.51, -2.49, 7.999])
def test_a_quality_off_the_1_32_grid_is_refused_not_rounded(codec, quality):
    """-q 3.01 used to become 3 without a word: a file other than the one asked for (issue #30)."""
    with pytest.raises(InvalidOptionError, match="multiple of 1/32"):
        codec.compress(make_smooth(16, 16), quality)


@pytest.mark.parametrize("quality", [2.5, -2.5, 3.03125, -3, 8, np.float32(1.25)])
def test_every_quality_on_the_1_32_grid_keeps_its_exact_rate_point(codec, quality):
    assert codec.rates.point(quality).quality == quality


@pytest.mark.parametrize("max_pixels", [0, -1, 2.5, "100", True])
def test_a_pixel_limit_that_is_not_a_positive_integer_is_an_invalid_option_like_on_the_cli(max_pixels):
    """The CLI refuses --max-pixels 0 as a usage error; the API used to accept it and then refuse every image."""
    with pytest.raises(InvalidOptionError, match="max_pixels must be a positive integer"):
        Codec.load(max_pixels=max_pixels)
