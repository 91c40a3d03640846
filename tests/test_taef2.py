"""TAEF2 (codec/models/taef2.py): our modules on the shipped weights, a golden check, tiling, and
weight files that are damaged or of another kind."""

import shutil

import pytest
import torch

from codec import ModelFileError
from codec.model_files import DEFAULT_TAEF2_WEIGHTS, load_model, load_taef2

# Our modules on the shipped weights, for pattern() (64 x 64), fp32 on a CPU.
GOLDEN_LATENT = [-0.07, -1.3318, -0.5038, 0.0605]
GOLDEN_IMAGE = [0.7568, 0.1857, 0.8214, 0.8713]


def pattern(height: int = 64, width: int = 64) -> torch.Tensor:
    """A fixed, smooth-and-busy test image (1,3,H,W) in [0,1], the same on every machine."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    r = 0.5 + 0.5 * torch.sin(12 * xx + 3 * yy)
    g = 0.5 + 0.4 * torch.cos(20 * yy * xx)
    b = (xx + yy) / 2
    return torch.stack([r, g, b])[None]


@pytest.fixture(scope="module")
def taef2():
    return load_taef2().autoencoder


def test_the_shipped_taef2_matches_its_record_and_fills_every_module_key(taef2):
    bundle = load_taef2()
    record = DEFAULT_TAEF2_WEIGHTS.with_name(DEFAULT_TAEF2_WEIGHTS.name + ".sha256").read_text().split()[0]
    assert bundle.sha256 == record
    assert sum(p.numel() for p in taef2.encoder.parameters()) == 1_338_528
    assert sum(p.numel() for p in taef2.decoder.parameters()) == 1_338_499
    assert "MIT" in bundle.info["licence"]
    assert DEFAULT_TAEF2_WEIGHTS.with_name("TAEF2_LICENSE").read_text().startswith("MIT License")


def test_golden_values_of_the_encoder_and_decoder_for_a_fixed_input(taef2):
    """Values from our modules on the shipped weights (which round-trip Kodak at 30.2 dB): a
    changed layer order, activation or key mapping moves them far beyond the tolerance."""
    with torch.inference_mode():
        latent = taef2.encoder(pattern())
        image = taef2.decoder(latent)
    assert latent.shape == (1, 32, 8, 8) and image.shape == (1, 3, 64, 64)
    torch.testing.assert_close(latent.flatten()[[0, 100, 1000, 2047]], torch.tensor(GOLDEN_LATENT), atol=2e-3, rtol=0)
    torch.testing.assert_close(image.flatten()[[0, 500, 5000, 12287]], torch.tensor(GOLDEN_IMAGE), atol=2e-3, rtol=0)


def test_a_round_trip_keeps_the_picture(taef2):
    x = pattern(128, 128)
    with torch.inference_mode():
        y = taef2.decoder(taef2.encoder(x)).clamp(0, 1)
    assert 10 * torch.log10(1 / (y - x).pow(2).mean()) > 24


def test_tiled_decoding_and_encoding_match_the_whole_image(taef2):
    """The GroupNorm blocks run on the whole latent, the rest on tiles with a halo."""
    x = pattern(256, 192)
    with torch.inference_mode():
        latent = taef2.encoder(x)
        tiled_latent = taef2.encode_tiled(x, tile=64)
        whole = taef2.decoder(latent)
        tiled = taef2.decoder.decode_tiled(latent, tile=8)
    assert (tiled_latent - latent).abs().max() < 1e-4
    assert (tiled - whole).abs().max() < 1e-4


def test_a_damaged_taef2_file_is_refused_in_one_line(tmp_path):
    path = tmp_path / "taef2.safetensors"
    shutil.copy(DEFAULT_TAEF2_WEIGHTS, path)
    shutil.copy(DEFAULT_TAEF2_WEIGHTS.with_name("taef2.safetensors.sha256"), tmp_path / "taef2.safetensors.sha256")
    data = bytearray(path.read_bytes())
    data[-1000] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="does not match its recorded SHA-256") as info:
        load_taef2(path)
    assert "\n" not in str(info.value)


def test_a_foreign_file_is_not_taken_for_taef2_nor_taef2_for_a_codec(tmp_path):
    from codec.model_files import DEFAULT_PRIOR_WEIGHTS

    with pytest.raises(ModelFileError, match="not a dpcodec TAEF2 weight file"):
        load_taef2(DEFAULT_PRIOR_WEIGHTS)
    with pytest.raises(ModelFileError, match="not a dpcodec weight file"):
        load_model(DEFAULT_TAEF2_WEIGHTS)
    garbage = tmp_path / "g.safetensors"
    garbage.write_bytes(b"\x80\x04 not safetensors")
    with pytest.raises(ModelFileError, match="unusable weight file"):
        load_taef2(garbage)
