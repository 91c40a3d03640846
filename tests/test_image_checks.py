"""Images are decoded completely before coding (codec/image_checks.py): a stream that ends early, or
holds less than its header claims, is an ImageReadError (exit 3) even where Pillow would fill in
the rest, and no decoder writes on stderr. Also a short run of the image fuzzer (scripts/fuzz_images.py)."""

import io
import os
import re
import struct
import zlib

import numpy as np
import pytest
from helpers import encode, make_smooth, make_textured, short_png, tree
from PIL import Image, ImageFile

from codec import ImageReadError, ImageTooLargeError, load_image
from codec.images import decode_image

PHOTO = make_textured(40, 24)


def _load(data: bytes, name: str = "x") -> Image.Image:
    return decode_image(io.BytesIO(data), name)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width: int, height: int, z: bytes, tail: bytes | None = None) -> bytes:
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    end = _chunk(b"IEND", b"") if tail is None else tail
    return b"\x89PNG\r\n\x1a\n" + header + _chunk(b"IDAT", z) + end


def _rows(width: int, height: int) -> bytes:
    return b"".join(b"\x00" + row.tobytes() for row in np.asarray(make_smooth(width, height)))


# -- PNG --------------------------------------------------------------------------------------------
def test_a_png_with_16_rows_of_data_under_a_256x256_header_is_refused():
    with pytest.raises(ImageReadError, match="16 of 256 rows"):
        _load(short_png(256, 256, 16))


def test_dpc_compress_of_such_a_png_exits_3_and_writes_nothing(dpc, tmp_path):
    (tmp_path / "cut.png").write_bytes(short_png(256, 256, 16))
    r = dpc("compress", tmp_path / "cut.png")
    assert r.code == ImageReadError.exit_code == 3
    assert r.err.count("\n") == 1 and "cut short" in r.err
    assert tree(tmp_path) == {"cut.png"}


def test_a_tiny_png_claiming_8192x8192_is_refused_before_any_pixel_is_decoded(monkeypatch):
    decoded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda im: decoded.append(im) or real_load(im))
    data = short_png(8192, 8192, 1)
    assert len(data) < 25_000
    with pytest.raises(ImageReadError, match="1 of 8192 rows"):
        _load(data)
    assert decoded == []


def test_the_pixel_limit_is_still_checked_first():
    with pytest.raises(ImageTooLargeError):
        decode_image(io.BytesIO(short_png(8192, 8192, 1)), "x", max_pixels=1 << 20)


@pytest.mark.parametrize(
    "data, message",
    [
        (_png(40, 24, zlib.compress(_rows(40, 24))[:-6]), "cut short"),  # zlib stream cut, IEND after it
        (_png(40, 24, zlib.compress(_rows(40, 24)), tail=b""), "IEND"),  # no IEND
        (_png(40, 12, zlib.compress(_rows(40, 24))), "more image data"),
        (_png(40, 24, zlib.compress(_rows(40, 24)) + b"junk"), "follows the end"),
        (_png(40, 24, b"\x78\x9c" + bytes(range(50))), "corrupt"),
    ],
    ids=["zlib stream cut", "no IEND", "more rows than the header", "data after the stream", "zlib error"],
)
def test_a_png_whose_image_data_does_not_match_its_header_is_refused(data, message):
    with pytest.raises(ImageReadError, match=message):
        _load(data)


def test_a_png_whose_idat_crc_fails_is_refused():
    data = bytearray(_png(40, 24, zlib.compress(_rows(40, 24))))
    data[data.index(b"IDAT") + 10] ^= 1
    with pytest.raises(ImageReadError, match="CRC"):
        _load(bytes(data))


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA", "1", "I;16"])
def test_complete_pngs_of_every_mode_are_accepted(mode):
    im = PHOTO.convert(mode) if mode != "I;16" else Image.fromarray(np.asarray(PHOTO.convert("L")).astype(np.uint16))
    assert _load(encode(im, "PNG")).size == (40, 24)


# -- JPEG -----------------------------------------------------------------------------------------
def _sof_height(data: bytes, height: int) -> bytes:
    at = re.search(rb"\xff[\xc0\xc2]", data).start() + 5
    return data[:at] + struct.pack(">H", height) + data[at + 2 :]


@pytest.mark.parametrize(
    "options",
    [{}, {"progressive": True}, {"subsampling": 0}, {"restart_marker_blocks": 1}],
    ids=["baseline", "progressive", "4:4:4", "restart markers"],
)
def test_a_jpeg_cut_inside_its_scan_data_and_closed_again_is_refused(options):
    data = encode(PHOTO, "JPEG", quality=90, **options)
    for cut in range(data.rindex(b"\xff\xda") + 20, len(data) - 2, 11):
        with pytest.raises(ImageReadError, match="cut short"):
            _load(data[:cut] + b"\xff\xd9")


def test_a_progressive_jpeg_cut_between_two_scans_is_refused():
    data = encode(PHOTO, "JPEG", quality=90, progressive=True)
    last_scan = data.rindex(b"\xff\xda")
    boundary = data.rindex(b"\xff\xc4", 0, last_scan) if b"\xff\xc4" in data[:last_scan] else last_scan
    with pytest.raises(ImageReadError, match="cut short"):
        _load(data[:boundary] + b"\xff\xd9")


@pytest.mark.parametrize("height", [48, 96, 8192])
def test_a_jpeg_whose_header_claims_more_rows_than_its_data_is_refused(height):
    with pytest.raises(ImageReadError, match="cut short"):
        _load(_sof_height(encode(PHOTO, "JPEG", quality=90), height))


@pytest.mark.parametrize(
    "im, options",
    [
        (PHOTO, {}),
        (PHOTO, {"progressive": True, "optimize": True}),
        (PHOTO.convert("L"), {}),
        (PHOTO.convert("CMYK"), {}),
        (PHOTO, {"restart_marker_blocks": 2}),
        (PHOTO, {"exif": Image.Exif()}),
    ],
    ids=["baseline", "progressive", "gray", "cmyk", "restart markers", "exif"],
)
def test_complete_jpegs_are_accepted(im, options):
    assert _load(encode(im, "JPEG", quality=85, **options)).size == (40, 24)


def test_an_mpo_whose_second_picture_is_cut_is_refused_and_a_whole_one_accepted():
    data = encode(PHOTO, "MPO", save_all=True, append_images=[PHOTO.rotate(180)])
    assert _load(data).size == (40, 24)
    for cut in (2, 3, 40):
        with pytest.raises(ImageReadError, match="picture 2 of 2 is incomplete"):
            _load(data[:-cut])


# -- WebP, TIFF, warnings --------------------------------------------------------------------------------
def _webp_with_vp8_cut(data: bytes, cut: int) -> bytes:
    """The VP8 chunk (the last) shortened by `cut` bytes, chunk and RIFF sizes fixed."""
    at = data.index(b"VP8 ")
    (length,) = struct.unpack("<I", data[at + 4 : at + 8])
    body = data[at + 8 : at + 8 + length - cut]
    chunk = b"VP8 " + struct.pack("<I", len(body)) + body + b"\0" * (len(body) & 1)
    rest = data[12:at] + chunk
    return b"RIFF" + struct.pack("<I", 4 + len(rest)) + b"WEBP" + rest


def test_a_lossy_webp_missing_the_end_of_its_vp8_data_is_refused_or_decodes_exactly():
    data = encode(PHOTO, "WEBP", quality=80)
    whole = np.asarray(_load(data))
    for cut in range(1, 12):
        try:
            im = _load(_webp_with_vp8_cut(data, cut))
        except ImageReadError:
            continue
        assert np.array_equal(np.asarray(im), whole), cut  # the coder's flush bytes carry no pixel


def test_a_tiff_listing_fewer_strips_than_its_size_needs_is_refused():
    data = bytearray(encode(PHOTO, "TIFF", tiffinfo={278: 4}))
    (ifd,) = struct.unpack("<I", data[4:8])
    for k in range(struct.unpack("<H", data[ifd : ifd + 2])[0]):
        entry = ifd + 2 + 12 * k
        if struct.unpack("<H", data[entry : entry + 2])[0] == 257:  # ImageLength: 24 -> 48 rows
            data[entry + 8 : entry + 10] = struct.pack("<H", 48)
    with pytest.raises(ImageReadError, match="strips"):
        _load(bytes(data))


def test_libtiff_messages_become_the_error_and_never_reach_stderr(capfd):
    data = encode(PHOTO, "TIFF", compression="tiff_lzw")
    (ifd,) = struct.unpack("<I", data[4:8])
    data = bytearray(data)
    for k in range(struct.unpack("<H", data[ifd : ifd + 2])[0]):
        entry = ifd + 2 + 12 * k
        if struct.unpack("<H", data[entry : entry + 2])[0] in (257, 278):
            data[entry + 8 : entry + 10] = struct.pack("<H", 48)
    with pytest.raises(ImageReadError, match="damaged or truncated"):
        _load(bytes(data))
    assert capfd.readouterr().err == ""


def test_a_python_warning_from_pillow_is_a_damaged_image_not_a_note_on_stderr(capfd):
    data = encode(PHOTO, "TIFF", compression="tiff_lzw")
    with pytest.raises(ImageReadError):
        _load(data[: len(data) - 30])  # the IFD, at the end, cut: "Corrupt EXIF data" and the like
    assert capfd.readouterr().err == ""


def test_load_image_of_a_cut_file_on_disk_is_refused(tmp_path):
    (tmp_path / "cut.jpg").write_bytes(encode(PHOTO, "JPEG")[:-50] + b"\xff\xd9")
    with pytest.raises(ImageReadError):
        load_image(tmp_path / "cut.jpg")


# -- the image fuzzer --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fuzz_images():
    from scripts import fuzz_images

    return fuzz_images


@pytest.fixture(scope="module")
def maker(fuzz_images):
    return fuzz_images.CaseMaker(fuzz_images.make_seeds())


def test_a_short_image_fuzz_run_has_no_failures(fuzz_images, maker):
    summary = fuzz_images.run_cases(maker, 20240601, range(400), 1 << 26, time_limit=5.0)
    assert summary.cases == 400
    assert not summary.failed, summary.failures[:3]
    for mutator in ("cut", "cut-closed", "lying-larger", "intact"):
        assert summary.by_mutator.get(mutator), mutator  # each kind ran


def test_the_image_fuzzer_reports_a_silent_acceptance_of_a_cut_stream(fuzz_images, maker, monkeypatch):
    def lenient(fp, name, max_pixels):  # plain Pillow: fills in what a stream lacks
        im = Image.open(fp)
        im.load()
        return im

    monkeypatch.setattr(fuzz_images, "decode_image", lenient)
    cut = fuzz_images.Case(0, "cut-closed", "png-rgb-16x12", short_png(16, 12, 4), must_refuse=True)
    outcome = fuzz_images.run_case(cut, 1 << 26, 5.0, maker.reference(cut.seed))
    assert outcome.kind == "accepted" and "accepted-cut" in outcome.failures


def test_the_image_fuzzer_reports_crashes_and_noise_on_stderr(fuzz_images, maker, monkeypatch):
    def noisy(fp, name, max_pixels):
        os.write(2, b"a decoder speaks\n")  # as C code does, below Python's sys.stderr
        raise ValueError("not a CodecError")

    monkeypatch.setattr(fuzz_images, "decode_image", noisy)
    outcome = fuzz_images.run_case(maker.case(0, 0), 1 << 26, 5.0)
    assert {"crash", "stderr"} <= set(outcome.failures)
