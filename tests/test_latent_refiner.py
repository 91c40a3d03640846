"""dpc-v3's one-step latent refiner: its conditioning, tiling, weight files, and how files record it.

The refiner here has random weights (its zero-initialised output conv is filled in), so every
input visibly matters; what is checked holds for any trained one."""

import numpy as np
import pytest
import torch
from helpers import make_textured

from codec import Codec, InvalidOptionError
from codec.entropy.compressor import CompressorConfig
from codec.entropy.training import TrainableCompressor
from codec.model_files import load_model, save_latent_codec
from codec.models.latent_refiner import LatentRefiner, RefinerConfig
from codec.tiling import tile_map

SMALL = RefinerConfig(side_channels=24, width=16, blocks=2, levels=3)


def random_refiner(cfg: RefinerConfig = SMALL, seed: int = 0) -> LatentRefiner:
    torch.manual_seed(seed)
    refiner = LatentRefiner(cfg)
    with torch.no_grad():  # the zero-initialised parts, so that level and scales reach the output
        for p in (refiner.head.weight, refiner.level_mlp[-1].weight):
            p.normal_(0, 0.1)
    return refiner.eval()


def inputs(h=12, w=16, batch=1, seed=1):
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(batch, 32, h, w, generator=g)
    indexes = torch.randint(0, 64, (batch, SMALL.side_channels, h // 2, w // 2), generator=g, dtype=torch.int32)
    return coarse, indexes


def test_an_untrained_refiner_is_the_identity():
    coarse, indexes = inputs()
    refiner = LatentRefiner(SMALL)
    assert torch.equal(refiner(coarse, indexes, torch.tensor([1.0])), coarse)


@torch.no_grad()
def test_the_output_depends_on_the_level_and_on_the_scales_and_the_level_varies_smoothly():
    refiner = random_refiner()
    coarse, indexes = inputs()
    at = lambda lv, idx=indexes: refiner(coarse, idx, torch.tensor([lv]))  # noqa: E731
    base = at(1.0)
    assert (at(0.0) - base).abs().mean() > 1e-3
    assert (at(1.0, (indexes + 20).clamp(max=63)) - base).abs().mean() > 1e-3
    # a level between two trained ones gives an output between theirs (nearly: the MLP is smooth)
    assert (at(1.02) - base).abs().mean() < (at(2.0) - base).abs().mean() / 10


@torch.no_grad()
def test_each_sample_of_a_batch_is_refined_at_its_own_level():
    refiner = random_refiner()
    coarse, indexes = inputs(batch=2)
    both = refiner(coarse, indexes, torch.tensor([0.0, 2.0]))
    first = refiner(coarse[:1], indexes[:1], torch.tensor([0.0]))
    second = refiner(coarse[1:], indexes[1:], torch.tensor([2.0]))
    assert torch.allclose(both, torch.cat([first, second]), atol=1e-5)


@torch.no_grad()
def test_tiles_with_the_receptive_field_as_halo_match_the_whole_latent():
    refiner = random_refiner()
    coarse, indexes = inputs(h=40, w=56)
    side = torch.nn.functional.interpolate(indexes.float(), size=coarse.shape[-2:], mode="nearest")
    level = torch.tensor([0.5])
    fn = lambda t: refiner(t[:, :32], t[:, 32:], level)  # noqa: E731
    whole = refiner(coarse, indexes, level)
    halo = -(-SMALL.receptive_field // 8) * 8
    tiled = tile_map(fn, torch.cat([coarse, side], 1), 16, 8, halo)
    assert (tiled - whole).abs().max() < 1e-4


def small_compressor() -> TrainableCompressor:
    """A random 3-level compressor for 32-channel latents whose y has SMALL's 24 side channels."""
    torch.manual_seed(0)
    cfg = CompressorConfig(latent_channels=32, channels=32, y_channels=24, hyper_channels=24, z_channels=8, levels=3)
    return TrainableCompressor(cfg)


@pytest.fixture(scope="module")
def codec_files(tmp_path_factory):
    """(a codec file with a random refiner, the same compressor without one)."""
    comp = small_compressor()
    folder = tmp_path_factory.mktemp("refiner")
    with_refiner, without = folder / "with.safetensors", folder / "without.safetensors"
    save_latent_codec(without, comp, {})
    save_latent_codec(with_refiner, comp, {}, refiner=random_refiner())
    return with_refiner, without


def test_the_refiner_round_trips_through_its_codec_file(codec_files):
    bundle = load_model(codec_files[0])
    assert bundle.refiner.cfg == SMALL
    original = random_refiner()
    for (name, a), (_, b) in zip(original.state_dict().items(), bundle.refiner.state_dict().items(), strict=True):
        assert torch.equal(a.half().float(), b), name  # stored in float16
    assert load_model(codec_files[1]).refiner is None


def test_files_record_one_step_and_steps_0_is_the_plain_decode(codec_files):
    with_refiner, without = (Codec.load(p) for p in codec_files)
    image = make_textured(96, 64)
    data = with_refiner.compress(image, quality=1.5)
    assert with_refiner.read_header(data).refine.steps == 1
    refined = np.asarray(with_refiner.decompress(data), dtype=int)
    plain = np.asarray(with_refiner.decompress(data, steps=0), dtype=int)
    assert np.abs(refined - plain).mean() > 1
    # steps=0 is the coarse latent drawn as it is
    coarse = with_refiner.stages.decode_latent(data)[1]
    assert np.array_equal(plain, np.asarray(_image(with_refiner, coarse, data), dtype=int))
    header = with_refiner.read_header(data)
    side = with_refiner.stages.refinement_side(data)
    assert side["level"] == header.level
    assert side["scale_indexes"].shape == (1, 24, coarse.shape[2] // 2, coarse.shape[3] // 2)
    again = with_refiner.stages.refine_latent(coarse, header.quality, header.refine, **side)
    assert torch.equal(
        torch.from_numpy(np.asarray(with_refiner.decompress(data))),
        torch.from_numpy(np.asarray(_image(with_refiner, again, data))),
    )


def _image(codec, latent, data, level="header"):
    from codec.canvas import Canvas
    from codec.image_tensors import tensor_to_image

    header = codec.read_header(data)
    level = header.level if level == "header" else level
    return tensor_to_image(Canvas.of_header(header).crop(codec.stages.decode_pixels(latent, level=level)))


def test_more_than_one_step_is_a_one_line_error_and_fidelity_skips_the_refiner(codec_files):
    codec = Codec.load(codec_files[0])
    data = codec.compress(make_textured(64, 64), quality=2)
    with pytest.raises(InvalidOptionError, match="one step"):
        codec.decompress(data, steps=2)
    fidelity = np.asarray(codec.decompress(data, fidelity=True))
    coarse = codec.stages.decode_latent(data)[1]
    assert np.array_equal(fidelity, np.asarray(_image(codec, coarse, data, level=None)))


def test_a_file_that_records_no_refinement_decodes_as_steps_0(codec_files):
    from bitstream import RefineSettings

    codec = Codec.load(codec_files[0])
    image = make_textured(64, 48)
    data = codec.compress(image, quality=2, refine=RefineSettings(steps=0))
    assert codec.read_header(data).refine.steps == 0
    assert np.array_equal(np.asarray(codec.decompress(data)), np.asarray(codec.decompress(data, steps=0)))
    refined = codec.decompress(codec.compress(image, quality=2))
    assert not np.array_equal(np.asarray(codec.decompress(data)), np.asarray(refined))
