"""Diffusion refinement and tiled decoding (codec/sampling.py, codec/tiling.py, Codec.decompress).

Most tests use a tiny random-weight prior (fast, and independent of how well the
shipped prior is trained); a few check the shipped prior itself.
"""

from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers import make_smooth, make_textured, psnr

from bitstream import Container, RefineSettings, read_container, write_container
from codec import Codec, CodecError, InvalidOptionError, ModelFileError
from codec.canvas import Canvas
from codec.image_tensors import image_to_tensor, tensor_to_image
from codec.model_files import DEFAULT_WEIGHTS, LEGACY_WEIGHTS, load_prior, read_prior_config, save_prior
from codec.models.prior import LatentPrior, PriorConfig
from codec.sampling import refine
from codec.tiling import tile_map, tile_starts

TINY = PriorConfig(widths=(16, 32), norm_groups=8, attention_head_dim=8, default_steps=(2, 2, 2, 1, 1, 1))


@pytest.fixture(scope="session")
def tiny_prior_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("prior") / "tiny.safetensors"
    save_prior(path, LatentPrior(TINY), {"purpose": "tests"})
    return path


@pytest.fixture(scope="session")
def tiny(codec, tiny_prior_file) -> Codec:
    """The shipped codec weights with the tiny random prior."""
    return Codec(codec.bundle, prior_weights=tiny_prior_file)


@pytest.fixture(scope="session")
def photo_dpc(tiny) -> bytes:
    return tiny.compress(make_textured(128, 96), quality=1)


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


# -- header: the encoder records what the decoder should do ------------------------------------
def test_the_encoder_records_the_levels_default_refinement_in_the_header(tiny, photo_dpc):
    header = tiny.read_header(photo_dpc)
    assert header.two_pass  # the shipped weights code y in two passes
    assert header.refine == tiny.default_refine(1) == RefineSettings(steps=2, sampler="ddim", guidance=1.0)
    assert tiny.default_refine(6).steps == 1


def test_given_settings_are_recorded_and_steps_0_records_no_hints(tiny):
    image = make_smooth(64, 64)
    chosen = RefineSettings(steps=7, sampler="unipc", guidance=2.5, seed=12, start=0.6)
    assert tiny.read_header(tiny.compress(image, 2, chosen)).refine == chosen
    plain = tiny.compress(image, 2, RefineSettings(steps=0))
    assert tiny.read_header(plain).hints == b"" and tiny.read_header(plain).refine.steps == 0


def test_the_shipped_prior_has_a_default_for_every_level(codec):
    cfg = read_prior_config()
    assert len(cfg.default_steps) == len(codec.qualities)
    assert load_prior().prior.cfg == cfg


# -- reproducibility and the samplers ------------------------------------------------------------
def test_the_same_file_options_and_device_give_identical_pixels(tiny, photo_dpc):
    a = tiny.decompress(photo_dpc, steps=3, seed=7)
    b = tiny.decompress(photo_dpc, steps=3, seed=7)
    assert np.array_equal(pixels(a), pixels(b))
    other = tiny.decompress(photo_dpc, steps=3, seed=8)
    assert not np.array_equal(pixels(a), pixels(other))  # the seed matters


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp", "unipc"])
@pytest.mark.parametrize("steps", [1, 2, 5])
def test_each_sampler_refines_and_keeps_the_image_size(tiny, photo_dpc, sampler, steps):
    plain = tiny.decompress(photo_dpc, steps=0)
    refined = tiny.decompress(photo_dpc, sampler=sampler, steps=steps)
    assert refined.size == plain.size == (128, 96) and refined.mode == "RGB"
    assert not np.array_equal(pixels(refined), pixels(plain))


def test_steps_0_is_exactly_the_perceptual_decoder_on_the_coarse_latent(tiny, photo_dpc):
    header, coarse = tiny.stages.decode_latent(photo_dpc)
    drawn = Canvas.of_header(header).crop(tiny.stages.decode_pixels(coarse, tile=0, level=header.level))
    assert np.array_equal(pixels(tiny.decompress(photo_dpc, steps=0, tile=0)), pixels(tensor_to_image(drawn)))


def test_guidance_runs_both_passes_as_one_batch_per_step(tiny, photo_dpc, monkeypatch):
    prior = tiny.refiner.prior
    batches = []
    real = LatentPrior.forward

    def counting(self, noisy, t, cond, labels):
        batches.append((noisy.shape[0], labels.tolist()))
        return real(self, noisy, t, cond, labels)

    monkeypatch.setattr(LatentPrior, "forward", counting)
    _, coarse = tiny.stages.decode_latent(photo_dpc)
    refine(prior, coarse, 0, RefineSettings(steps=3, guidance=2.0))
    assert batches == [(2, [1, 0])] * 3  # conditional (level 1) and unconditional (label 0) together
    batches.clear()
    refine(prior, coarse, 0, RefineSettings(steps=3, guidance=1.0))
    assert batches == [(1, [1])] * 3


def test_early_exit_stops_once_steps_change_little_and_start_shortens_the_path(tiny, photo_dpc):
    _, coarse = tiny.stages.decode_latent(photo_dpc)
    ran = []
    refine(tiny.refiner.prior, coarse, 0, RefineSettings(steps=20, early_exit=0.255), progress=ran.append)
    assert 2 <= len(ran) < 20
    full = refine(tiny.refiner.prior, coarse, 0, RefineSettings(steps=4))
    part = refine(tiny.refiner.prior, coarse, 0, RefineSettings(steps=4, start=0.3))
    # Starting lower in the schedule injects less noise: the result stays nearer the coarse latent.
    assert (part - coarse).abs().mean() < (full - coarse).abs().mean()


# -- tiling ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("size,tile,overlap", [(100, 32, 8), (64, 64, 8), (65, 32, 0), (8, 32, 8)])
def test_tiles_cover_the_input_and_overlap_as_asked(size, tile, overlap):
    starts = tile_starts(size, tile, overlap)
    assert starts[0] == 0 and min(starts[-1] + tile, size) == size
    covered = np.zeros(size, bool)
    for s in starts:
        covered[s : s + tile] = True
    assert covered.all()
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:], strict=False))


@pytest.mark.parametrize("up,down", [(1, 1), (8, 1), (1, 8)])
def test_tile_map_matches_an_untiled_run_when_the_halo_covers_the_receptive_field(up, down):
    torch.manual_seed(0)
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 5, padding=2), torch.nn.Conv2d(4, 4, 3, padding=1))

    def fn(x):  # receptive field radius 3 input px, then a resampling by up/down
        y = conv(x)
        if up > 1:
            y = torch.nn.functional.interpolate(y, scale_factor=up, mode="nearest")
        if down > 1:
            y = torch.nn.functional.avg_pool2d(y, down)
        return y

    x = torch.randn(1, 3, 96, 136)
    with torch.no_grad():
        whole = fn(x)
        tiled = tile_map(fn, x, tile=32, overlap=8, halo=8, up=up, down=down)
    assert tiled.shape == whole.shape
    assert torch.allclose(tiled, whole, atol=1e-5)


def test_tiled_and_untiled_pixel_decoding_agree_on_a_small_image_with_a_small_tile(tiny):
    data = tiny.compress(make_textured(320, 192), quality=2)
    for steps in (0, 2):
        tiled = tiny.decompress(data, steps=steps, tile=128)
        whole = tiny.decompress(data, steps=steps, tile=0)
        assert psnr(tiled, whole) >= 40.0


def test_large_inputs_are_encoded_in_tiles_that_agree_with_an_untiled_encoder(codec, monkeypatch):
    import codec.pipeline as api

    image = make_textured(320, 256)  # a multiple of 64: no padding
    whole = codec.autoencoder.encode(image_to_tensor(image))
    monkeypatch.setattr(api, "ENCODE_TILE", 128)
    tiled = codec.encode(image)
    assert (tiled - whole).abs().max() < 1e-4


@pytest.mark.parametrize("tile", [-64, 100, 64, 129, 2.5, True])
def test_a_bad_tile_size_is_refused(tiny, photo_dpc, tile):
    with pytest.raises(CodecError, match="tile"):
        tiny.decompress(photo_dpc, tile=tile)


@pytest.mark.parametrize(
    "option", [dict(steps=101), dict(steps=-1), dict(sampler="euler"), dict(guidance=30.0), dict(seed=-3)]
)
def test_bad_refinement_options_are_an_invalid_option_error_as_on_the_cli(tiny, photo_dpc, option):
    """The CLI answers them with exit 2 (usage); the API's class must say the same (issue #30)."""
    with pytest.raises(InvalidOptionError):
        tiny.decompress(photo_dpc, **option)


# -- old files ------------------------------------------------------------------------------------
def test_version_1_files_still_decode_without_refinement(tiny, tiny_prior_file):
    """Version 1 was written by the older shipped weights (one y pass), which the default codec
    decodes them with. 128 x 128: the image fills its canvas, top-left or centred."""
    older = Codec.load(LEGACY_WEIGHTS[0], prior_weights=tiny_prior_file)
    photo_dpc = older.compress(make_textured(128, 128), quality=1)
    c = read_container(photo_dpc)
    for hints in (b"", b"opaque version-1 hints"):
        header = replace(c.header, version=1, hints=hints, layout=0, rate_offset=0)
        v1 = write_container(Container(header, c.z_data, c.y_data, c.symbol_check))
        assert tiny.read_header(v1).refine.steps == 0
        assert np.array_equal(pixels(tiny.decompress(v1)), pixels(older.decompress(photo_dpc, steps=0)))
        assert np.array_equal(
            pixels(tiny.decompress(v1, fidelity=True)), pixels(older.decompress(photo_dpc, fidelity=True))
        )


def test_a_missing_or_foreign_prior_file_is_a_one_line_model_file_error(codec, tmp_path):
    missing = Codec(codec.bundle, prior_weights=tmp_path / "none.safetensors")
    with pytest.raises(ModelFileError, match="cannot read"):
        missing.default_refine(1)
    with pytest.raises(ModelFileError, match="not a dpcodec diffusion-prior"):
        load_prior(DEFAULT_WEIGHTS)  # the codec's weights are not a prior
