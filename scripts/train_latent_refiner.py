"""Train dpc-v3's one-step latent refiner (codec/models/latent_refiner.py) through the pixel decoder,
with the compressor and the fine-tuned decoder of a dpc-v3 weight file, all on cached latents.

    python -m scripts.train_latent_refiner --init rd/latent-codec/dpc-v3-preview.safetensors \\
        --seconds 5400 --checkpoint .data/lr_r1.ckpt --log rd/latent_refiner_train_r1.csv
    (--resume continues from --checkpoint; --export FILE writes the codec weight file)

Per crop, at a random level l:

    latent_hat = g_s(round(y))                                 (the coarse latent, as decoded)
    refined    = R(latent_hat, y's scale-table indexes, l)     (--no-refiner: refined = latent_hat)
    x_hat      = decoder(refined) on a random --window of the crop
    D          = w_lat MSE(refined, latent) + w_mse MSE(x_hat, x) / 0.01 + LPIPS + w_dists DISTS
                 + w_gan hinge_G(disc(x_hat)) + w_low LOWPASS(x_hat, x) / 0.01
    compressor:          bpp + lambda_l (D + w_lat MSE(latent_hat, latent))   (--comp-lr 0: frozen, with
                         z's medians, so the files are the --init file's bit for bit: run r8)
    refiner:             D, the same weight at every level
    decoder:             D's pixel terms, the same weight at every level (--decoder-weighting plain)
                         or lambda_l / mean(lambda) (--decoder-weighting lambda, as s4 trained it)

With --realism, each crop also draws a realism r ~ U(0,1): the refiner hears r (and, with
--noise-channels N, N channels of Gaussian noise scaled by r), and the GAN term weighs 2 r w_gan
(w_gan on average, as without --realism), so r = 0 learns the lowest distortion and r = 1 the most
realistic decode (multi-realism; codec/models/latent_refiner.py). --init grows the file's refiner
to these inputs, and deepens it to --blocks (run r7: 4 -> 8), with its function unchanged. Export
with the same --realism / --noise-channels / --blocks and the decode's default r
(--default-realism). --noise-channels 0 is the noise-off control.

Why the two weightings: with lambda from 0.006 to 1.9, a shared lambda-weighted loss gives the
lowest level 1/300 of the top level's say, and the lowest levels are where the colours went
(docs/latent-codec.md, runs s4-s6). The refiner and the decoder make no rate, so they learn every
level's distortion alike; the compressor still trades its rate against lambda. One backward pass
does both: the gradient that leaves D for the compressor is scaled by lambda_l on its way
(`ScaleGrad`). Run r2 gave the decoder the plain weighting too, and its middle levels lost to s4,
whose decoder heard lambda: `decoder_weighted` lets the decoder hear lambda while the refiner
upstream of it still hears D plainly.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from codec.entropy.compressor import CompressorConfig, medians
from codec.entropy.training import TrainableCompressor, ste_round
from codec.model_files import load_model, save_latent_codec
from codec.models.latent_refiner import LatentRefiner, RefinerConfig
from eval.perceptual import DISTSMetric, LPIPSMetric
from scripts.checkpoints import load_checkpoint, save_checkpoint
from scripts.common import CsvLog, command_line, likelihood_bits, warmup_cosine
from scripts.train_latent_codec import (
    CONFIG,
    Batches,
    PatchDiscriminator,
    add_run_options,
    discriminator_step,
    init_from_weights,
    lowpass_error,
    resume,
    taef2_decoder,
)


class ScaleGrad(torch.autograd.Function):
    """Identity forward; the gradient multiplied by a per-sample (B,) weight on the way back."""

    @staticmethod
    def forward(ctx, x, weight):
        ctx.save_for_backward(weight)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        return grad * weight.view(-1, *([1] * (grad.dim() - 1))), None


def decoder_weighted(decoder: torch.nn.Module, latent: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """decoder(latent) for a loss that the caller multiplies per sample by weight (B,): the decoder's
    parameters get the weighted gradient, while the gradient that leaves through `latent` (to the
    refiner and the compressor) is divided by the weight again, so it stays the unweighted one."""
    return decoder(ScaleGrad.apply(latent, 1.0 / weight))


def init_refiner(path: Path, refiner: LatentRefiner) -> None:
    """Start `refiner` from the refiner of the codec weight file `path`, if it has one; grown to
    `refiner`'s realism input and noise, and deepened to its blocks (the new weights start where
    the function is the file's)."""
    old = load_model(path).refiner
    if old is None:
        return
    cfg = refiner.cfg
    if cfg.realism and not old.cfg.realism:
        old = old.grown(realism=True, noise_channels=cfg.noise_channels)
    if cfg.blocks > old.cfg.blocks:
        old = old.deepened(cfg.blocks)
    refiner.load_state_dict(old.state_dict())


def coded(comp: TrainableCompressor, latent: torch.Tensor, levels: torch.Tensor, rate: str = "noise"):
    """The compressor as the decoder will see it: latent (B,32,h,w), levels (B,) long ->
    (latent_hat, y likelihoods, z likelihoods, y's scale-table indexes (B,96,h/2,w/2)).

    y and z are rounded (straight-through) about the means and medians the coder uses, so that
    latent_hat and the scales are the decoder's. The likelihoods: rate "noise", CompressAI's
    additive-noise proxy; "rounded", those of the rounded symbols (`comp.rounded_likelihoods`). The
    proxy overcharges the lowest levels many times over: with dpc-v3-s4 on 32 training crops,
    level 0 costs y 0.069 bpp with noise and 0.0027 bpp rounded (level 5: 0.338 and 0.248), so
    most of the low levels' rate term is a floor of the proxy, not bits of the file. Yet the proxy
    trains better: at equal steps on the same crops, "rounded" lost 24 / 14 points of LPIPS / DISTS
    BD-rate to "noise" (runs r1 and r4, docs/latent-codec.md)."""
    gain_y = comp.log_gain_y[levels].exp()[:, :, None, None]
    gain_z = comp.log_gain_z[levels].exp()[:, :, None, None]
    y = comp.g_a(latent)
    z_g = comp.h_a(y) * gain_z
    _, z_lik = comp.entropy_bottleneck(z_g)
    med = medians(comp.entropy_bottleneck)
    z_g_hat = ste_round(z_g - med) + med
    means, scales = comp.raw_params(z_g_hat / gain_z, gain_y)
    y_g = y * gain_y
    _, y_lik = comp.gaussian_conditional(y_g, scales, means=means)
    y_g_hat = ste_round(y_g - means) + means
    if rate == "rounded":
        y_lik, z_lik = comp.rounded_likelihoods(y_g, means, scales, z_g)
    indexes = comp.gaussian_conditional.build_indexes(scales.detach())
    return comp.g_s(y_g_hat / gain_y), y_lik, z_lik, indexes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path(".data/taef2_cache.npz"))
    ap.add_argument("--init", type=Path, help="a dpc-v3 weight file: its compressor and fine-tuned decoder")
    add_run_options(ap)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--window", type=int, default=16, help="latent px decoded per crop (x8 px)")
    ap.add_argument("--lr", type=float, default=2e-4, help="the refiner's learning rate")
    ap.add_argument("--comp-lr", type=float, default=1e-5, help="the compressor's (0: frozen)")
    ap.add_argument("--decoder-lr", type=float, default=2e-5, help="the decoder's (0: frozen)")
    ap.add_argument("--gain-lr-scale", type=float, default=100.0, help="gains' and z density's lr / --comp-lr")
    ap.add_argument(
        "--rate",
        choices=("noise", "rounded"),
        default="noise",
        help="the rate term's likelihoods (see `coded`; noise measured better)",
    )
    ap.add_argument(
        "--decoder-weighting",
        choices=("plain", "lambda"),
        default="plain",
        help="the decoder's per-level weight of D's pixel terms (see the module docstring)",
    )
    ap.add_argument("--lambdas", type=float, nargs="+", default=[0.006, 0.019, 0.06, 0.19, 0.6, 1.9])
    ap.add_argument("--latent-mse", type=float, default=0.25)
    ap.add_argument("--mse", type=float, default=0.5, help="weight of pixel MSE / 0.01")
    ap.add_argument("--lpips", type=float, default=1.0)
    ap.add_argument("--dists", type=float, default=1.0)
    ap.add_argument("--gan", type=float, default=0.1)
    ap.add_argument("--gan-start", type=int, default=0)
    ap.add_argument("--disc-from", type=Path, help="a checkpoint whose discriminator (`disc.*`) to start from")
    ap.add_argument("--lowpass", type=float, default=0.0, help="weight of LOWPASS / 0.01")
    ap.add_argument("--no-refiner", action="store_true", help="the control: the same run without a refiner")
    ap.add_argument(
        "--realism",
        action="store_true",
        help="a realism input r ~ U(0,1) per crop; the GAN term weighs 2 r --gan (multi-realism)",
    )
    ap.add_argument(
        "--noise-channels", type=int, default=0, help="with --realism: Gaussian noise x r in (0: the noise-off control)"
    )
    ap.add_argument("--default-realism", type=float, default=0.0, help="with --export: the r a decode uses by default")
    ap.add_argument("--width", type=int, default=96)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--metric-weights", type=Path, default=Path("../shared/data/weights"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast for the decoder and the metrics")
    ap.add_argument("--export", type=Path, help="only write --checkpoint as a codec weight file")
    ap.add_argument(
        "--stop-step",
        type=int,
        help="stop (with a checkpoint) after this step; the schedule still follows --seconds, so a run can "
        "be compared with another at equal steps",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    comp = TrainableCompressor(CompressorConfig(**CONFIG, levels=len(args.lambdas)))
    decoder = taef2_decoder(trainable=args.decoder_lr > 0)
    if args.noise_channels and not args.realism:
        raise SystemExit("--noise-channels needs --realism (the noise is scaled by r)")
    realism = dict(realism=args.realism, noise_channels=args.noise_channels, default_realism=args.default_realism)
    refiner_cfg = RefinerConfig(width=args.width, blocks=args.blocks, **realism)
    refiner = None if args.no_refiner else LatentRefiner(refiner_cfg)
    parts = {"comp": comp, "decoder": decoder} | ({"refiner": refiner} if refiner is not None else {})
    if args.export:
        meta = load_checkpoint(args.checkpoint, parts)
        info = {"lambdas": None, "training": {k: meta[k] for k in ("step", "seconds", "command") if k in meta}}
        info["training"]["trade_offs"] = args.lambdas
        print(f"{args.export}: sha256 {save_latent_codec(args.export, comp, info, decoder, refiner)}")
        return

    data = Batches(args.cache, args.seed)
    aux_params = [p for n, p in comp.named_parameters() if n.endswith("quantiles")]
    fast = [comp.log_gain_y, comp.log_gain_z]
    fast += [p for n, p in comp.entropy_bottleneck.named_parameters() if not n.endswith("quantiles")]
    comp_params = [p for n, p in comp.named_parameters() if not n.endswith("quantiles")]
    nets = [p for p in comp_params if all(p is not f for f in fast)]
    groups = [
        {"params": nets, "base": args.comp_lr},
        {"params": fast, "base": args.comp_lr * args.gain_lr_scale},
        {"params": list(decoder.parameters()), "base": args.decoder_lr},
    ]
    if refiner is not None:
        groups.append({"params": list(refiner.parameters()), "base": args.lr})
    opt = torch.optim.Adam(groups, lr=args.lr)
    aux_opt = torch.optim.Adam(aux_params, lr=1e-3)
    disc = PatchDiscriminator()
    disc_opt = torch.optim.Adam(disc.parameters(), lr=1e-4, betas=(0.5, 0.9))
    parts |= {"opt": opt, "aux_opt": aux_opt, "disc": disc, "disc_opt": disc_opt}
    lpips = LPIPSMetric.load(args.metric_weights).model.eval().requires_grad_(False)
    dists = DISTSMetric.load(args.metric_weights).model.eval().requires_grad_(False)

    step, spent = 0, 0.0
    if args.resume:
        meta = resume(args.checkpoint, parts)
        step, spent = meta["step"], meta["seconds"]
        data.rng = np.random.default_rng([args.seed, step])
    elif args.init:
        init_from_weights(args.init, comp, decoder)
        if refiner is not None:
            init_refiner(args.init, refiner)
        if args.disc_from:  # a trained discriminator (the run that made --init) rather than a fresh one
            load_checkpoint(args.disc_from, {"disc": disc})
    lambdas = torch.tensor(args.lambdas)
    frozen = args.comp_lr == 0
    if frozen:  # its files stay bit for bit the --init file's: no gradient, and no aux step on z's medians
        comp.requires_grad_(False)
    decoder_weights = lambdas / lambdas.mean() if args.decoder_weighting == "lambda" else torch.ones_like(lambdas)
    header = ["step", "seconds", "level", "bpp", "coarse_mse", "latent_mse", "pixel_mse", "lpips", "dists"]
    header += ["gan_g", "lowpass"] + (["realism"] if args.realism else [])
    log = CsvLog(args.log, header, append=args.resume)
    n_ref = sum(p.numel() for p in refiner.parameters()) if refiner is not None else 0
    print(f"{len(data)} cached crops; refiner {n_ref / 1e6:.3f} M parameters")

    t_start, last_ckpt, stats = time.time() - spent, time.time(), []

    def finished() -> bool:
        return spent >= args.seconds or (args.stop_step is not None and step >= args.stop_step)

    while not finished():
        scale = warmup_cosine(1.0, step, spent / args.seconds, warmup=50)
        for g in opt.param_groups:
            g["lr"] = g["base"] * scale
        latent, image = data.batch(args.batch)
        levels = torch.from_numpy(data.rng.integers(0, len(args.lambdas), args.batch))
        lam, dec_w = lambdas[levels], decoder_weights[levels]
        latent_hat, y_lik, z_lik, indexes = coded(comp, latent, levels, args.rate)
        bpp = (likelihood_bits(y_lik) + likelihood_bits(z_lik)) / (image.shape[-2] * image.shape[-1])
        coarse_mse = (latent_hat - latent).pow(2).mean((1, 2, 3))
        # the compressor hears D through lambda; the refiner and decoder hear it plainly
        into_refiner = ScaleGrad.apply(latent_hat, lam)
        r = torch.rand(args.batch) if args.realism else torch.full((args.batch,), 0.5)
        noise = torch.randn(args.batch, args.noise_channels, *latent.shape[-2:]) if args.noise_channels else None
        if refiner is None:
            refined = into_refiner
        elif args.realism:
            refined = refiner(into_refiner, indexes, levels.float(), realism=r, noise=noise)
        else:
            refined = refiner(into_refiner, indexes, levels.float())
        lat_mse = (refined - latent).pow(2).mean((1, 2, 3))
        w = args.window
        top, left = (int(v) for v in data.rng.integers(0, latent.shape[-1] - w + 1, 2))
        x = image[..., 8 * top : 8 * (top + w), 8 * left : 8 * (left + w)]
        dy, dx = (int(v) for v in data.rng.integers(0, 4, 2))  # LPIPS phase (see train_latent_codec)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            x_hat = decoder_weighted(decoder, refined[..., top : top + w, left : left + w], dec_w)
            x_hat = x_hat.float().clamp(0, 1)
            perceptual = lpips(x_hat[..., dy:, dx:] * 2 - 1, x[..., dy:, dx:] * 2 - 1).float().flatten()
        pix_mse = (x_hat - x).pow(2).mean((1, 2, 3))
        dist = dists(x, x_hat, require_grad=True, batch_average=False).flatten()
        low = lowpass_error(x_hat, x)
        disc.requires_grad_(False)
        adv = -disc(x_hat).mean((1, 2, 3))
        pixel_terms = args.mse * pix_mse / 0.01 + args.lpips * perceptual + args.dists * dist
        pixel_terms = pixel_terms + args.lowpass * low / 0.01
        if step >= args.gan_start:  # without --realism r is 0.5: the weight is --gan
            pixel_terms = pixel_terms + args.gan * 2 * r * adv
        distortion = args.latent_mse * lat_mse + dec_w * pixel_terms  # dec_w is undone upstream of the decoder
        loss = (bpp + lam * args.latent_mse * coarse_mse + distortion).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for g in opt.param_groups:
            torch.nn.utils.clip_grad_norm_(g["params"], 1.0)
        opt.step()
        discriminator_step(disc, disc_opt, x, x_hat)  # hinge loss on the same windows
        if not frozen:
            aux_opt.zero_grad(set_to_none=True)
            comp.entropy_bottleneck.loss().backward()
            aux_opt.step()
        step += 1
        spent = time.time() - t_start
        cols = [t.detach() for t in (bpp, coarse_mse, lat_mse, pix_mse, perceptual, dist, adv, low)]
        cols += [r] if args.realism else []
        for i in range(args.batch):
            stats.append([step, round(spent, 1), int(levels[i])] + [round(float(c[i]), 5) for c in cols])
        if step % 25 == 0:
            for row in stats:
                log.row(*row)
            arr = np.array(stats)
            per = " ".join(
                f"q{lv + 1}:{arr[arr[:, 2] == lv, 3].mean():.3f}/{arr[arr[:, 2] == lv, 7].mean():.3f}"
                f"/{arr[arr[:, 2] == lv, 8].mean():.3f}"
                for lv in range(len(args.lambdas))
                if (arr[:, 2] == lv).any()
            )
            print(f"step {step} {spent:.0f}s lr x{scale:.2f} bpp/lpips/dists {per}", flush=True)
            stats = []
        if time.time() - last_ckpt > args.checkpoint_every or finished():
            save_checkpoint(args.checkpoint, parts, {"step": step, "seconds": spent, "command": command_line()})
            last_ckpt = time.time()
    for row in stats:
        log.row(*row)
    print(f"done: {step} steps in {spent:.0f} s -> {args.checkpoint}")


if __name__ == "__main__":
    main()
