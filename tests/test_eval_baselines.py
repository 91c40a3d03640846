"""eval.baselines: classical codecs (JPEG, WebP, AVIF, JPEG XL) as baselines at a matched rate.

Real codecs run on tiny synthetic images; the rate search itself is pinned down
exactly with a fake codec whose file sizes are a known table.
"""

import io
import math
import struct
import sys

import numpy as np
import pytest
from helpers import make_smooth, make_textured
from PIL import Image

from eval.baselines import (
    BASELINES,
    AvifBaseline,
    Baseline,
    BaselineUnavailable,
    Encoded,
    JxlBaseline,
    encode_at_bpp,
    get_baseline,
    lowest_bpp,
)

NAMES = ["jpeg", "webp", "avif", "jxl"]


def noisy(width: int = 96, height: int = 64, sigma: float = 12.0, seed: int = 1) -> Image.Image:
    """Smooth gradients plus strong per-pixel noise: no lossy codec reproduces it exactly."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    rgb = np.stack([60 + 120 * xx / width, 50 + 140 * yy / height, 100 + 50 * np.sin(xx / 7 + yy / 5)], -1)
    rgb += rng.normal(0, sigma, rgb.shape)
    return Image.fromarray(np.clip(np.round(rgb), 0, 255).astype(np.uint8), "RGB")


def bpp_of(data: bytes, image: Image.Image) -> float:
    return len(data) * 8 / (image.width * image.height)


def psnr(a: Image.Image, b: Image.Image) -> float:
    x, y = (np.asarray(im, dtype=np.float64) for im in (a, b))
    return 10 * math.log10(255.0**2 / np.mean((x - y) ** 2))


def usable(name: str):
    ok, reason = BASELINES[name].available()
    if not ok:
        pytest.skip(reason)
    return BASELINES[name]


@pytest.fixture(scope="module")
def textured256() -> Image.Image:
    return make_textured(256, 256)


@pytest.fixture(scope="module")
def textured128() -> Image.Image:
    return make_textured(128, 96)


# --- a fake codec with a known size table: pins down the search ---------------------------------


class TableCodec(Baseline):
    """Fake codec: the file for quality q is exactly sizes[q] bytes (a 4-byte size header + padding).

    Counts its encodes of `counted_size` images (not the availability probe's); decodes to
    a gray image of the encoded size.
    """

    counted_size = (10, 10)

    name = "table"

    def __init__(self, sizes: list[int]):
        assert min(sizes) >= 4
        self.sizes = sizes
        self.qualities = range(len(sizes))
        self.encodes = 0

    def _encode(self, image, quality):
        self.encodes += image.size == self.counted_size
        return struct.pack("<HH", image.width, image.height) + bytes(self.sizes[quality] - 4)

    def _decode(self, data):
        w, h = struct.unpack("<HH", data[:4])
        return Image.new("RGB", (w, h), (128, 128, 128))

    def _versions(self):
        return "fake 1.0"

    def _settings(self):
        return "sizes from a table"


IMG_100PX = Image.new("RGB", (10, 10))  # 100 pixels: bpp = bytes * 8 / 100


def geometric_sizes(n: int = 101) -> list[int]:
    return [round(20 * 1.05**q) for q in range(n)]


def test_search_returns_the_setting_closest_in_log_ratio():
    sizes = geometric_sizes()
    for target in (2.0, 3.3, 7.77, 10.0, 50.0):
        enc = encode_at_bpp(TableCodec(sizes), IMG_100PX, target)
        best = min(range(len(sizes)), key=lambda q: abs(math.log(sizes[q] * 8 / 100 / target)))
        assert enc.quality == best, target
        assert enc.bpp == sizes[best] * 8 / 100


def test_search_costs_about_log2_of_the_range_encodes():
    codec = TableCodec(geometric_sizes(101))
    encode_at_bpp(codec, IMG_100PX, 5.0)
    assert codec.encodes <= math.ceil(math.log2(100)) + 2


def test_tie_in_log_ratio_goes_to_the_setting_not_above_the_target():
    # 10 bytes = 0.8 bpp and 40 bytes = 3.2 bpp are equally far (factor 2) from 1.6 bpp
    enc = encode_at_bpp(TableCodec([5, 10, 40, 80]), IMG_100PX, 1.6)
    assert enc.quality == 1 and enc.bpp == pytest.approx(0.8)


def test_at_most_returns_the_highest_rate_not_above_the_target():
    # target 3.0 bpp: 40 bytes (3.2 bpp) is closer than 20 bytes (1.6 bpp), but above it
    codec = TableCodec([5, 10, 20, 40, 80])
    assert encode_at_bpp(codec, IMG_100PX, 3.0).quality == 3
    assert encode_at_bpp(codec, IMG_100PX, 3.0, at_most=True).quality == 2


def test_target_below_the_lowest_rate_falls_back_to_the_lowest_quality_with_one_encode():
    codec = TableCodec(geometric_sizes())
    for at_most in (False, True):
        enc = encode_at_bpp(codec, IMG_100PX, 0.01, at_most=at_most)
        assert enc.quality == 0 and enc.bpp == 20 * 8 / 100 > 0.01
    assert codec.encodes == 2


def test_target_above_the_highest_rate_gives_the_highest_quality():
    sizes = geometric_sizes()
    enc = encode_at_bpp(TableCodec(sizes), IMG_100PX, 1e6)
    assert enc.quality == 100 and enc.bpp == sizes[-1] * 8 / 100


def test_bad_targets_and_names_are_rejected():
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            encode_at_bpp(TableCodec([5, 10]), IMG_100PX, bad)
    with pytest.raises(ValueError, match="unknown baseline"):
        encode_at_bpp("jpeg2000", IMG_100PX, 1.0)


def test_quality_outside_the_range_is_rejected():
    for q in (-1, 96, 2.5):
        with pytest.raises(ValueError):
            BASELINES["jpeg"].encode(IMG_100PX, q)


# --- registry and availability -------------------------------------------------------------------


def test_registry_holds_the_four_baselines_with_integer_quality_ranges():
    assert list(BASELINES) == NAMES
    assert BASELINES["jpeg"].qualities == range(1, 96)
    assert BASELINES["webp"].qualities == range(0, 101)
    for name, b in BASELINES.items():
        assert b.name == name and get_baseline(name) is b
        assert isinstance(b.qualities, range) and b.qualities.step == 1 and len(b.qualities) > 10
        assert "\n" not in b.description and b.description.startswith(name)


def test_pillow_baselines_are_available():
    for name in ("jpeg", "webp"):
        ok, detail = BASELINES[name].available()
        assert ok, detail
        assert "Pillow" in detail


def test_baseline_whose_library_is_missing_reports_a_one_line_reason():
    class Missing(TableCodec):
        name = "missing"

        def _versions(self):
            raise ImportError("No module named 'libnothing'\n(second line)")

    codec = Missing([5, 10])
    ok, reason = codec.available()
    assert not ok
    assert "missing" in reason and "libnothing" in reason and "\n" not in reason
    with pytest.raises(BaselineUnavailable, match="libnothing"):
        encode_at_bpp(codec, IMG_100PX, 1.0)
    with pytest.raises(BaselineUnavailable):
        lowest_bpp(codec, IMG_100PX)


def test_avif_and_jxl_are_unavailable_without_imagecodecs(monkeypatch):
    monkeypatch.setitem(sys.modules, "imagecodecs", None)  # `import imagecodecs` now raises ImportError
    for codec in (AvifBaseline(), JxlBaseline()):
        ok, reason = codec.available()
        assert not ok and "imagecodecs" in reason and "\n" not in reason
        assert "not installed" in codec.description
        with pytest.raises(BaselineUnavailable, match="imagecodecs"):
            encode_at_bpp(codec, IMG_100PX, 1.0)
    assert BASELINES["jpeg"].available()[0]  # Pillow baselines do not need it


# --- the real codecs -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [(96, 64), (97, 63)])  # odd sides too (4:2:0 chroma)
def test_round_trip_gives_an_rgb_image_of_the_same_size_close_to_the_original(name, size):
    codec = usable(name)
    image = make_smooth(*size)
    mid = codec.qualities[len(codec.qualities) // 2]
    data = codec.encode(image, mid)
    assert isinstance(data, bytes) and len(data) > 0
    decoded = codec.decode(data)
    assert decoded.mode == "RGB" and decoded.size == image.size
    assert psnr(image, decoded) > 25


@pytest.mark.parametrize("name", NAMES)
def test_rgba_and_gray_inputs_are_encoded_as_rgb(name):
    codec = usable(name)
    rgb = make_smooth(32, 24)
    for image in (rgb.convert("RGBA"), rgb.convert("L")):
        decoded = codec.decode(codec.encode(image, codec.qualities[-1]))
        assert decoded.mode == "RGB" and decoded.size == rgb.size


@pytest.mark.parametrize("name", NAMES)
def test_bytes_increase_with_quality(name, textured128):
    codec = usable(name)
    q = codec.qualities
    samples = [q[0], q[len(q) // 4], q[len(q) // 2], q[3 * len(q) // 4], q[-1]]
    sizes = [len(codec.encode(textured128, s)) for s in samples]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes), dict(zip(samples, sizes, strict=True))


@pytest.mark.parametrize("name", NAMES)
def test_encode_at_bpp_hits_a_reachable_target(name, textured256):
    codec = usable(name)
    target = 0.6
    assert lowest_bpp(name, textured256) < target
    enc = encode_at_bpp(name, textured256, target)
    assert isinstance(enc, Encoded)
    assert abs(math.log(enc.bpp / target)) <= math.log(1.25), enc
    # the reported rate is the real size of the real file at the reported quality, round-tripped
    assert enc.bpp == bpp_of(enc.data, textured256)
    assert enc.data == codec.encode(textured256, enc.quality)
    assert enc.decoded.mode == "RGB" and enc.decoded.size == textured256.size
    assert np.array_equal(np.asarray(enc.decoded), np.asarray(codec.decode(enc.data)))
    assert enc.baseline == name

    capped = encode_at_bpp(name, textured256, target, at_most=True)
    assert capped.bpp <= target
    assert abs(math.log(capped.bpp / target)) <= math.log(1.25), capped


@pytest.mark.parametrize("name", NAMES)
def test_unreachably_low_target_gives_the_lowest_quality_encode(name, textured128):
    codec = usable(name)
    floor = lowest_bpp(name, textured128)
    assert floor == bpp_of(codec.encode(textured128, codec.qualities[0]), textured128)
    enc = encode_at_bpp(name, textured128, floor / 10)
    assert enc.quality == codec.qualities[0]
    assert enc.bpp == floor > floor / 10
    assert enc.decoded.size == textured128.size


@pytest.mark.parametrize("name", NAMES)
def test_every_quality_setting_is_lossy_even_the_highest(name):
    codec = usable(name)
    image = noisy()
    decoded = codec.decode(codec.encode(image, codec.qualities[-1]))
    assert not np.array_equal(np.asarray(decoded), np.asarray(image))


def test_webp_is_lossy():
    codec = usable("webp")
    image = noisy()
    lossless = io.BytesIO()
    image.save(lossless, "WEBP", lossless=True)
    for q in (75, codec.qualities[-1]):  # even the highest quality is lossy
        data = codec.encode(image, q)
        assert not np.array_equal(np.asarray(codec.decode(data)), np.asarray(image))
        assert len(data) < len(lossless.getvalue()) / 2
    assert len(codec.encode(image, 75)) < len(lossless.getvalue()) / 4


def test_jpeg_and_avif_subsample_chroma_420(textured128):
    from PIL import JpegImagePlugin

    with Image.open(io.BytesIO(BASELINES["jpeg"].encode(textured128, 90))) as jpeg:
        assert JpegImagePlugin.get_sampling(jpeg) == 2  # 4:2:0

    codec = usable("avif")
    data = codec.encode(textured128, 90)
    at = data.index(b"av1C") + 4  # AV1CodecConfigurationRecord; its third byte holds the subsampling flags
    flags = data[at + 2]
    assert (flags >> 3) & 1 == 1 and (flags >> 2) & 1 == 1  # chroma_subsampling_x, chroma_subsampling_y


def test_decoders_returning_gray_or_rgba_arrays_give_rgb_images():
    class ArrayCodec(TableCodec):
        def __init__(self, channels):
            super().__init__([5, 10])
            self.channels = channels

        def _decode(self, data):
            w, h = struct.unpack("<HH", data[:4])
            shape = (h, w) if self.channels is None else (h, w, self.channels)
            return np.full(shape, 77, dtype=np.uint8)

    for channels in (None, 1, 2, 4):
        decoded = ArrayCodec(channels).decode(ArrayCodec(channels).encode(IMG_100PX, 0))
        assert decoded.mode == "RGB" and decoded.size == (10, 10)
        assert np.all(np.asarray(decoded) == 77)
