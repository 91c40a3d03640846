"""A codec on TAEF2's latent (dpc-v3's kind): weight files, real files, tiling, and what it refuses.

The weights here are an untrained compressor (a few parameters, any numbers): what is checked is
the plumbing, which must hold for any trained one."""

import json

import numpy as np
import pytest
import torch
from helpers import make_textured

from codec import Codec, InvalidOptionError, ModelFileError, ModelMismatchError
from codec.entropy.compressor import CompressorConfig
from codec.entropy.training import TrainableCompressor
from codec.model_files import load_model, save_latent_codec


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    cfg = CompressorConfig(latent_channels=32, channels=32, y_channels=24, hyper_channels=24, z_channels=8, levels=3)
    path = tmp_path_factory.mktemp("v3") / "v3.safetensors"
    save_latent_codec(path, TrainableCompressor(cfg), {"test": True})
    return path


@pytest.fixture(scope="module")
def v3(weights):
    return Codec.load(weights)


def test_a_latent_codec_file_records_taef2_by_digest_not_by_copy(weights):
    from safetensors import safe_open

    from codec.model_files import load_taef2

    with safe_open(str(weights), "pt") as f:
        meta, keys = f.metadata(), list(f.keys())
    assert json.loads(meta["autoencoder"]) == {"kind": "taef2", "sha256": load_taef2().sha256}
    assert keys and all(k.startswith("compressor.") for k in keys)


def test_files_round_trip_at_the_original_size_and_decode_the_same_twice(v3):
    image = make_textured(80, 48)
    data = v3.compress(image, quality=2)
    header = v3.read_header(data)
    assert (header.width, header.height, header.model_id) == (80, 48, v3.model_id)
    first, second = v3.decompress(data), v3.decompress(data)
    assert first.size == (80, 48)
    assert np.array_equal(np.asarray(first), np.asarray(second))
    # without a decoder of its own, the default decode is TAEF2's, as --fidelity's
    assert np.array_equal(np.asarray(v3.decompress(data, fidelity=True)), np.asarray(first))


def test_a_fine_tuned_decoder_in_the_file_draws_the_default_decode_and_taef2_the_fidelity_one(tmp_path):
    from codec.model_files import load_taef2

    torch.manual_seed(0)
    cfg = CompressorConfig(latent_channels=32, channels=32, y_channels=24, hyper_channels=24, z_channels=8, levels=3)
    tuned = load_taef2().autoencoder.decoder
    with torch.no_grad():
        tuned[-1].bias += 0.25  # a "fine-tune" that brightens everything
    plain_file, tuned_file = tmp_path / "plain.safetensors", tmp_path / "tuned.safetensors"
    comp = TrainableCompressor(cfg)
    save_latent_codec(plain_file, comp, {})
    save_latent_codec(tuned_file, comp, {}, decoder=tuned)
    plain, with_tuned = Codec.load(plain_file), Codec.load(tuned_file)
    image = make_textured(64, 64)
    data = with_tuned.compress(image, quality=2)
    default = np.asarray(with_tuned.decompress(data), dtype=float)
    fidelity = np.asarray(with_tuned.decompress(data, fidelity=True), dtype=float)
    assert default.mean() > fidelity.mean() + 20
    reference = np.asarray(plain.decompress(plain.compress(image, quality=2), fidelity=True), dtype=float)
    assert np.array_equal(fidelity, reference)  # the same compressor, TAEF2's own decoder


def test_tiled_pixel_decoding_matches_the_whole_image(v3):
    data = v3.compress(make_textured(320, 192), quality=1.5)
    whole = np.asarray(v3.decompress(data, tile=0), dtype=int)
    tiled = np.asarray(v3.decompress(data, tile=128), dtype=int)
    assert np.abs(whole - tiled).max() <= 1


def test_refinement_and_effort_are_refused_in_one_line_for_a_codec_without_a_prior(v3):
    image = make_textured(64, 64)
    data = v3.compress(image, quality=1)
    assert v3.read_header(data).refine.steps == 0
    with pytest.raises(InvalidOptionError, match="no diffusion prior") as info:
        v3.decompress(data, steps=2)
    assert "\n" not in str(info.value)
    with pytest.raises(InvalidOptionError, match="effort"):
        v3.compress(image, quality=1, effort=3)


def test_files_of_one_latent_space_are_refused_by_a_codec_of_the_other(v3, codec):
    image = make_textured(64, 64)
    with pytest.raises(ModelMismatchError):
        codec.decompress(v3.compress(image, quality=1))
    with pytest.raises(ModelMismatchError):
        v3.decompress(codec.compress(image, quality=1))


def test_a_codec_file_made_for_other_taef2_weights_is_refused_in_one_line(weights, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(weights), "pt") as f:
        meta = dict(f.metadata())
    meta["autoencoder"] = json.dumps({"kind": "taef2", "sha256": "0" * 64})
    other = tmp_path / "other.safetensors"
    save_file(load_file(str(weights)), str(other), metadata=meta)
    with pytest.raises(ModelFileError, match="other TAEF2 weights") as info:
        load_model(other)
    assert "\n" not in str(info.value)
