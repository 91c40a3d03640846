"""What `Codec.compress` accepts (codec/images.py: as_image): PIL images, (H, W) or (H, W, 3) uint8
arrays and paths; anything else is a CodecError (ImageReadError), never a TypeError or AttributeError."""

import io
from pathlib import Path

import numpy as np
import pytest
from helpers import encode, make_smooth
from PIL import Image

from codec import CodecError, ImageReadError, ImageTooLargeError, InvalidOptionError, load_image

SMALL = make_smooth(24, 16)


def test_an_rgb_uint8_array_gives_the_same_file_as_its_pil_image(codec):
    arr = np.asarray(SMALL)
    assert codec.compress(arr, quality=1) == codec.compress(SMALL, quality=1)


def test_a_gray_uint8_array_gives_the_same_file_as_its_l_image(codec):
    arr = np.asarray(SMALL.convert("L"))
    assert codec.compress(arr, quality=1) == codec.compress(Image.fromarray(arr), quality=1)


def test_a_non_contiguous_array_view_is_accepted(codec):
    arr = np.asarray(make_smooth(48, 16))[:, ::2]
    assert codec.compress(arr, quality=1) == codec.compress(Image.fromarray(np.ascontiguousarray(arr)), quality=1)


@pytest.mark.parametrize("kind", [str, Path], ids=["str", "Path"])
def test_a_path_is_read_as_dpc_compress_reads_it(codec, tmp_path, kind):
    (tmp_path / "x.png").write_bytes(encode(SMALL, "PNG"))
    assert codec.compress(kind(tmp_path / "x.png"), quality=1) == codec.compress(SMALL, quality=1)


def test_a_missing_path_is_an_image_read_error(codec, tmp_path):
    with pytest.raises(ImageReadError, match="cannot read"):
        codec.compress(tmp_path / "missing.png")


@pytest.mark.parametrize(
    "thing", [None, 3, 2.5, True, b"\x89PNG\r\n\x1a\n", bytearray(8), [[1, 2], [3, 4]], {"image": 1}]
)
def test_anything_else_is_refused_with_a_codec_error(codec, thing):
    with pytest.raises(ImageReadError, match="expected a PIL image, an .* array or a path"):
        codec.compress(thing)
    with pytest.raises(CodecError):
        codec.compress_to_bpp(thing, 0.1)


def test_bytes_get_a_hint_how_to_pass_encoded_images(codec):
    with pytest.raises(ImageReadError, match=r"Image\.open\(io\.BytesIO"):
        codec.compress(encode(SMALL, "PNG"))


@pytest.mark.parametrize(
    "arr, message",
    [
        (np.zeros((8, 8, 4), np.uint8), "shape"),
        (np.zeros((8, 8, 1), np.uint8), "shape"),
        (np.zeros(64, np.uint8), "shape"),
        (np.zeros((8, 8, 3), np.float32), "uint8"),
        (np.zeros((8, 8), np.uint16), "uint8"),
        (np.zeros((0, 8, 3), np.uint8), "no pixels"),
        (np.full((8, 8, 3), np.nan, np.float32), "NaN"),
        (np.full((8, 8), np.inf), "NaN or infinite"),
    ],
    ids=["rgba", "one channel", "1-d", "float", "uint16", "empty", "nan", "inf"],
)
def test_arrays_of_another_shape_or_type_are_refused(codec, arr, message):
    with pytest.raises(ImageReadError, match=message):
        codec.compress(arr)


def test_an_array_over_the_pixel_limit_is_refused_before_conversion(codec):
    with pytest.raises(ImageTooLargeError):
        codec.compress(np.broadcast_to(np.uint8(0), (9000, 9000, 3)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_a_float_image_with_nan_or_inf_is_refused(codec, bad):
    arr = np.full((8, 8), 100.0, np.float32)
    arr[3, 4] = bad
    with pytest.raises(ImageReadError, match="NaN or infinite"):
        codec.compress(Image.fromarray(arr))


def test_a_finite_float_image_is_still_accepted(codec):
    codec.compress(Image.fromarray(np.full((8, 8), 100.0, np.float32)), quality=1)


def test_an_opened_but_cut_short_image_is_an_image_read_error_not_an_oserror(codec):
    data = encode(make_smooth(64, 64), "PNG")
    lazy = Image.open(io.BytesIO(data[: len(data) // 2]))  # Pillow reads only the header here
    with pytest.raises(ImageReadError):
        codec.compress(lazy)


def test_an_image_whose_file_was_closed_before_decoding_is_an_image_read_error(codec, tmp_path):
    (tmp_path / "x.png").write_bytes(encode(SMALL, "PNG"))
    with Image.open(tmp_path / "x.png") as im:
        pass
    with pytest.raises(ImageReadError, match="closed"):
        codec.compress(im)


def test_a_quality_out_of_range_is_an_invalid_option_error(codec):
    for quality in (9, float("nan"), float("inf")):
        with pytest.raises(InvalidOptionError):
            codec.compress(SMALL, quality=quality)


def test_load_image_and_compress_agree_on_a_path(codec, tmp_path):
    (tmp_path / "x.jpg").write_bytes(encode(SMALL, "JPEG", quality=90))
    assert codec.compress(str(tmp_path / "x.jpg"), 2) == codec.compress(load_image(tmp_path / "x.jpg"), 2)
