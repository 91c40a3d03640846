"""The perceptual pixel decoder (codec/models/perceptual_decoder.py) and the two ends of one file:
the default (perceptual) decode and `fidelity` (the autoencoder's MSE decoder, no refinement)."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers import make_textured

from bitstream import Container, RefineSettings, read_container, write_container
from codec import Codec, CodecError, ModelFileError
from codec.canvas import Canvas
from codec.image_tensors import tensor_to_image
from codec.model_files import DEFAULT_DECODER_WEIGHTS, DEFAULT_WEIGHTS, LEGACY_WEIGHTS, load_decoder, save_decoder
from codec.models.perceptual_decoder import PerceptualDecoder, PerceptualDecoderConfig


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


@pytest.fixture(scope="session")
def photo_file(codec) -> bytes:
    return codec.compress(make_textured(128, 96), quality=1, refine=RefineSettings(steps=0))


# -- the model ------------------------------------------------------------------------------------
@pytest.mark.parametrize("blocks", [(2, 1), (4, 2)])
def test_before_training_it_computes_exactly_the_fidelity_decoder(codec, blocks):
    cfg = PerceptualDecoderConfig(blocks=blocks)
    model = PerceptualDecoder.from_fidelity_decoder(codec.autoencoder.decoder, cfg).eval()
    z = torch.randn(2, 8, 12, 10)
    with torch.no_grad():
        expected = codec.autoencoder.decoder(z)
        for level in (-4.0, 0.0, 2.5, 7.0):
            assert torch.allclose(model(z, level), expected, atol=1e-6)


def test_the_shipped_decoder_loads_with_its_config_and_sha256_record(codec):
    bundle = load_decoder()
    assert DEFAULT_DECODER_WEIGHTS.with_name(DEFAULT_DECODER_WEIGHTS.name + ".sha256").is_file()
    assert bundle.decoder.cfg.widths == codec.autoencoder.cfg.widths
    assert bundle.decoder.cfg.latent_channels == codec.autoencoder.cfg.latent_channels
    assert bundle.info["steps"] > 0 and "command" in bundle.info  # a training record for the model card
    assert codec.weights_sha256()["decoder"] == bundle.sha256


def test_the_level_conditions_the_output_continuously(codec, photo_file):
    _, coarse = codec.stages.decode_latent(photo_file)
    decode = lambda level: codec.stages.decode_pixels(coarse, tile=0, level=level)  # noqa: E731
    low, mid, high = decode(0.0), decode(0.5), decode(5.0)
    assert not torch.allclose(low, high, atol=1e-3)  # levels are told apart
    # between two levels the output lies between theirs (the embedding is smooth)
    assert (mid - low).abs().mean() < (high - low).abs().mean()
    assert torch.equal(decode(0.0), low)  # deterministic


def test_a_round_trip_save_load_keeps_the_weights(tmp_path, codec):
    torch.manual_seed(0)
    model = PerceptualDecoder.from_fidelity_decoder(codec.autoencoder.decoder, PerceptualDecoderConfig())
    path = tmp_path / "d.safetensors"
    save_decoder(path, model, {"purpose": "tests"})
    loaded = load_decoder(path)
    assert loaded.decoder.cfg == model.cfg and loaded.info == {"purpose": "tests"}
    for a, b in zip(model.state_dict().values(), loaded.decoder.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # save_decoder rounded `model` to float16 in place


def test_a_missing_or_foreign_decoder_file_is_a_one_line_model_file_error(codec, tmp_path, photo_file):
    missing = Codec(codec.bundle, decoder_weights=tmp_path / "none.safetensors")
    with pytest.raises(ModelFileError, match="cannot read"):
        missing.decompress(photo_file)
    with pytest.raises(ModelFileError, match="not a dpcodec perceptual-decoder"):
        load_decoder(DEFAULT_WEIGHTS)
    # fidelity decoding never needs it
    assert missing.decompress(photo_file, fidelity=True).size == (128, 96)


# -- the two ends of one file ---------------------------------------------------------------------
def test_the_default_decode_is_the_perceptual_decoder_at_the_files_level(codec, photo_file):
    header, coarse = codec.stages.decode_latent(photo_file)
    expected = tensor_to_image(Canvas.of_header(header).crop(codec.stages.decode_pixels(coarse, level=header.level)))
    assert np.array_equal(pixels(codec.decompress(photo_file)), pixels(expected))


def test_fidelity_is_exactly_the_autoencoder_decoder_without_refinement(codec, tmp_path):
    refined_file = codec.compress(make_textured(128, 96), quality=2, refine=RefineSettings(steps=3))
    header, coarse = codec.stages.decode_latent(refined_file)
    canvas = Canvas.of_header(header)
    expected = tensor_to_image(canvas.crop(codec.stages.decode_pixels(coarse, tile=0)))
    plain = tensor_to_image(canvas.crop(codec.autoencoder.decoder(coarse)))
    got = codec.decompress(refined_file, fidelity=True, tile=0)
    assert np.array_equal(pixels(got), pixels(expected)) and np.array_equal(pixels(got), pixels(plain))
    assert not np.array_equal(pixels(got), pixels(codec.decompress(refined_file)))


def test_fidelity_refuses_refinement_options(codec, photo_file):
    with pytest.raises(CodecError, match="drop steps"):
        codec.decompress(photo_file, fidelity=True, steps=2)


def test_the_perceptual_decoder_tiles_like_an_untiled_run(codec):
    data = codec.compress(make_textured(320, 200), quality=2, refine=RefineSettings(steps=0))
    tiled, untiled = pixels(codec.decompress(data, tile=128)), pixels(codec.decompress(data, tile=0))
    assert np.abs(tiled - untiled).max() <= 2  # the halo covers the receptive field: rounding only


def test_refined_latents_are_drawn_by_the_perceptual_decoder(codec, photo_file):
    header, coarse = codec.stages.decode_latent(photo_file)
    refined = codec.stages.refine_latent(coarse, header.quality, RefineSettings(steps=2))
    expected = tensor_to_image(Canvas.of_header(header).crop(codec.stages.decode_pixels(refined, level=header.level)))
    assert np.array_equal(pixels(codec.decompress(photo_file, steps=2)), pixels(expected))


def test_old_files_decode_both_ways(codec):
    """Version-1 files (no hints) and version-2 files of the older shipped weights both decode with
    the default codec: by default with the perceptual decoder, with fidelity to the MSE decoder's
    pixels as before. (128 x 128: the same canvas top-left and centred.)"""
    older = Codec.load(LEGACY_WEIGHTS[0])
    v5 = older.compress(make_textured(128, 128), quality=1, refine=RefineSettings(steps=0))
    c = read_container(v5)
    v1_header = replace(c.header, version=1, hints=b"", rate_offset=0, layout=0)
    v1 = write_container(Container(v1_header, c.z_data, c.y_data, c.symbol_check))
    v2 = write_container(Container(replace(v1_header, version=2), c.z_data, c.y_data, c.symbol_check))
    assert np.array_equal(pixels(codec.decompress(v1)), pixels(codec.decompress(v2)))
    assert np.array_equal(pixels(codec.decompress(v1)), pixels(older.decompress(v2)))
    assert np.array_equal(pixels(codec.decompress(v1, fidelity=True)), pixels(older.decompress(v2, fidelity=True)))


def test_cli_fidelity_flag(dpc, tmp_path, codec):
    src = tmp_path / "a.dpc"
    src.write_bytes(codec.compress(make_textured(64, 48), quality=1))
    assert dpc("decompress", src, "-o", tmp_path / "f.png", "--fidelity").code == 0
    assert dpc("decompress", src, "-o", tmp_path / "p.png").code == 0
    data = src.read_bytes()
    assert np.array_equal(pixels(codec.decompress(data, fidelity=True)), pixels(_png(tmp_path / "f.png")))
    assert np.array_equal(pixels(codec.decompress(data)), pixels(_png(tmp_path / "p.png")))
    r = dpc("decompress", src, "-o", tmp_path / "x.png", "--fidelity", "--steps", "2")
    assert r.code == 2 and "--fidelity" in r.err and not (tmp_path / "x.png").exists()


def _png(path):
    from PIL import Image

    return Image.open(path).convert("RGB")
