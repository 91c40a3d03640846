"""Train the variable-rate compressor of TAEF2's latent (dpc-v3) on cached latents.

    python -m scripts.cache_taef2_latents ../shared/data/train .data/taef2_cache.npz
    python -m scripts.train_latent_codec --stage latent --seconds 900 \\
        --checkpoint .data/lc.ckpt --log rd/latent_codec_train_s1.csv
    python -m scripts.train_latent_codec --stage pixel --seconds 3600 --init .data/lc.ckpt \\
        --checkpoint .data/lc2.ckpt --log rd/latent_codec_train_s2.csv
    (--resume continues a stage from its --checkpoint)

Loss per crop, at a random level l (one lambda per level, --lambdas):

    loss = bpp + lambda_l * D
    stage latent: D = MSE(latent_hat, latent)                          (per latent element)
    stage pixel:  D = w_lat * MSE(latent_hat, latent) + w_mse * MSE(x_hat, x) / 0.01
                      + w_lpips * LPIPS(x_hat, x) + w_dists * DISTS(x_hat, x)
                      + w_gan * hinge_G(D(x_hat))                           (--gan, after --gan-start)
                      + w_low * LOWPASS(x_hat, x) / 0.01                    (--lowpass)
    and, outside lambda (the same weight at every level): + w_fixed * LOWPASS / 0.01 (--lowpass-fixed)
                  x_hat = TAEF2 decoder(latent_hat) on a random --window of the crop (frozen)

LOWPASS is the MSE of the 8 x 8 block means in YCbCr, chroma counted twice: the colour and the
shading at the latent's own resolution. LPIPS, DISTS and the GAN barely see them, and a run
without it washed colours out below 0.05 bpp (docs/latent-codec.md, run s4).

bpp comes from the entropy models' likelihoods (y with additive noise, z with CompressAI's
noise), over the whole crop; latent_hat uses straight-through rounding (codec/entropy/training.py).
The TAEF2 decoder draws the smooth latents a rate-starved compressor makes badly, so the pixel
stage teaches g_s (and the rest) to make latents the decoder draws well.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from codec.entropy.compressor import CompressorConfig
from codec.entropy.training import TrainableCompressor
from codec.model_files import load_taef2, save_latent_codec
from eval.perceptual import DISTSMetric, LPIPSMetric
from scripts import colour_check
from scripts.checkpoints import load_checkpoint, save_checkpoint
from scripts.common import CsvLog, command_line, likelihood_bits, load_compressor_state, warmup_cosine

# Default trade-offs per level (lowest rate first), in the latent stage's units: latent MSE
# per element. Chosen so the levels span about 0.005-0.3 bpp on Kodak.
LAMBDAS = (0.35, 0.7, 1.4, 2.8, 5.6, 11.2)
CONFIG = dict(latent_channels=32, channels=128, y_channels=96, hyper_channels=96, z_channels=32)


class Batches:
    """Random crops of the cache: latents (B,32,h,w) and their images (B,3,8h,8w) in [0,1]."""

    def __init__(self, cache: Path, seed: int):
        d = np.load(cache)
        self.images, self.latents = d["images"], d["latents"]
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.latents)

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.rng.choice(len(self), n, replace=False)
        lat = torch.from_numpy(self.latents[idx].astype(np.float32))
        img = torch.from_numpy(self.images[idx]).permute(0, 3, 1, 2).float() / 255
        return lat, img


YCBCR = torch.tensor(colour_check.YCBCR, dtype=torch.float32)  # RGB -> YCbCr, as the colour check measures


def lowpass_error(x_hat: torch.Tensor, x: torch.Tensor, block: int = 8) -> torch.Tensor:
    """(B,3,H,W) images in [0,1] -> (B,) MSE of their block x block means in YCbCr, Cb and Cr
    counted twice (weights 1, 2, 2, normalised to sum 1)."""
    diff = torch.nn.functional.avg_pool2d(x_hat - x, block)
    diff = torch.einsum("ij,bjhw->bihw", YCBCR, diff)
    per_channel = diff.pow(2).mean((2, 3))
    return (per_channel * torch.tensor([1.0, 2.0, 2.0])).sum(1) / 5


class PatchDiscriminator(torch.nn.Module):
    """A small patch discriminator for the pixel stage's GAN term: (B,3,H,W) in [0,1] -> (B,1,H/8,W/8)
    logits, each seeing about 46 px. Spectral norm keeps it Lipschitz, so the hinge loss stays tame
    at the learning rates a CPU run can afford."""

    def __init__(self, width: int = 64):
        super().__init__()
        sn = torch.nn.utils.parametrizations.spectral_norm
        act = lambda: torch.nn.LeakyReLU(0.2)  # noqa: E731
        self.net = torch.nn.Sequential(
            sn(torch.nn.Conv2d(3, width, 4, 2, 1)), act(),
            sn(torch.nn.Conv2d(width, 2 * width, 4, 2, 1)), act(),
            sn(torch.nn.Conv2d(2 * width, 4 * width, 4, 2, 1)), act(),
            sn(torch.nn.Conv2d(4 * width, 4 * width, 3, 1, 1)), act(),
            sn(torch.nn.Conv2d(4 * width, 1, 3, 1, 1)),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1)


def discriminator_step(disc: PatchDiscriminator, disc_opt, x: torch.Tensor, x_hat: torch.Tensor) -> None:
    """One hinge-loss step of the discriminator on real windows `x` and decoded ones `x_hat` (detached)."""
    disc.requires_grad_(True)
    d_loss = (1 - disc(x)).relu().mean() + (1 + disc(x_hat.detach())).relu().mean()
    disc_opt.zero_grad(set_to_none=True)
    d_loss.backward()
    disc_opt.step()


def taef2_decoder(trainable: bool) -> torch.nn.Module:
    """The shipped TAEF2 decoder to fine-tune: the loader hands every model back frozen
    (`requires_grad` off), so a run that trains the decoder must switch it on. Runs r1-r8 of
    scripts/train_latent_refiner.py did not, and their `--decoder-lr` trained nothing."""
    return load_taef2().autoencoder.decoder.requires_grad_(trainable)


def init_from_weights(path: Path, comp: TrainableCompressor, decoder) -> None:
    """Start from a codec weight file written by --export (codec.model_files.save_latent_codec):
    the compressor with its z density model, and its fine-tuned decoder if it has one."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    state = {k[len("compressor.") :]: v.float() for k, v in tensors.items() if k.startswith("compressor.")}
    unexpected = sorted(set(state) - set(comp.state_dict()))
    missing = load_compressor_state(comp, state)  # the CDF tables are recomputed from the weights at --export
    if unexpected or missing:
        raise SystemExit(f"{path} does not fit this compressor: missing {missing}, unexpected {unexpected}")
    own = {k[len("decoder.") :]: v.float() for k, v in tensors.items() if k.startswith("decoder.")}
    if own and decoder is not None:
        decoder.load_state_dict(own)


def resume(path: Path, parts: dict) -> dict:
    """Load each part that `path` holds in a form that fits; a part it lacks (a decoder that starts
    learning now) or that no longer fits (an optimiser with other groups) starts afresh."""
    meta = None
    for name, part in parts.items():
        try:
            meta = load_checkpoint(path, {name: part})
        except (ValueError, KeyError, RuntimeError):
            print(f"{name}: not in {path} as it is now, starts afresh")
    return meta if meta is not None else load_checkpoint(path, {})


def add_run_options(ap: argparse.ArgumentParser) -> None:
    """The options that run, stop and resume a training (shared with train_latent_refiner)."""
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--checkpoint-every", type=float, default=300, help="seconds")
    ap.add_argument("--log", type=Path, required=True)
    ap.add_argument("--seconds", type=float, default=900)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path(".data/taef2_cache.npz"))
    ap.add_argument("--stage", choices=("latent", "pixel"), required=True)
    ap.add_argument("--init", type=Path, help="start from this checkpoint's compressor (a new stage)")
    add_run_options(ap)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument(
        "--gain-lr-scale", type=float, default=30.0, help="learning rate of the gains and z's density / --lr"
    )
    ap.add_argument("--lambdas", type=float, nargs="+", default=list(LAMBDAS))
    ap.add_argument("--window", type=int, default=16, help="pixel stage: latent px decoded per crop (x8 px)")
    ap.add_argument("--latent-mse", type=float, default=0.25)
    ap.add_argument("--mse", type=float, default=0.5, help="weight of pixel MSE / 0.01")
    ap.add_argument("--lpips", type=float, default=1.0)
    ap.add_argument("--dists", type=float, default=0.0)
    ap.add_argument("--lowpass", type=float, default=0.0, help="pixel stage: weight of LOWPASS / 0.01")
    ap.add_argument(
        "--lowpass-fixed", type=float, default=0.0, help="pixel stage: weight of LOWPASS / 0.01 outside lambda"
    )
    ap.add_argument("--gan", type=float, default=0.0, help="pixel stage: weight of the hinge GAN term")
    ap.add_argument("--gan-start", type=int, default=200, help="step from which the GAN term reaches the loss")
    ap.add_argument("--metric-weights", type=Path, default=Path("../shared/data/weights"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--bf16",
        action="store_true",
        help="pixel stage: bf16 autocast for the decoder and the metrics (AVX-512 BF16 or AMX)",
    )
    ap.add_argument(
        "--decoder-lr", type=float, default=0.0, help="pixel stage: fine-tune the TAEF2 decoder (0: frozen)"
    )
    ap.add_argument("--export", type=Path, help="only write --checkpoint's compressor as a codec weight file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    data = Batches(args.cache, args.seed)
    comp = TrainableCompressor(CompressorConfig(**CONFIG, levels=len(args.lambdas)))
    aux_params = [p for n, p in comp.named_parameters() if n.endswith("quantiles")]
    main_params = [p for n, p in comp.named_parameters() if not n.endswith("quantiles")]
    # The gains set each level's rate, and z's density model most of the lowest rates (a poorly fit
    # one cost 3.7 bits per z symbol at every level). At the networks' learning rate Adam would move
    # them by only ~0.1 in 1000 steps: they get their own, --gain-lr-scale times higher.
    fast = [comp.log_gain_y, comp.log_gain_z]
    fast += [p for n, p in comp.entropy_bottleneck.named_parameters() if not n.endswith("quantiles")]
    nets = [p for p in main_params if all(p is not f for f in fast)]
    opt = torch.optim.Adam([{"params": nets}, {"params": fast, "scale": args.gain_lr_scale}], lr=args.lr)
    aux_opt = torch.optim.Adam(aux_params, lr=1e-3)
    parts = {"comp": comp, "opt": opt, "aux_opt": aux_opt}
    decoder = lpips = dists = None
    if args.stage == "pixel":
        decoder = taef2_decoder(trainable=args.decoder_lr > 0)
        lpips = LPIPSMetric.load(args.metric_weights).model.eval().requires_grad_(False)
        if args.dists:
            dists = DISTSMetric.load(args.metric_weights).model.eval().requires_grad_(False)
        if args.gan:  # the discriminator trains from the start; its term joins the loss at --gan-start
            disc = PatchDiscriminator()
            disc_opt = torch.optim.Adam(disc.parameters(), lr=1e-4, betas=(0.5, 0.9))
            parts |= {"disc": disc, "disc_opt": disc_opt}
        if args.decoder_lr > 0:  # the decoder learns to draw the coarse latents too (from TAEF2's weights)
            dec_opt = torch.optim.Adam(decoder.parameters(), lr=args.decoder_lr)
            parts |= {"decoder": decoder, "dec_opt": dec_opt}
    step, spent = 0, 0.0
    if args.resume:
        meta = resume(args.checkpoint, parts)
        step, spent = meta["step"], meta["seconds"]
        data.rng = np.random.default_rng([args.seed, step])
    elif args.init and args.init.name.endswith(".ckpt"):
        load_checkpoint(args.init, {"comp": comp})
    elif args.init:  # a codec weight file (the shipped dpc-v3): float16 values, density model included
        init_from_weights(args.init, comp, decoder)
    if args.export:
        meta = load_checkpoint(args.checkpoint, {"comp": comp})
        tuned = load_taef2().autoencoder.decoder
        try:
            load_checkpoint(args.checkpoint, {"decoder": tuned})
        except RuntimeError:  # the decoder was frozen: the file needs none of its own
            tuned = None
        info = {"lambdas": None, "training": {k: meta[k] for k in ("stage", "step", "seconds", "command") if k in meta}}
        info["training"]["trade_offs"] = args.lambdas
        print(f"{args.export}: sha256 {save_latent_codec(args.export, comp, info, tuned)}")
        return
    lambdas = torch.tensor(args.lambdas)

    header = ["step", "seconds", "level", "bpp", "latent_mse", "pixel_mse", "lpips", "dists", "gan_g", "lowpass"]
    log = CsvLog(args.log, header, append=args.resume)
    print(f"{len(data)} cached crops; compressor {sum(p.numel() for p in main_params) / 1e6:.2f} M parameters")

    t_start, last_ckpt, stats = time.time() - spent, time.time(), []
    while spent < args.seconds:
        frac = spent / args.seconds
        lr = warmup_cosine(args.lr, step, frac, warmup=50)
        for g in opt.param_groups:
            g["lr"] = lr * g.get("scale", 1.0)
        latent, image = data.batch(args.batch)
        levels = torch.from_numpy(data.rng.integers(0, len(args.lambdas), args.batch))
        latent_hat, y_lik, z_lik = comp(latent, levels)
        bpp = (likelihood_bits(y_lik) + likelihood_bits(z_lik)) / (image.shape[-2] * image.shape[-1])
        lat_mse = (latent_hat - latent).pow(2).mean((1, 2, 3))
        pix_mse = perceptual = dist = adv = low = torch.zeros(args.batch)
        if args.stage == "latent":
            distortion = lat_mse
        else:
            w = args.window
            top, left = (int(v) for v in data.rng.integers(0, latent.shape[-1] - w + 1, 2))
            x = image[..., 8 * top : 8 * (top + w), 8 * left : 8 * (left + w)]
            # a random 0-3 px phase for LPIPS, so the loss cannot reward a pattern locked to AlexNet's stride
            dy, dx = (int(v) for v in data.rng.integers(0, 4, 2))
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                x_hat = decoder(latent_hat[..., top : top + w, left : left + w]).float().clamp(0, 1)
                perceptual = lpips(x_hat[..., dy:, dx:] * 2 - 1, x[..., dy:, dx:] * 2 - 1).float().flatten()
            pix_mse = (x_hat - x).pow(2).mean((1, 2, 3))
            distortion = args.latent_mse * lat_mse + args.mse * pix_mse / 0.01 + args.lpips * perceptual
            low = lowpass_error(x_hat, x)
            if args.lowpass:
                distortion = distortion + args.lowpass * low / 0.01
            if dists is not None:
                dist = dists(x, x_hat, require_grad=True, batch_average=False).flatten()
                distortion = distortion + args.dists * dist
            if args.gan:
                disc.requires_grad_(False)
                adv = -disc(x_hat).mean((1, 2, 3))
                if step >= args.gan_start:
                    distortion = distortion + args.gan * adv
        loss = (bpp + lambdas[levels] * distortion).mean()
        if args.lowpass_fixed:  # every level must keep its block colours, the lowest too
            loss = loss + args.lowpass_fixed * (low / 0.01).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main_params, 1.0)
        opt.step()
        if "dec_opt" in parts:
            for g in dec_opt.param_groups:
                g["lr"] = args.decoder_lr * lr / args.lr
            torch.nn.utils.clip_grad_norm_(decoder.parameters(), 1.0)
            dec_opt.step()
            dec_opt.zero_grad(set_to_none=True)
        if "disc" in parts:  # hinge loss on the same windows
            discriminator_step(disc, disc_opt, x, x_hat)
        aux_opt.zero_grad(set_to_none=True)
        comp.entropy_bottleneck.loss().backward()
        aux_opt.step()
        step += 1
        spent = time.time() - t_start
        bpp, lat_mse, pix_mse, perceptual, dist, adv, low = (
            t.detach() for t in (bpp, lat_mse, pix_mse, perceptual, dist, adv, low)
        )
        for i in range(args.batch):
            row = [step, round(spent, 1), int(levels[i]), float(bpp[i]), float(lat_mse[i])]
            row += [float(pix_mse[i]), float(perceptual[i]), float(dist[i]), float(adv[i]), float(low[i])]
            row = [round(v, 5) if isinstance(v, float) else v for v in row]
            stats.append(row)
        if step % 25 == 0:
            for row in stats:
                log.row(*row)
            arr = np.array(stats)
            per = " ".join(
                f"q{lv + 1}:{arr[arr[:, 2] == lv, 3].mean():.3f}/{arr[arr[:, 2] == lv, 4].mean():.3f}"
                + (
                    f"/{arr[arr[:, 2] == lv, 6].mean():.3f}/{arr[arr[:, 2] == lv, 9].mean():.4f}"
                    if args.stage == "pixel"
                    else ""
                )
                for lv in range(len(args.lambdas))
                if (arr[:, 2] == lv).any()
            )
            print(f"step {step} {spent:.0f}s lr {lr:.1e} bpp/latMSE{'/lpips/low' if decoder else ''} {per}", flush=True)
            stats = []
        if time.time() - last_ckpt > args.checkpoint_every or spent >= args.seconds:
            meta = {"step": step, "seconds": spent, "stage": args.stage, "command": command_line()}
            save_checkpoint(args.checkpoint, parts, meta)
            last_ckpt = time.time()
    for row in stats:  # the steps since the last 25
        log.row(*row)
    print(f"done: {step} steps in {spent:.0f} s -> {args.checkpoint}")


if __name__ == "__main__":
    main()
