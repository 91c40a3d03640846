"""What each input image becomes (codec/images.py) and that odd formats and sizes survive
compress -> decompress with exactly their width and height, as RGB.

Rules under test (codec/images.py docstring):
- EXIF orientation is applied (a phone photo comes back upright);
- grayscale, palette, CMYK, 1-bit -> RGB;
- 16-bit images are scaled to 8 bits (value / 257), not clipped;
- alpha is not stored: pixels are composited onto white (transparent -> white);
- multi-frame files: the first frame.
"""

import io

import numpy as np
import pytest
from helpers import encode, make_smooth, psnr
from PIL import Image

from codec import load_image
from codec.images import to_rgb

ORIENTATION = 0x0112


def gray16(values) -> Image.Image:
    """A 16-bit grayscale image as Pillow opens it from a 16-bit PNG (mode I;16)."""
    im = Image.open(io.BytesIO(encode(Image.fromarray(np.asarray(values, dtype=np.uint16)), "PNG")))
    im.load()
    assert im.mode == "I;16"
    return im


def rgb_array(im: Image.Image) -> np.ndarray:
    out = to_rgb(im)
    assert out.mode == "RGB"
    return np.asarray(out).astype(int)


# -- to_rgb rules -------------------------------------------------------------------------------
def test_16_bit_gray_is_scaled_by_1_257_not_clipped():
    """65535 -> 255, 32768 -> 128 (32768 / 257 = 127.5), 257 -> 1, 0 -> 0, on all three channels."""
    arr = rgb_array(gray16([[0, 257], [32768, 65535]]))
    assert arr[..., 0].tolist() == [[0, 1], [128, 255]]
    assert (arr == arr[..., :1]).all()


def test_16_bit_scaling_does_not_depend_on_the_brightest_pixel():
    """A dark 16-bit image is still 16-bit data: 255 / 257 -> 1, not 255 (and so darker than 256 / 257 -> 1)."""
    dark = rgb_array(gray16([[0, 100], [200, 255]]))[..., 0]
    assert dark.tolist() == [[0, 0], [1, 1]]
    # The same 16-bit value must give the same 8-bit value whatever else is in the image.
    assert rgb_array(gray16([[255]]))[0, 0, 0] == rgb_array(gray16([[255, 65535]]))[0, 0, 0]


def test_8_bit_gray_becomes_equal_rgb_channels():
    arr = rgb_array(Image.fromarray(np.array([[0, 77], [200, 255]], dtype=np.uint8), "L"))
    assert arr[..., 1].tolist() == [[0, 77], [200, 255]]
    assert (arr == arr[..., :1]).all()


def test_alpha_is_composited_on_white():
    """Transparent -> white whatever its colour; opaque keeps its colour; 50% black -> mid gray."""
    rgba = np.array([[[0, 0, 0, 0], [10, 200, 30, 0]], [[10, 200, 30, 255], [0, 0, 0, 128]]], dtype=np.uint8)
    arr = rgb_array(Image.fromarray(rgba, "RGBA"))
    assert arr[0, 0].tolist() == arr[0, 1].tolist() == [255, 255, 255]
    assert arr[1, 0].tolist() == [10, 200, 30]
    assert all(abs(v - 127) <= 1 for v in arr[1, 1])


def test_gray_with_alpha_is_composited_on_white():
    la = Image.fromarray(np.array([[[0, 0], [50, 255]]], dtype=np.uint8), "LA")
    assert rgb_array(la)[0].tolist() == [[255, 255, 255], [50, 50, 50]]


def _palette_image(transparent: bool) -> Image.Image:
    im = Image.fromarray(np.array([[0, 1], [2, 1]], dtype=np.uint8), "P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    if transparent:
        im.info["transparency"] = 0
    return Image.open(io.BytesIO(encode(im, "PNG", **({"transparency": 0} if transparent else {}))))


def test_a_palette_image_becomes_its_palette_colours():
    assert rgb_array(_palette_image(False)).tolist() == [[[0, 0, 0], [255, 0, 0]], [[0, 0, 255], [255, 0, 0]]]


def test_the_transparent_palette_entry_becomes_white():
    im = _palette_image(True)
    assert im.mode == "P" and "transparency" in im.info
    assert rgb_array(im).tolist() == [[[255, 255, 255], [255, 0, 0]], [[0, 0, 255], [255, 0, 0]]]


def test_cmyk_and_1_bit_images_become_rgb():
    assert rgb_array(Image.new("CMYK", (3, 2), (0, 0, 0, 0)))[0, 0].tolist() == [255, 255, 255]
    assert rgb_array(Image.new("1", (3, 2), 0))[0, 0].tolist() == [0, 0, 0]


def _jpeg_with_orientation(orientation: int, size=(48, 32)) -> bytes:
    """A JPEG whose stored top-left quarter is red and rest blue, with an EXIF orientation tag."""
    w, h = size
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    arr[...] = (0, 0, 255)
    arr[: h // 2, : w // 2] = (255, 0, 0)
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    return encode(Image.fromarray(arr, "RGB"), "JPEG", quality=95, exif=exif.tobytes())


def test_exif_orientation_6_is_applied_and_swaps_width_and_height(tmp_path):
    """Orientation 6 = display rotated 90 degrees clockwise: 48x32 stored -> 32x48 upright, and
    the stored top-left corner ends up top-right."""
    path = tmp_path / "phone.jpg"
    path.write_bytes(_jpeg_with_orientation(6))
    upright = load_image(path)
    assert upright.size == (32, 48)
    arr = np.asarray(upright).astype(int)
    assert arr[2, -3, 0] > 200 and arr[2, -3, 2] < 60  # top-right: red
    assert arr[2, 2, 0] < 60 and arr[2, 2, 2] > 200  # top-left: blue


def test_only_the_first_frame_of_an_animated_gif_is_used(tmp_path):
    frames = [Image.new("RGB", (8, 8), c).convert("P") for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    assert np.asarray(load_image(path))[4, 4].tolist() == [255, 0, 0]


# -- compress -> decompress for odd formats and sizes --------------------------------------------
def _rgba_half_transparent(width=64, height=48) -> Image.Image:
    arr = np.asarray(make_smooth(width, height).convert("RGBA")).copy()
    arr[:, : width // 2, :3] = 0  # black under ...
    arr[:, : width // 2, 3] = 0  # ... fully transparent
    return Image.fromarray(arr, "RGBA")


def _gray16_image() -> Image.Image:
    return Image.fromarray(np.asarray(make_smooth(40, 24).convert("L")).astype(np.uint16) * 257)


def _palette(transparent: bool) -> Image.Image:
    im = make_smooth(40, 24).quantize(16)
    if transparent:
        im.info["transparency"] = 3
    return im


# name -> (file suffix, PIL image to save, save args, expected decoded size)
FORMATS = {
    "png rgb": (".png", make_smooth(40, 24), {}, (40, 24)),
    "jpeg with exif orientation 6": (".jpg", None, {}, (32, 48)),
    "webp": (".webp", make_smooth(40, 24), {"quality": 90}, (40, 24)),
    "webp lossless": (".webp", make_smooth(40, 24), {"lossless": True}, (40, 24)),
    "tiff": (".tiff", make_smooth(40, 24), {}, (40, 24)),
    "bmp": (".bmp", make_smooth(40, 24), {}, (40, 24)),
    "gray L png": (".png", make_smooth(40, 24).convert("L"), {}, (40, 24)),
    "rgba png": (".png", _rgba_half_transparent(40, 24), {}, (40, 24)),
    "16-bit gray png": (".png", _gray16_image(), {}, (40, 24)),
    "palette png": (".png", _palette(False), {}, (40, 24)),
    "palette png with transparency": (".png", _palette(True), {"transparency": 3}, (40, 24)),
    "gif": (".gif", _palette(False), {}, (40, 24)),
}


@pytest.mark.parametrize("name", FORMATS, ids=list(FORMATS))
def test_every_supported_format_round_trips_to_rgb_of_the_upright_size(codec, tmp_path, name):
    suffix, image, save_args, size = FORMATS[name]
    path = tmp_path / f"input{suffix}"
    if image is None:
        path.write_bytes(_jpeg_with_orientation(6))
    else:
        image.save(path, **save_args)
    source = load_image(path)
    assert source.mode == "RGB" and source.size == size

    decoded = codec.decompress(codec.compress(source, 6), fidelity=True)

    assert decoded.mode == "RGB"
    assert decoded.size == size
    assert psnr(decoded, source) > 18.0  # the content survived, not just the shape


@pytest.mark.parametrize("size", [(1, 1), (17, 31), (31, 17), (65, 1), (1, 65), (64, 64), (65, 65)])
def test_odd_sizes_come_back_with_exactly_their_width_and_height(codec, size):
    """Images are padded to a multiple of 64 for the networks and cropped back after decoding."""
    image = Image.new("RGB", size, (200, 100, 50))
    decoded = codec.decompress(codec.compress(image, 6))
    assert decoded.mode == "RGB" and decoded.size == size
    mean = np.asarray(decoded).reshape(-1, 3).mean(axis=0)
    tolerance = 48 if size == (1, 1) else 24  # a lone pixel gets no help from its neighbours
    assert np.all(np.abs(mean - [200, 100, 50]) < tolerance), mean


def test_transparent_pixels_come_back_white_after_a_round_trip(codec):
    """Alpha is composited on white before coding, so the transparent half decodes white-ish
    (even though the hidden colour underneath is black) and the opaque half keeps its colours."""
    image = _rgba_half_transparent(64, 48)
    decoded = np.asarray(codec.decompress(codec.compress(image, 6))).astype(float)
    assert decoded[:, :24].mean() > 230
    opaque = np.asarray(image)[:, 40:, :3].astype(float)
    assert np.abs(decoded[:, 40:] - opaque).mean() < 20


def test_a_16_bit_image_round_trips_at_the_scaled_brightness(codec):
    """A 16-bit image of value 32768 decodes as ~128 gray, not as white (clipped) or black."""
    decoded = np.asarray(codec.decompress(codec.compress(gray16(np.full((24, 40), 32768)), 6)))
    assert decoded.shape == (24, 40, 3)
    assert abs(decoded.mean() - 128) < 12


def test_the_api_applies_exif_orientation_to_an_opened_jpeg_too(codec):
    """Codec.compress(Image.open(photo)) gives the same upright size as load_image does."""
    photo = Image.open(io.BytesIO(_jpeg_with_orientation(6)))
    assert photo.size == (48, 32)
    assert codec.decompress(codec.compress(photo, 1)).size == (32, 48)


def test_a_jpeg_whose_exif_block_is_damaged_but_pixels_whole_is_read(tmp_path):
    """The EXIF block holds metadata, not pixels: Pillow's "Corrupt EXIF data" warning is not a damaged
    image (issue #30: such a photo was refused, exit 3). The pixels are those of the same JPEG."""
    arr = np.zeros((32, 48, 3), np.uint8)
    arr[:16, :24] = (200, 30, 30)
    exif = Image.Exif()
    exif[0x010F] = "Camera"
    data = bytearray(encode(Image.fromarray(arr, "RGB"), "JPEG", quality=95, exif=exif.tobytes()))
    tiff = data.find(b"Exif\0\0") + 6
    data[tiff + 4 : tiff + 8] = b"\xff\xff\xff\x7f"  # the first IFD's offset: far past the block's end
    path = tmp_path / "damaged-exif.jpg"
    path.write_bytes(bytes(data))
    with Image.open(path) as reference:
        expected = np.asarray(reference.convert("RGB"))
    assert np.array_equal(np.asarray(load_image(path)), expected)
