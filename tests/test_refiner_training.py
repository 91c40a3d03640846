"""The pieces of scripts/train_latent_refiner.py that decide what the run optimises: the rate of
the rounded symbols, the per-level gradient weighting, and where a realism refiner starts."""

import torch

from codec.entropy.compressor import CompressorConfig, medians
from codec.entropy.training import TrainableCompressor
from scripts.common import likelihood_bits
from scripts.train_latent_refiner import ScaleGrad, coded, decoder_weighted, init_refiner


def small_compressor() -> TrainableCompressor:
    torch.manual_seed(0)
    cfg = CompressorConfig(latent_channels=32, channels=32, y_channels=24, hyper_channels=24, z_channels=8, levels=3)
    return TrainableCompressor(cfg)


def test_the_rounded_rate_is_compressais_discrete_likelihood_and_has_a_gradient():
    comp = small_compressor()
    latent = torch.randn(2, 32, 16, 16) * 2
    levels = torch.tensor([0, 2])
    _, y_lik, z_lik, _ = coded(comp, latent, levels, "rounded")
    # the same quantities through CompressAI's own models in their non-training (rounding) mode
    with torch.no_grad():
        gain_y = comp.log_gain_y[levels].exp()[:, :, None, None]
        gain_z = comp.log_gain_z[levels].exp()[:, :, None, None]
        y = comp.g_a(latent)
        z_hat, z_ref = comp.entropy_bottleneck(comp.h_a(y) * gain_z, training=False)
        means, scales = comp.raw_params(z_hat / gain_z, gain_y)
        _, y_ref = comp.gaussian_conditional(y * gain_y, scales, means=means, training=False)
    assert torch.allclose(y_lik, y_ref, rtol=1e-4, atol=1e-7)
    assert torch.allclose(z_lik, z_ref, rtol=1e-4, atol=1e-7)
    likelihood_bits(y_lik).sum().backward()
    assert comp.g_a[0].weight.grad.abs().sum() > 0  # straight through the rounding


def test_the_noise_proxy_charges_more_than_the_rounded_symbols_cost():
    comp = small_compressor()
    latent = torch.randn(4, 32, 16, 16)
    levels = torch.zeros(4, dtype=torch.long)
    with torch.no_grad():
        noisy = likelihood_bits(coded(comp, latent, levels, "noise")[1]).sum()
        rounded = likelihood_bits(coded(comp, latent, levels, "rounded")[1]).sum()
    assert rounded < noisy


def test_the_scale_indexes_are_the_coders():
    comp = small_compressor()
    latent = torch.randn(1, 32, 16, 16)
    _, _, _, indexes = coded(comp, latent, torch.tensor([1]))
    with torch.no_grad():
        y = comp.g_a(latent)
        gain_y, gain_z = comp.gains(1)
        z = torch.round(comp.h_a(y) * gain_z - medians(comp.entropy_bottleneck))
        params = comp.hyper_params(z.to(torch.int32), 1)
    assert torch.equal(indexes.int(), params.indexes.int())


def test_scale_grad_weights_each_samples_gradient_and_leaves_the_values():
    x = torch.ones(3, 2, requires_grad=True)
    weight = torch.tensor([0.5, 1.0, 4.0])
    out = ScaleGrad.apply(x, weight)
    assert torch.equal(out, x)
    out.sum().backward()
    assert torch.equal(x.grad, weight[:, None].expand(3, 2))


def test_decoder_weighting_reaches_the_decoder_but_not_what_feeds_it():
    torch.manual_seed(0)
    decoder = torch.nn.Conv2d(4, 3, 3, padding=1)
    latent = torch.randn(2, 4, 8, 8)
    weight = torch.tensor([0.01, 3.0])

    def grads(weighted: bool):
        decoder.zero_grad()
        x = latent.clone().requires_grad_(True)
        if weighted:
            out = decoder_weighted(decoder, x, weight)
            loss = (weight * out.pow(2).mean((1, 2, 3))).sum()
        else:
            loss = decoder(x).pow(2).mean((1, 2, 3)).sum()
        loss.backward()
        return x.grad, decoder.weight.grad.clone()

    plain_in, plain_w = grads(False)
    weighted_in, weighted_w = grads(True)
    assert torch.allclose(weighted_in, plain_in, rtol=1e-5, atol=1e-7)  # the refiner hears D plainly
    assert not torch.allclose(weighted_w, plain_w, rtol=1e-2)  # the decoder hears the weights
    # the decoder's gradient is the per-sample weighted sum
    decoder.zero_grad()
    (weight[1] * decoder(latent[1:]).pow(2).mean()).backward()
    only_second = decoder.weight.grad.clone()
    decoder.zero_grad()
    (weight[0] * decoder(latent[:1]).pow(2).mean()).backward()
    assert torch.allclose(weighted_w, only_second + decoder.weight.grad, rtol=1e-4, atol=1e-7)


@torch.no_grad()
def test_a_realism_refiner_starts_from_a_codec_files_refiner_with_its_function(tmp_path):
    from codec.model_files import save_latent_codec
    from codec.models.latent_refiner import LatentRefiner, RefinerConfig

    cfg = RefinerConfig(side_channels=24, width=16, blocks=2, levels=3)
    torch.manual_seed(1)
    old = LatentRefiner(cfg)
    for p in old.parameters():
        p.copy_(torch.randn_like(p).half().float() * 0.1)  # as a file stores them
    path = tmp_path / "codec.safetensors"
    save_latent_codec(path, small_compressor(), {}, refiner=old)
    new = LatentRefiner(RefinerConfig(**(cfg.to_dict() | dict(realism=True, noise_channels=2))))
    init_refiner(path, new)
    coarse, indexes = torch.randn(1, 32, 8, 8), torch.randint(0, 64, (1, 24, 4, 4))
    level, noise = torch.tensor([1.0]), torch.randn(1, 2, 8, 8)
    want = old(coarse, indexes, level)
    got = new(coarse, indexes, level, realism=torch.tensor([0.8]), noise=noise)
    assert torch.allclose(got, want, atol=1e-5)
    fresh = LatentRefiner(new.cfg)  # a file without a refiner leaves it as it was
    save_latent_codec(tmp_path / "bare.safetensors", small_compressor(), {})
    init_refiner(tmp_path / "bare.safetensors", fresh)
    assert torch.equal(fresh.head.weight, torch.zeros_like(fresh.head.weight))


def test_the_decoder_a_run_fine_tunes_gets_gradients_and_a_frozen_one_none():
    """Runs r1-r8 loaded the decoder frozen (as every loader hands models back) and never switched
    it on, so their --decoder-lr trained nothing; the training scripts now take it from here."""
    from scripts.train_latent_codec import taef2_decoder

    latent = torch.randn(1, 32, 4, 4)
    tuned = taef2_decoder(trainable=True)
    tuned(latent).mean().backward()
    grads = [p.grad for p in tuned.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    frozen = taef2_decoder(trainable=False)
    assert not any(p.requires_grad for p in frozen.parameters())
