"""The latent refiner's realism setting: its conditioning and noise, its range, its direction on a
fixed input, tiles with noise, and files whose refiner has no realism input.

Random weights (helpers in test_latent_refiner): what is checked holds for any trained refiner.
Whether a trained one trades distortion for realism is measured, not tested (docs/refinement.md)."""

import numpy as np
import pytest
import torch
from helpers import make_textured
from test_latent_refiner import SMALL, inputs, random_refiner, small_compressor

from codec import Codec, InvalidOptionError
from codec.model_files import load_model, save_latent_codec
from codec.models.latent_refiner import LatentRefiner, RefinerConfig
from codec.refinement import realism_of
from codec.tiling import tile_map

NOISY = RefinerConfig(**(SMALL.to_dict() | dict(realism=True, noise_channels=4, default_realism=0.25)))


def noisy_refiner(seed: int = 0, noise_weight: float = 0.05) -> LatentRefiner:
    """A random refiner with a realism input whose noise weights are filled in."""
    torch.manual_seed(seed)
    refiner = random_refiner(SMALL, seed).grown(realism=True, noise_channels=NOISY.noise_channels)
    with torch.no_grad():
        refiner.stem.weight[:, -NOISY.noise_channels :].normal_(0, noise_weight)
        refiner.level_mlp[0].weight[:, 1].normal_(0, 0.5)  # the realism column
    return refiner.eval()


def noise(h=12, w=16, seed=0):
    return torch.randn(1, NOISY.noise_channels, h, w, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_a_grown_refiner_computes_the_old_function_at_every_realism_and_noise():
    old = random_refiner()
    new = old.grown(realism=True, noise_channels=4)
    assert new.cfg.realism and new.cfg.noise_channels == 4 and new.cfg.width == old.cfg.width
    coarse, indexes = inputs()
    level = torch.tensor([1.0])
    want = old(coarse, indexes, level)
    for r in (0.0, 0.5, 1.0):
        got = new(coarse, indexes, level, realism=torch.tensor([r]), noise=noise(seed=int(10 * r)))
        assert torch.allclose(got, want, atol=1e-6)


@torch.no_grad()
def test_realism_conditions_the_output_and_zero_realism_ignores_the_noise():
    refiner = noisy_refiner()
    coarse, indexes = inputs()
    level = torch.tensor([1.0])
    at = lambda r, seed=0: refiner(coarse, indexes, level, realism=torch.tensor([r]), noise=noise(seed=seed))  # noqa: E731
    assert torch.equal(at(0.0, seed=1), at(0.0, seed=2))  # r = 0 is deterministic
    assert (at(1.0, seed=1) - at(1.0, seed=2)).abs().mean() > 1e-3  # r > 0 draws per seed
    assert (at(0.5) - at(0.0)).abs().mean() > 1e-3
    with pytest.raises(ValueError, match="realism"):
        refiner(coarse, indexes, level)
    with pytest.raises(ValueError, match="noise"):
        refiner(coarse, indexes, level, realism=torch.tensor([0.5]))


@torch.no_grad()
def test_the_output_moves_away_from_the_lowest_distortion_decode_monotonically_with_realism():
    """On a fixed input and noise, the distance from the r = 0 output grows with r (the noise
    enters scaled by r: a refiner that ignored r or scaled the noise otherwise would fail)."""
    torch.manual_seed(0)
    refiner = random_refiner(SMALL).grown(realism=True, noise_channels=4)
    with torch.no_grad():  # noise only, so r acts through the noise's scale
        refiner.stem.weight[:, -4:].normal_(0, 0.05)
    coarse, indexes = inputs()
    level, n = torch.tensor([1.0]), noise(seed=3)
    at = lambda r: refiner(coarse, indexes, level, realism=torch.tensor([r]), noise=n)  # noqa: E731
    base = at(0.0)
    distances = [float((at(r) - base).pow(2).mean()) for r in (0.25, 0.5, 0.75, 1.0)]
    assert distances[0] > 0
    assert all(a < b for a, b in zip(distances, distances[1:], strict=False)), distances


@torch.no_grad()
def test_tiles_with_noise_match_the_whole_latent():
    refiner = noisy_refiner()
    coarse, indexes = inputs(h=40, w=56)
    n = noise(40, 56)
    side = torch.nn.functional.interpolate(indexes.float(), size=coarse.shape[-2:], mode="nearest")
    level, r, m = torch.tensor([0.5]), torch.tensor([0.7]), SMALL.side_channels
    fn = lambda t: refiner(t[:, :32], t[:, 32 : 32 + m], level, realism=r, noise=t[:, 32 + m :])  # noqa: E731
    whole = refiner(coarse, indexes, level, realism=r, noise=n)
    halo = -(-SMALL.receptive_field // 8) * 8
    tiled = tile_map(fn, torch.cat([coarse, side, n], 1), 16, 8, halo)
    assert (tiled - whole).abs().max() < 1e-4


def test_realism_is_0_to_1_and_only_for_refiners_that_have_it():
    assert realism_of(NOISY, None) == 0.25  # the weights' default
    assert realism_of(NOISY, 0) == 0.0 and realism_of(NOISY, 1) == 1.0
    for bad in (-0.01, 1.01, float("nan"), float("inf"), True, "0.5"):
        with pytest.raises(InvalidOptionError, match="realism must be"):
            realism_of(NOISY, bad)
    assert realism_of(SMALL, None) == 0.0
    with pytest.raises(InvalidOptionError, match="no realism setting"):
        realism_of(SMALL, 0.5)


@pytest.fixture(scope="module")
def realism_files(tmp_path_factory):
    """(a codec file whose refiner has a realism input and noise, one whose refiner has none)."""
    comp = small_compressor()
    folder = tmp_path_factory.mktemp("realism")
    noisy, plain = folder / "noisy.safetensors", folder / "plain.safetensors"
    refiner = noisy_refiner()
    refiner.cfg = NOISY  # the default realism rides in the config
    save_latent_codec(noisy, comp, {}, refiner=refiner)
    save_latent_codec(plain, comp, {}, refiner=random_refiner())
    return noisy, plain


def test_the_realism_setting_round_trips_and_decodes_reproducibly(realism_files):
    assert load_model(realism_files[0]).refiner.cfg == NOISY
    codec = Codec.load(realism_files[0])
    data = codec.compress(make_textured(96, 64), quality=1.5)
    decode = lambda **kw: np.asarray(codec.decompress(data, **kw), dtype=int)  # noqa: E731
    assert np.array_equal(decode(), decode(realism=0.25))  # the weights' default
    assert np.array_equal(decode(realism=0.0, seed=1), decode(realism=0.0, seed=2))
    assert not np.array_equal(decode(realism=1.0, seed=1), decode(realism=1.0, seed=2))
    assert np.array_equal(decode(realism=1.0, seed=1), decode(realism=1.0, seed=1))
    assert np.array_equal(decode(steps=0, realism=1.0), decode(steps=0))  # steps 0: the plain decode
    with pytest.raises(InvalidOptionError, match="realism must be"):
        codec.decompress(data, realism=1.5)
    with pytest.raises(InvalidOptionError, match="does not refine"):
        codec.decompress(data, realism=0.5, fidelity=True)


def test_files_whose_refiner_has_no_realism_decode_as_before_and_refuse_the_setting(realism_files):
    codec = Codec.load(realism_files[1])
    data = codec.compress(make_textured(64, 64), quality=2)
    with pytest.raises(InvalidOptionError, match="no realism setting"):
        codec.decompress(data, realism=0.5)
    # the same refiner as before the setting existed: the old forward pass, by hand
    side = codec.stages.refinement_side(data)
    header, coarse = codec.stages.decode_latent(data)
    old = random_refiner()
    old.load_state_dict({k: v.half().float() for k, v in old.state_dict().items()})  # as the file stores them
    with torch.no_grad():
        want = old(coarse, side["scale_indexes"], torch.tensor([float(header.level)]))
    got = codec.stages.refine_latent(coarse, header.quality, header.refine, **side)
    assert (got - want).abs().max() < 1e-5


def test_the_command_line_refuses_realism_out_of_range_in_one_line(capsys, tmp_path):
    from dpc.cli import main

    src = tmp_path / "x.dpc"
    src.write_bytes(b"unused")
    with pytest.raises(SystemExit) as exit_:
        main(["decompress", str(src), "-o", str(tmp_path / "x.png"), "--realism", "1.5"])
    assert exit_.value.code == 2  # a usage error
    err = capsys.readouterr().err
    assert "--realism: must be 0..1" in err and err.strip().count("\n") == 0
    assert not (tmp_path / "x.png").exists()


@torch.no_grad()
def test_a_deepened_refiner_computes_the_old_function_and_sees_further():
    old = noisy_refiner()
    new = old.deepened(SMALL.blocks + 2)
    assert new.cfg.blocks == SMALL.blocks + 2 and new.cfg.receptive_field == old.cfg.receptive_field + 4
    coarse, indexes = inputs()
    args = (torch.tensor([1.0]),)
    kw = dict(realism=torch.tensor([0.5]), noise=noise(seed=4))
    assert torch.allclose(new(coarse, indexes, *args, **kw), old(coarse, indexes, *args, **kw), atol=1e-6)
    with torch.no_grad():  # once trained, the new blocks change the output
        new.blocks[-1].conv2.weight.normal_(0, 0.05)
    assert (new(coarse, indexes, *args, **kw) - old(coarse, indexes, *args, **kw)).abs().mean() > 1e-4
    with pytest.raises(ValueError, match="deepen"):
        old.deepened(SMALL.blocks - 1)
