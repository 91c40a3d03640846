"""Bad input is refused, never crashes, never leaves files behind.

API: every refusal is a CodecError subclass (the specific one where it matters).
CLI: a one-line `dpc: error: ...` on stderr, the subclass's exit code, no traceback,
and nothing written: no output file, no hidden `.part` temp file.
"""

import os
import struct
import subprocess
import sys
import time
import tracemalloc
from dataclasses import replace

import numpy as np
import pytest
from helpers import encode, flip_bit, make_smooth, short_png, tree, with_crc
from hypothesis import given, settings
from hypothesis import strategies as st

from bitstream import Container, Header, read_container, write_container
from codec import (
    BitstreamError,
    CodecError,
    DecoderDesyncError,
    ImageReadError,
    ImageTooLargeError,
    InvalidOptionError,
    ModelMismatchError,
    UnsupportedVersionError,
    load_image,
)

VERSION_BYTE = 2  # offset of the version byte (after the 2-byte magic)
MODEL_ID = slice(3, 5)  # little-endian 16-bit model id


# -- forged files ---------------------------------------------------------------------------
def other_weights_file(data: bytes) -> bytes:
    """A sound file whose header names other weights: model id changed, CRC recomputed."""
    (model_id,) = struct.unpack("<H", data[MODEL_ID])
    return with_crc(data[:3] + struct.pack("<H", model_id ^ 0x5A5A) + data[5:])


def huge_header_file(data: bytes) -> bytes:
    """The same payload under a header claiming a 10**6 x 10**6 image (valid CRC)."""
    c = read_container(data)
    h = c.header
    return write_container(Container(Header(10**6, 10**6, h.quality, h.model_id), c.z_data, c.y_data, c.symbol_check))


def version_file(data: bytes, version: int = 6) -> bytes:
    return with_crc(data[:VERSION_BYTE] + bytes([version]) + data[VERSION_BYTE + 1 :])


def unknown_sampler_file(data: bytes) -> bytes:
    """The file with decoder hints whose sampler byte (the second) names no sampler (7)."""
    c = read_container(data)
    return write_container(replace(c, header=replace(c.header, hints=bytes([4, 7, 10]))))


def desync_file(data: bytes) -> bytes:
    """Symbol check altered and CRC recomputed: container sound, decoded symbols fail the check."""
    (check,) = struct.unpack("<H", data[-4:-2])
    return with_crc(data[:-4] + struct.pack("<H", check ^ 1) + data[-2:])


# -- API --------------------------------------------------------------------------------------
def test_every_truncation_of_a_real_file_is_a_bitstream_error(codec, small_dpc):
    for cut in range(len(small_dpc)):
        with pytest.raises(BitstreamError):
            codec.decompress(small_dpc[:cut])


def test_every_single_bit_flip_anywhere_in_a_real_file_is_rejected(codec, small_dpc):
    """CRC-16 catches all 1-bit errors: header, both coded sections, symbol check and trailer."""
    for bit in range(8 * len(small_dpc)):
        with pytest.raises(BitstreamError):
            codec.decompress(flip_bit(small_dpc, bit))


def test_a_zero_byte_file_is_a_bitstream_error(codec):
    with pytest.raises(BitstreamError):
        codec.decompress(b"")


def test_wrong_magic_is_a_bitstream_error(codec, small_dpc):
    with pytest.raises(BitstreamError, match="magic"):
        codec.decompress(b"PK" + small_dpc[2:])


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_are_a_bitstream_error(codec, data):
    with pytest.raises(BitstreamError):
        codec.decompress(data)


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=0, max_size=200))
def test_random_bytes_behind_a_valid_magic_and_version_are_a_bitstream_error(codec, tail):
    with pytest.raises(BitstreamError):
        codec.decompress(b"DP\x01" + tail)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(z=st.binary(max_size=40), y=st.binary(max_size=200))
def test_random_coded_sections_in_a_sound_container_are_a_bitstream_error(codec, small_dpc, z, y):
    """Valid header and CRC around garbage: the entropy decoder or the symbol check refuses it."""
    c = read_container(small_dpc)
    rest = None if c.y_rest_data is None else y[::-1]  # two-pass files: garbage in both y sections
    forged = write_container(Container(c.header, z, y, c.symbol_check, rest))
    with pytest.raises(BitstreamError):
        codec.decompress(forged)


def test_a_file_from_other_weights_is_a_model_mismatch_not_a_crc_error(codec, small_dpc):
    with pytest.raises(ModelMismatchError, match="other model weights"):
        codec.decompress(other_weights_file(small_dpc))


def test_a_header_claiming_10_6_by_10_6_pixels_is_refused_quickly_without_allocating(codec, small_dpc):
    data = huge_header_file(small_dpc)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ImageTooLargeError):
            codec.decompress(data)
        with pytest.raises(ImageTooLargeError):
            codec.read_header(data)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 0.5
    assert peak < 1 << 20  # far below even one float per claimed pixel


@pytest.mark.parametrize("version", [0, 6, 255])
def test_an_unsupported_version_byte_is_an_unsupported_version_error(codec, small_dpc, version):
    with pytest.raises(UnsupportedVersionError, match=str(version)):
        codec.decompress(version_file(small_dpc, version))


def test_a_symbol_check_mismatch_is_a_decoder_desync_error(codec, small_dpc):
    with pytest.raises(DecoderDesyncError):
        codec.decompress(desync_file(small_dpc))


@pytest.mark.parametrize("quality", [7, 127])
def test_a_header_quality_the_weights_do_not_have_is_a_bitstream_error(codec, small_dpc, quality):
    c = read_container(small_dpc)
    h = c.header
    header = replace(h, quality=quality)
    forged = write_container(Container(header, c.z_data, c.y_data, 0, c.y_rest_data))
    with pytest.raises(BitstreamError, match="quality"):
        codec.decompress(forged)


@pytest.mark.parametrize("quality", [7, 127])
def test_dpc_info_refuses_a_header_quality_that_decompress_refuses_with_the_same_exit_code(
    dpc, tmp_path, small_dpc, quality
):
    c = read_container(small_dpc)
    h = c.header
    header = replace(h, quality=quality)
    path = tmp_path / "forged.dpc"
    path.write_bytes(write_container(Container(header, c.z_data, c.y_data, 0, c.y_rest_data)))
    info, decompress = dpc("info", path), dpc("decompress", path, "-o", tmp_path / "out.png")
    assert info.code == decompress.code == BitstreamError.exit_code
    assert "quality" in info.err and len(info.err.strip().splitlines()) == 1
    assert not (tmp_path / "out.png").exists()


def test_dpc_info_refuses_a_format_version_the_named_weights_do_not_write(dpc, tmp_path, small_dpc):
    c = read_container(small_dpc)
    h = c.header
    header = Header(h.width, h.height, h.quality, h.model_id, version=3, rate_offset=h.rate_offset)
    path = tmp_path / "forged.dpc"
    path.write_bytes(write_container(Container(header, c.z_data, c.y_data + (c.y_rest_data or b""), 0)))
    assert dpc("info", path).code == BitstreamError.exit_code


def test_a_17_byte_file_claiming_8192_px_is_refused_before_its_symbols_are_decoded(codec, small_dpc):
    """Its sections cannot hold the symbols its header claims: refused before z, the hyperprior's
    float64 parameters or y are computed (they took 30 s and 5 GB, issue #30)."""
    h = read_container(small_dpc).header
    forged = write_container(Container(Header(8192, 8192, h.quality, h.model_id, version=4), b"", b"", 0, b""))
    assert len(forged) == 17  # issue #30's file: format version 4 (two passes, no layout byte)
    tracemalloc.start()
    try:
        with pytest.raises(BitstreamError, match="cannot hold"):
            codec.decompress(forged)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20


def test_load_image_refuses_a_text_file_named_png(tmp_path):
    path = tmp_path / "x.png"
    path.write_text("this is not an image\n")
    with pytest.raises(ImageReadError):
        load_image(path)


def test_load_image_refuses_a_zero_byte_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty"):
        load_image(tmp_path / "empty.png")


def test_load_image_refuses_a_truncated_png(tmp_path):
    data = encode(make_smooth(64, 64), "PNG")
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError):
        load_image(tmp_path / "cut.png")


def test_load_image_refuses_a_missing_path(tmp_path):
    with pytest.raises(ImageReadError):
        load_image(tmp_path / "missing.png")


def test_load_image_refuses_a_folder(tmp_path):
    with pytest.raises(ImageReadError, match="folder"):
        load_image(tmp_path)


def test_load_image_refuses_an_image_over_the_pixel_limit(tmp_path):
    (tmp_path / "big.png").write_bytes(encode(make_smooth(64, 64), "PNG"))
    with pytest.raises(ImageTooLargeError):
        load_image(tmp_path / "big.png", max_pixels=64 * 64 - 1)


# -- CLI ----------------------------------------------------------------------------------------
def _bad_dpc(make, *extra):
    """Case builder: write make(real_file) as in/x.dpc and decompress it into out/."""

    def build(tmp_path, small_dpc):
        (tmp_path / "in" / "x.dpc").write_bytes(make(small_dpc))
        return ["decompress", tmp_path / "in" / "x.dpc", "-o", tmp_path / "out" / "x.png", *extra]

    return build


def _bad_image(content: bytes | None, *extra):
    """Case builder: write content as in/x.png (None: no file at all) and compress it into out/."""

    def build(tmp_path, small_dpc):
        if content is not None:
            (tmp_path / "in" / "x.png").write_bytes(content)
        return ["compress", tmp_path / "in" / "x.png", "-o", tmp_path / "out" / "x.dpc", *extra]

    return build


def _info_on(content):
    """Case builder: write content (bytes, or a function of the real file) as in/x.dpc and run info."""

    def build(tmp_path, small_dpc):
        (tmp_path / "in" / "x.dpc").write_bytes(content(small_dpc) if callable(content) else content)
        return ["info", tmp_path / "in" / "x.dpc"]

    return build


GOOD_PNG = encode(make_smooth(32, 24), "PNG")
GOOD_JPEG = encode(make_smooth(32, 24), "JPEG", quality=90)

CLI_CASES = {
    "truncated to 1 byte": (_bad_dpc(lambda d: d[:1]), BitstreamError),
    "truncated to 9 bytes": (_bad_dpc(lambda d: d[:9]), BitstreamError),
    "truncated to half": (_bad_dpc(lambda d: d[: len(d) // 2]), BitstreamError),
    "last byte missing": (_bad_dpc(lambda d: d[:-1]), BitstreamError),
    "random bytes": (_bad_dpc(lambda d: np.random.default_rng(7).bytes(len(d))), BitstreamError),
    "wrong magic": (_bad_dpc(lambda d: b"PK" + d[2:]), BitstreamError),
    "bit flipped in model id": (_bad_dpc(lambda d: flip_bit(d, 8 * 3 + 1)), BitstreamError),
    "bit flipped in z section": (_bad_dpc(lambda d: flip_bit(d, 8 * 10 + 5)), BitstreamError),
    "bit flipped mid y section": (_bad_dpc(lambda d: flip_bit(d, 4 * len(d))), BitstreamError),
    "bit flipped in crc": (_bad_dpc(lambda d: flip_bit(d, 8 * len(d) - 1)), BitstreamError),
    "file from other weights": (_bad_dpc(other_weights_file), ModelMismatchError),
    "header claims 10^6 x 10^6": (_bad_dpc(huge_header_file), ImageTooLargeError),
    "unsupported version": (_bad_dpc(version_file), UnsupportedVersionError),
    "symbol check mismatch": (_bad_dpc(desync_file), DecoderDesyncError),
    "zero-byte .dpc": (_bad_dpc(lambda d: b""), BitstreamError),
    "missing .dpc": (
        lambda tmp_path, d: ["decompress", tmp_path / "in" / "nope.dpc", "-o", tmp_path / "out" / "x.png"],
        BitstreamError,
    ),
    "info on a folder": (lambda tmp_path, d: ["info", tmp_path / "in"], BitstreamError),
    "info on zeros": (_info_on(b"\x00" * 40), BitstreamError),
    "info on a huge header": (_info_on(huge_header_file), ImageTooLargeError),
    "text file named x.png": (_bad_image(b"hello, I am text\n"), ImageReadError),
    "zero-byte x.png": (_bad_image(b""), ImageReadError),
    "truncated png": (_bad_image(GOOD_PNG[: len(GOOD_PNG) // 2]), ImageReadError),
    "missing image": (_bad_image(None), ImageReadError),
    "quality 9": (_bad_image(GOOD_PNG, "-q", "9"), InvalidOptionError),
    "quality 8.5": (_bad_image(GOOD_PNG, "--quality", "8.5"), InvalidOptionError),
    "quality nan": (_bad_image(GOOD_PNG, "--quality", "nan"), InvalidOptionError),
    "quality inf": (_bad_image(GOOD_PNG, "--quality", "inf"), InvalidOptionError),
    "101 refinement steps": (_bad_dpc(lambda d: d, "--steps", "101"), InvalidOptionError),
    "guidance 30": (_bad_dpc(lambda d: d, "--guidance", "30"), InvalidOptionError),
    "start 0": (_bad_dpc(lambda d: d, "--start", "0"), InvalidOptionError),
    "tile 100": (_bad_dpc(lambda d: d, "--tile", "100"), InvalidOptionError),
    "compress recording 101 steps": (_bad_image(GOOD_PNG, "--steps", "101"), InvalidOptionError),
    "png with 16 of 256 rows": (_bad_image(short_png(256, 256, 16)), ImageReadError),
    "jpeg cut and closed again": (_bad_image(GOOD_JPEG[: len(GOOD_JPEG) - 40] + b"\xff\xd9"), ImageReadError),
    "hints with an unknown sampler": (_bad_dpc(unknown_sampler_file), BitstreamError),
}


@pytest.mark.parametrize("case", CLI_CASES, ids=list(CLI_CASES))
def test_cli_refuses_bad_input_with_one_line_and_its_exit_code_and_writes_nothing(dpc, tmp_path, small_dpc, case):
    build, error = CLI_CASES[case]
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    argv = build(tmp_path, small_dpc)
    inputs_before = {p: (tmp_path / "in" / p).stat().st_mtime_ns for p in tree(tmp_path / "in")}

    result = dpc(*argv)

    assert result.code == error.exit_code != 0
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dpc: error: "), result.err
    assert "Traceback" not in result.err and "internal error" not in result.err
    assert result.out == ""
    assert tree(tmp_path / "out") == set()  # no output, no hidden .part file
    assert {p: (tmp_path / "in" / p).stat().st_mtime_ns for p in tree(tmp_path / "in")} == inputs_before


def test_exit_codes_tell_the_failures_apart():
    """Scripts rely on distinct codes per CodecError subclass (1 = generic, 2 = usage)."""
    codes = [
        e.exit_code
        for e in (
            CodecError,
            ImageReadError,
            ImageTooLargeError,
            BitstreamError,
            UnsupportedVersionError,
            ModelMismatchError,
            DecoderDesyncError,
        )
    ]
    assert len(set(codes)) == len(codes)
    assert 2 not in codes and 0 not in codes


@pytest.mark.parametrize("quality", ["abc", "2,5", ""])
def test_a_non_numeric_quality_is_an_argparse_usage_error_with_exit_2(dpc, tmp_path, capsys, quality):
    (tmp_path / "x.png").write_bytes(GOOD_PNG)
    with pytest.raises(SystemExit) as exc:
        dpc("compress", tmp_path / "x.png", "-q", quality)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid float value" in err and "Traceback" not in err
    assert tree(tmp_path) == {"x.png"}


def test_a_bad_quality_in_folder_mode_touches_no_file(dpc, tmp_path):
    """--quality is validated before any file is touched: not even the output folder is created."""
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.png").write_bytes(GOOD_PNG)
    (tmp_path / "pics" / "b.png").write_bytes(GOOD_PNG)

    result = dpc("compress", tmp_path / "pics", "-o", tmp_path / "packed", "-q", "9")

    assert result.code == InvalidOptionError.exit_code
    assert "quality" in result.err
    assert tree(tmp_path) == {"pics", "pics/a.png", "pics/b.png"}


# -- real processes -------------------------------------------------------------------------
def _run_dpc_process(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "DPC_DEBUG"}  # as a user runs it: no tracebacks asked for
    return subprocess.run(
        [sys.executable, "-m", "dpc.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def test_a_real_dpc_process_refuses_a_file_from_other_weights_cleanly(tmp_path, small_dpc):
    (tmp_path / "x.dpc").write_bytes(other_weights_file(small_dpc))
    proc = _run_dpc_process("decompress", "x.dpc", "-o", "x.png", cwd=tmp_path)
    assert proc.returncode == ModelMismatchError.exit_code == 7
    assert proc.stderr.startswith("dpc: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert tree(tmp_path) == {"x.dpc"}


def test_a_real_dpc_process_refuses_a_text_file_named_png_cleanly(tmp_path):
    (tmp_path / "x.png").write_text("not a picture")
    proc = _run_dpc_process("compress", "x.png", cwd=tmp_path)
    assert proc.returncode == ImageReadError.exit_code == 3
    assert proc.stderr.startswith("dpc: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert tree(tmp_path) == {"x.png"}


def test_the_shipped_models_min_bits_known_without_torch_are_their_tables():
    """codec/shipped.py's MIN_BITS let the CLI check a file's capacity before any model loads."""
    from codec.shipped import MIN_BITS

    for name, (z_bits, y_bits) in MIN_BITS.items():
        from codec import Codec

        entropy = Codec.load(name).entropy
        # to the last bit or two only: numpy's log2 takes other SIMD paths on other CPUs (an AVX2-only
        # AMD EPYC gave ...364 where avx512 machines give ...367), and the capacity check halves it
        assert entropy.z_tables.min_bits == pytest.approx(z_bits, rel=1e-12), name
        assert entropy.y_tables.min_bits == pytest.approx(y_bits, rel=1e-12), name


def _forged_17_byte_file(small_dpc) -> bytes:
    h = read_container(small_dpc).header
    return write_container(Container(Header(8192, 8192, h.quality, h.model_id, version=4), b"", b"", 0, b""))


@pytest.mark.parametrize("folder", [False, True])
def test_the_cli_refuses_a_17_byte_file_without_loading_any_model(tmp_path, small_dpc, folder):
    """Refused from its bytes (issue #30: it cost 1.9 s and 710 MB, a model load, per process):
    no torch is imported, nothing is written, decompress's own exit code and message."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a", "b", "c", "d") if folder else ("a",):
        (inputs / f"{name}.dpc").write_bytes(_forged_17_byte_file(small_dpc))
    src = inputs if folder else inputs / "a.dpc"
    out = tmp_path / ("out" if folder else "a.png")
    args = ["decompress", str(src), "-o", str(out), "--quiet"] + (["-j", "4"] if folder else [])
    probe = f"import sys\nfrom dpc.cli import main\ncode = main({args!r})\nprint('EXIT', code, 'torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert f"EXIT {BitstreamError.exit_code} False" in result.stdout, (result.stdout, result.stderr)
    assert "cannot hold the 524288 symbols" in result.stderr
    assert not out.exists()


def test_the_cli_refuses_a_bad_image_without_loading_any_model(tmp_path):
    """Reading and checking an image needs no torch (codec/images.py): a refusal takes about the time of
    `dpc info` (issue #30: every refusal took 2.5-4.5 s, the models loading first)."""
    path = tmp_path / "notes.png"
    path.write_text("not an image\n")
    args = ["compress", str(path), "-o", str(tmp_path / "notes.dpc")]
    probe = f"import sys\nfrom dpc.cli import main\ncode = main({args!r})\nprint('EXIT', code, 'torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert f"EXIT {ImageReadError.exit_code} False" in result.stdout, (result.stdout, result.stderr)
    assert not (tmp_path / "notes.dpc").exists()
