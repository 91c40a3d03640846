"""Encoder effort (codec/effort.py): `compress(..., effort=N)` and `dpc compress --effort N`.

A higher effort searches the latent per image; the file format and the decoder are unchanged,
so every such file decodes as any other. Small images keep this cheap (a few steps each).
"""

import io

import numpy as np
import pytest
import torch
from helpers import make_textured
from PIL import Image

from codec import InvalidOptionError
from codec.effort import ITERATIONS, TILE
from codec.options import EFFORTS


@pytest.fixture(scope="module")
def image():
    return make_textured(96, 64)


def _psnr(a: Image.Image, b: Image.Image) -> float:
    x, y = (np.asarray(i, dtype=np.float64) for i in (a, b))
    return float(10 * np.log10(255**2 / np.mean((x - y) ** 2)))


def _cost(codec, image, data: bytes) -> float:
    """bits per pixel + lambda x 255^2 x MSE of the fidelity decode: what the search lowers."""
    header = codec.read_header(data)
    decoded = np.asarray(codec.decompress(data, fidelity=True), dtype=np.float64) / 255
    mse = np.mean((decoded - np.asarray(image, dtype=np.float64) / 255) ** 2)
    bpp = len(data) * 8 / (image.width * image.height)
    return bpp + codec.effort_search.lam(header.level) * 255**2 * mse


def test_effort_0_is_the_one_pass_encoder(codec, image):
    assert codec.compress(image, 3, effort=0) == codec.compress(image, 3)


def test_the_levels_cost_more_steps_as_they_go_up():
    assert list(EFFORTS) == list(range(10)) and ITERATIONS[0] == 0
    assert all(a < b for a, b in zip(ITERATIONS, ITERATIONS[1:], strict=False))


@pytest.mark.parametrize("quality", [1, 3, 4.5])
def test_a_searched_file_decodes_as_any_other_and_costs_less(codec, image, quality):
    plain, searched = codec.compress(image, quality), codec.compress(image, quality, effort=2)
    assert searched != plain
    header = codec.read_header(searched)
    assert (header.level, header.model_id) == (codec.read_header(plain).level, codec.model_id)
    for fidelity in (True, False):
        assert codec.decompress(searched, fidelity=fidelity).size == image.size
    # J = R + lambda D from the real file and the real decode: the search never makes it worse,
    # and on a textured image it makes it clearly better
    assert _cost(codec, image, searched) < 0.99 * _cost(codec, image, plain)


def test_the_search_is_deterministic(codec, image):
    assert codec.compress(image, 2, effort=1) == codec.compress(image, 2, effort=1)


def test_an_image_larger_than_one_search_tile_is_searched_tile_by_tile(codec):
    big = make_textured(16 * TILE + 64, 48)  # two tiles across, with a partial one
    plain, searched = codec.compress(big, 2), codec.compress(big, 2, effort=1)
    assert _cost(codec, big, searched) < _cost(codec, big, plain)


def test_progress_reports_the_search_steps(codec, image):
    seen = []
    codec.compress(image, 3, effort=1, progress=lambda stage, done, total: seen.append((stage, done, total)))
    assert {s for s, _, _ in seen} == {"effort"}
    assert seen[-1] == ("effort", ITERATIONS[1], ITERATIONS[1])
    assert [d for _, d, _ in seen] == sorted(d for _, d, _ in seen)


def test_bpp_targets_land_with_effort_too(codec, image):
    data, quality = codec.compress_to_bpp(image, 0.5, effort=1)
    bpp = len(data) * 8 / (image.width * image.height)
    assert abs(np.log(bpp / 0.5)) < 0.15
    assert codec.read_header(data).level == quality - 1
    assert codec.decompress(data).size == image.size


@pytest.mark.parametrize("bad", [-1, 10, 2.5, "3", True, None])
def test_an_effort_outside_0_to_9_is_refused(codec, image, bad):
    with pytest.raises(InvalidOptionError, match="effort must be an integer from 0 to 9"):
        codec.compress(image, 3, effort=bad)


def test_the_cli_writes_the_searched_file(dpc, codec, image, tmp_path):
    src = tmp_path / "a.png"
    image.save(src)
    assert dpc("compress", src, "-o", tmp_path / "a.dpc", "--effort", "1", "-q", "2").code == 0
    data = (tmp_path / "a.dpc").read_bytes()
    assert data == codec.compress(image, 2, effort=1)
    assert dpc("decompress", tmp_path / "a.dpc", "-o", tmp_path / "b.png").code == 0
    decoded = Image.open(io.BytesIO((tmp_path / "b.png").read_bytes()))
    assert decoded.size == image.size and _psnr(decoded.convert("RGB"), image) > 15


@pytest.mark.parametrize("bad", ["10", "-1", "x"])
def test_the_cli_refuses_a_bad_effort_in_one_line(dpc, capsys, image, tmp_path, bad):
    src = tmp_path / "a.png"
    image.save(src)
    with pytest.raises(SystemExit) as exc:
        dpc("compress", src, "-o", tmp_path / "a.dpc", "--effort", bad)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--effort" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a.dpc").exists()


def test_on_images_large_enough_for_ms_ssim_the_search_lowers_the_mixed_distortion_too(codec):
    """From 161 px a side the distortion mixes MS-SSIM in (SearchSettings.msssim_weight)."""
    import torch
    from pytorch_msssim import ms_ssim

    from codec.effort import MSSSIM_MIN_SIDE, MSSSIM_TO_MSE

    image = make_textured(MSSSIM_MIN_SIDE + 31, MSSSIM_MIN_SIDE + 15)
    w = codec.effort_search.settings.msssim_weight
    assert 0 < w < 1

    def cost(data: bytes) -> float:
        x, y = (torch.from_numpy(np.asarray(i, dtype=np.float32) / 255).permute(2, 0, 1)[None]
                for i in (image, codec.decompress(data, fidelity=True)))  # fmt: skip
        mse = float(((x - y) ** 2).mean())
        sim = float(ms_ssim(y, x, data_range=1.0))
        lam = codec.effort_search.lam(codec.read_header(data).level)
        d = (1 - w) * mse + w * MSSSIM_TO_MSE * (1 - sim)
        return len(data) * 8 / (image.width * image.height) + lam * 255**2 * d

    assert cost(codec.compress(image, 2, effort=1)) < cost(codec.compress(image, 2))


@pytest.mark.parametrize("joint_z", [False, True])
def test_searching_z_too_gives_a_file_that_decodes_and_costs_less(codec, image, joint_z):
    """SearchSettings.joint_z: z soft-rounded and searched with y (its bits from its coding tables)."""
    from dataclasses import replace

    search = codec.effort_search
    saved = search.settings
    try:
        search.settings = replace(saved, joint_z=joint_z)
        searched = codec.compress(image, 2, effort=2)
        again = codec.compress(image, 2, effort=2)
    finally:
        search.settings = saved
    assert searched == again  # deterministic
    assert codec.decompress(searched, fidelity=True).size == image.size
    assert _cost(codec, image, searched) < 0.99 * _cost(codec, image, codec.compress(image, 2))


def test_the_z_bits_the_search_counts_are_the_coded_z_bits(codec):
    """The relaxed z rate (codec/effort.py: _z_bits, from the coding tables) at integer symbols is
    the z section's size, to within the coder's few bytes of overhead."""
    import torch

    symbols = codec.stages.analyse(make_textured(256, 192), 2)
    sections = codec.entropy.encode(symbols, codec.entropy.parameters(symbols, 1))
    bits = float(codec.effort_search._z_bits(torch.from_numpy(symbols.z).float()).sum())
    assert abs(bits - 8 * len(sections.z_data)) <= 64


def test_the_search_steps_through_channels_last_copies_with_the_codecs_pixels(codec, image):
    """The steps run g_s and the decoder on NHWC copies (faster on the CPU): the same pixels to
    float rounding, and the codec's own modules, which decode files, keep their layout."""
    from codec.effort import _StepSynthesis

    comp, decoder = codec.entropy.compressor, codec.autoencoder.decoder
    y_hat = torch.randn(1, comp.cfg.y_channels, 4, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        steps = _StepSynthesis(comp.g_s, decoder)(y_hat)
        plain = decoder(comp.g_s(y_hat))
    assert steps.shape == plain.shape == (1, 3, 64, 96)
    assert torch.allclose(steps, plain, atol=1e-4)
    assert all(p.is_contiguous() for p in (*comp.g_s.parameters(), *decoder.parameters()))
