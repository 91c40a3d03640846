"""Where an image sits in the canvas a file codes (codec/canvas.py, format version 5)."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers import make_textured

from bitstream import TWO_PASS_VERSION, Container, read_container, write_container
from codec.canvas import MIN_SIDE, Canvas
from codec.image_tensors import tensor_to_image


@pytest.mark.parametrize("height, width", [(1, 1), (1, 7), (17, 31), (64, 64), (100, 150), (120, 184), (65, 1)])
def test_pad_then_crop_gives_back_the_image_at_an_offset_on_the_latent_grid(height, width):
    x = torch.rand(1, 3, height, width)
    for centred in (False, True):
        canvas = Canvas(height, width, centred)
        padded = canvas.pad(x)
        assert padded.shape[-2:] == canvas.padded and all(side % 64 == 0 for side in canvas.padded)
        assert torch.equal(canvas.crop(padded), x)
        top, left = canvas.offset
        assert top % 8 == 0 and left % 8 == 0
        assert 0 <= top <= canvas.padded[0] - height and 0 <= left <= canvas.padded[1] - width
        if not centred:
            assert (top, left) == (0, 0)
        if centred:
            assert min(canvas.padded) >= MIN_SIDE
        # edges replicated: the row above the image repeats its first row
        if top:
            assert torch.equal(padded[..., top - 1, left : left + width], x[..., 0, :])


def test_a_centred_image_sits_on_the_latent_grid_in_a_canvas_of_at_least_128_px():
    assert Canvas(1, 7).padded == (128, 128) and Canvas(1, 7).offset == (56, 56)  # 63.5 px a side, floored
    assert Canvas(1, 7, centred=False).padded == (64, 64)
    assert Canvas(100, 150).padded == (128, 192) and Canvas(100, 150).offset == (8, 16)
    assert Canvas(768, 512).padded == (768, 512) and Canvas(768, 512).offset == (0, 0)  # nothing to place


def test_the_latent_box_pairs_the_canvas_latent_with_the_image_blocks():
    canvas = Canvas(100, 150)
    rows, cols = canvas.latent_box()
    assert (rows.start, rows.stop, cols.start, cols.stop) == (1, 13, 2, 20)


def flat(height: int, width: int, colour=(200, 60, 40)):
    from PIL import Image

    return Image.fromarray(np.full((height, width, 3), colour, np.uint8))


def psnr(a, b) -> float:
    err = ((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2).mean()
    return 10 * np.log10(255**2 / max(err, 1e-9))


@pytest.mark.parametrize("height, width", [(1, 1), (1, 7), (1, 64), (8, 8)])
def test_tiny_and_1xn_images_decode_as_well_as_a_flat_64_px_image(codec, height, width):
    """Issue #30: top-left in a 64 px canvas, on its edge, a 1 x 1 red image came back at 17 dB and
    a 1 x 7 one at 21 dB (q2), against 28 dB for a flat 64 x 64 image. Centred in a canvas of at
    least MIN_SIDE px, they decode as a flat 64 x 64 image does (32.5 dB)."""
    reference = psnr(codec.decompress(codec.compress(flat(64, 64), 2)), flat(64, 64))
    image = flat(height, width)
    got = psnr(codec.decompress(codec.compress(image, 2)), image)
    assert got >= reference - 2.0, (got, reference)


def test_top_left_files_still_decode_top_left_and_centred_files_at_their_offset(codec):
    image = make_textured(100, 70)
    data = codec.compress(image, 3)
    c = read_container(data)
    assert c.header.centred and Canvas.of_header(c.header).offset == (24, 8)
    header, latent = codec.stages.decode_latent(data)
    drawn = codec.stages.decode_pixels(latent, level=header.level)
    assert np.array_equal(np.asarray(codec.decompress(data)), np.asarray(tensor_to_image(drawn[..., 24:94, 8:108])))
    # the same sections in a version-4 header (no layout byte): the image is the canvas's top left
    old = write_container(Container(replace(c.header, version=TWO_PASS_VERSION, layout=0), *_sections(c)))
    assert not read_container(old).header.centred
    assert np.array_equal(np.asarray(codec.decompress(old)), np.asarray(tensor_to_image(drawn[..., :70, :100])))


def _sections(c: Container):
    return c.z_data, c.y_data, c.symbol_check, c.y_rest_data
