"""Decoding does not depend on how the decoder's floats round: a file decodes to the
encoder's exact symbols and latent, or it is refused; never silently wrong pixels.

The entropy parameters (which Gaussian table codes each y symbol) come from the
hyper-synthesis, computed on the CPU in float64 on both sides (codec/pipeline.py).
"""

import copy

import pytest
import torch
from helpers import decodes_exactly_or_is_refused, make_textured

from codec import Codec


@pytest.fixture(scope="module")
def images():
    return [make_textured(128, 96), make_textured(96, 160).rotate(90, expand=True)]


def test_encoding_with_one_thread_and_decoding_with_two_gives_identical_latents(codec, images):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        files = [codec.compress(im, q) for im in images for q in (1, 6)]
        latents = [codec.stages.quantized_latent(data) for data in files]
        torch.set_num_threads(2)
        for data, latent in zip(files, latents, strict=True):
            assert torch.equal(codec.stages.quantized_latent(data), latent)
    finally:
        torch.set_num_threads(threads)


def test_the_decoded_latent_is_symbols_plus_snapped_means_exactly(codec, images):
    data = codec.compress(images[0], 4)
    latent = codec.stages.quantized_latent(data)
    assert latent.dtype == torch.float64
    assert torch.equal(latent * 64, torch.round(latent * 64))  # symbols are integers, means on a 1/64 grid


def test_a_decoder_with_float32_entropy_parameters_decodes_exactly_or_refuses(codec, images):
    float32 = Codec(codec.bundle)
    float32.entropy.entropy_parameters = copy.deepcopy(codec.bundle.compressor).to("cpu", torch.float32)
    outcomes = {decodes_exactly_or_is_refused(codec, float32, im, q) for im in images for q in codec.qualities}
    assert outcomes <= {"exact", "refused"}


@pytest.mark.parametrize("ulps", [1, 4])
def test_perturbing_the_hyper_synthesis_by_a_few_ulp_never_gives_silently_wrong_symbols(codec, images, ulps):
    perturbed = Codec(codec.bundle)
    model = perturbed.entropy.entropy_parameters
    real_h_s = model.h_s

    class Nudged(torch.nn.Module):
        def forward(self, x):
            out = real_h_s(x)
            return out + out.abs() * (ulps * torch.finfo(out.dtype).eps) * torch.sign(torch.randn_like(out))

    model.h_s = Nudged()
    outcomes = [decodes_exactly_or_is_refused(codec, perturbed, im, q) for im in images for q in codec.qualities]
    assert set(outcomes) <= {"exact", "refused"}
    assert "exact" in outcomes  # float64 leaves ample margin: most files still decode exactly
