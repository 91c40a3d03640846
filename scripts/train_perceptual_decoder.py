"""Train the perceptual pixel decoder on the coarse latents the shipped codec decodes.

    # stage 1: MSE + LPIPS, from the fidelity (autoencoder) decoder
    python -m scripts.train_perceptual_decoder ../shared/data/train --seconds 1800 --gan 0 \\
        --checkpoint .data/pdec-s1.ckpt --out .data/pdec-s1.safetensors --log rd/decoder_train_s1.csv
    # stage 2: + a conditional patch discriminator (HiFiC's non-saturating loss, one D step per G step)
    python -m scripts.train_perceptual_decoder ../shared/data/train --seconds 2400 --gan 0.15 \\
        --init .data/pdec-s1.safetensors --checkpoint .data/pdec-s2.ckpt --out .data/pdec-s2.safetensors \\
        --log rd/decoder_train_s2.csv
    # a stage cut short continues from its checkpoint (same command plus --resume)

1. Every training photo (downscaled to a short side of 288 px, as for every other stage)
   goes through the shipped codec once (Codec.stages.latent_pairs): for each quality of --qualities
   and one random quality on the continuous scale, the coarse latent the decoder would
   reconstruct from the file. Cached in --cache with the photos (scripts/common.py, build_cache).
   The validation split (BSDS500's `val` images, never trained on here; scripts/decoder_validation.py)
   is kept out.
2. Batches: random crops of --crop latent px (x8 image px), one random level per crop,
   horizontal flips. Loss = --mse x MSE/0.01 + --lpips x LPIPS-Alex (+ --dists x DISTS)
   (+ --gan x non-saturating generator loss of a patch discriminator that sees the image and
   the coarse latent, as in HiFiC / MS-ILLM). AdamW, warm-up then cosine decay over the
   wall-clock budget; an EMA of the weights is what gets saved.
3. Resumable: --checkpoint is written every --checkpoint-every seconds and at the end
   (safetensors + JSON, no pickle); --resume continues from it with the same budget.
"""

import argparse
import csv
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from codec import Codec
from codec.model_files import load_decoder, save_decoder
from codec.models.perceptual_decoder import PerceptualDecoder, PerceptualDecoderConfig
from eval.perceptual import DISTSMetric, LPIPSMetric
from scripts.checkpoints import TimedCheckpoint
from scripts.common import (
    QUALITIES,
    CsvLog,
    command_line,
    ema_update,
    resume_crops,
    seed_and_threads,
    set_lr,
    training_crops,
    warmup_cosine,
)


class PatchDiscriminator(nn.Module):
    """(B,3,H,W) image + (B,C,H/8,W/8) coarse latent -> (B,1,H/8,W/8) real/fake logits.

    Conditioned on what the decoder saw (MS-ILLM, HiFiC): it judges whether the image is a
    plausible photo *for that latent*, not just any photo. Spectral norm keeps it stable.
    """

    def __init__(self, latent_channels: int = 8, width: int = 64):
        super().__init__()
        sn = spectral_norm
        act = nn.LeakyReLU(0.2)
        self.image = nn.Sequential(
            sn(nn.Conv2d(3, width, 4, 2, 1)),
            act,
            sn(nn.Conv2d(width, 2 * width, 4, 2, 1)),
            act,
            sn(nn.Conv2d(2 * width, 4 * width, 4, 2, 1)),
            act,
        )
        self.head = nn.Sequential(
            sn(nn.Conv2d(4 * width + latent_channels, 4 * width, 3, 1, 1)),
            act,
            sn(nn.Conv2d(4 * width, 1, 1)),
        )

    def forward(self, x: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.image(x * 2 - 1), latent], dim=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("train_dir", type=Path, help="folder of training photos (../shared/data/train)")
    ap.add_argument("--cache", type=Path, default=Path(".data/decoder_latents.npz"))
    ap.add_argument("--qualities", type=float, nargs="+", default=list(QUALITIES))
    ap.add_argument("--metric-weights", type=Path, default=Path("../shared/data/weights"))
    ap.add_argument("--init", type=Path, help="start from this perceptual-decoder file (else the fidelity decoder)")
    ap.add_argument("--out", type=Path, required=True, help="weights (.safetensors) written at the end")
    ap.add_argument("--checkpoint", type=Path, required=True, help="training state, for --resume")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--checkpoint-every", type=float, default=300, help="seconds")
    ap.add_argument("--log", type=Path, required=True, help="CSV log (a PNG plot is written beside it)")
    ap.add_argument("--seconds", type=float, default=1800, help="wall-clock budget of this stage")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=20, help="latent crop side (x8 image px)")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--mse", type=float, default=1.0, help="weight of MSE / 0.01")
    ap.add_argument("--lpips", type=float, default=1.0)
    ap.add_argument("--dists", type=float, default=0.0)
    ap.add_argument(
        "--dists-crops",
        type=int,
        default=0,
        help="DISTS on the first N crops of a batch (0 = all; VGG is most of a step)",
    )
    ap.add_argument("--gan", type=float, default=0.0, help="generator loss weight (0 = no discriminator)")
    ap.add_argument(
        "--phase-all",
        action="store_true",
        help="random sub-grid shifts for DISTS (0-3 px) and the discriminator (0-7 px) too, not only LPIPS",
    )
    ap.add_argument("--d-lr", type=float, default=1e-4)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--blocks", type=int, nargs=2, default=[4, 2], help="ResBlocks at H/8 and H/4 (new decoders)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument(
        "--bf16",
        action="store_true",
        help="bf16 autocast for the forward passes (fp32 weights and optimiser); pays only on CPUs with AMX",
    )
    args = ap.parse_args()
    seed_and_threads(args)

    crops = training_crops(args.train_dir, args.cache, args.qualities, args.crop, args.seed)

    previous = None
    if args.init:
        bundle = load_decoder(args.init)
        decoder, previous = bundle.decoder, bundle.info
    else:
        codec = Codec.load()
        cfg = PerceptualDecoderConfig(
            latent_channels=codec.autoencoder.cfg.latent_channels,
            widths=codec.autoencoder.cfg.widths,
            blocks=tuple(args.blocks),
        )
        decoder = PerceptualDecoder.from_fidelity_decoder(codec.autoencoder.decoder, cfg)
    decoder.train().requires_grad_(True)
    ema = PerceptualDecoder(decoder.cfg)
    ema.load_state_dict(decoder.state_dict())
    ema.eval().requires_grad_(False)
    lpips = LPIPSMetric.load(args.metric_weights).model.eval().requires_grad_(False)
    dists = DISTSMetric.load(args.metric_weights).model.eval().requires_grad_(False) if args.dists else None
    disc = PatchDiscriminator(decoder.cfg.latent_channels) if args.gan else None
    opt = torch.optim.AdamW(decoder.parameters(), lr=args.lr, weight_decay=0.0, betas=(0.9, 0.99))
    d_opt = torch.optim.AdamW(disc.parameters(), lr=args.d_lr, betas=(0.5, 0.99)) if disc else None
    parts = {"decoder": decoder, "ema": ema, "opt": opt} | ({"disc": disc, "d_opt": d_opt} if disc else {})

    ckpt = TimedCheckpoint(args.checkpoint, args.checkpoint_every)
    step, spent = resume_crops(ckpt, parts, crops, args.seed, args.seconds) if args.resume else (0, 0.0)
    params = sum(p.numel() for p in decoder.parameters())
    print(f"perceptual decoder: {params / 1e6:.2f} M parameters, blocks {decoder.cfg.blocks}; gan {args.gan}")

    log = CsvLog(args.log, ["step", "seconds", "lr", "mse", "lpips", "dists", "g_adv", "d_loss"], append=args.resume)

    def info() -> dict:
        return {
            "steps": step,
            "seconds": round(spent),
            "batch": args.batch,
            "crop_px": 8 * args.crop,
            "losses": {
                "mse/0.01": args.mse,
                "lpips_alex (random 0-3 px shift)": args.lpips,
                "dists": args.dists,
                "dists_crops": args.dists_crops or args.batch,
                "gan": args.gan,
                "random_phase": "lpips, dists, discriminator" if args.phase_all else "lpips",
            },
            "lr": args.lr,
            "ema": args.ema,
            "device": "cpu",
            "autocast": "bf16" if args.bf16 else "fp32",
            "threads": torch.get_num_threads(),
            "train_photos": len(crops.keep),
            "qualities": list(args.qualities) + ["one random per photo"],
            "command": command_line(),
            "previous_stage": previous,
        }

    t_start, acc = time.time() - spent, []
    while spent < args.seconds:
        lr = set_lr(opt, warmup_cosine(args.lr, step, spent / args.seconds, warmup=100))
        x, z, level = crops.batch(args.batch)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            y = decoder(z, level).float()
            mse = (y - x).pow(2).mean()
            # LPIPS on a random 0-3 px shift of both images: AlexNet's first layer has stride 4, and
            # with crops always aligned to the latent grid the decoder learns a periodic pattern in
            # phase with it that lowers LPIPS without looking any better. A random phase removes it.
            dy, dx = (int(v) for v in crops.rng.integers(0, 4, 2))
            perceptual = lpips(y[..., dy:, dx:] * 2 - 1, x[..., dy:, dx:] * 2 - 1).mean()
            loss = args.mse * mse / 0.01 + args.lpips * perceptual
            d_term = torch.zeros(())
            if dists is not None:
                n = args.dists_crops or len(x)
                # The same phase argument as for LPIPS: VGG's pooling grid, too, is fixed.
                ds, dt = (int(v) for v in crops.rng.integers(0, 4, 2)) if args.phase_all else (0, 0)
                x_d, y_d = x[:n, :, ds:, dt:], y[:n, :, ds:, dt:].clamp(0, 1)
                d_term = dists(x_d, y_d, require_grad=True, batch_average=True)
                loss = loss + args.dists * d_term
            g_adv, d_loss = torch.zeros(()), torch.zeros(())
            if disc is not None:
                # The discriminator's strides make an 8 px grid aligned with the latent's; a
                # periodic pattern in phase with it can fool it. With --phase-all it sees the
                # image shifted by 0-7 px against its latent cells (real and fake alike).
                if args.phase_all:
                    sy, sx = (int(v) for v in crops.rng.integers(0, 8, 2))
                    h, w = z.shape[-2] - 1, z.shape[-1] - 1
                    window = (slice(None), slice(None), slice(sy, sy + 8 * h), slice(sx, sx + 8 * w))
                    d_x, d_y, d_z = x[window], y[window], z[..., :h, :w]
                else:
                    d_x, d_y, d_z = x, y, z
                disc.requires_grad_(False)
                g_adv = nn.functional.softplus(-disc(d_y, d_z).float()).mean()
                loss = loss + args.gan * g_adv
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if disc is not None:
            disc.requires_grad_(True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                real, fake = disc(d_x, d_z).float(), disc(d_y.detach(), d_z).float()
            d_loss = nn.functional.softplus(-real).mean() + nn.functional.softplus(fake).mean()
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
        ema_update(ema, decoder, step, args.ema)
        step += 1
        spent = time.time() - t_start
        acc.append((mse.item(), perceptual.item(), d_term.item(), g_adv.item(), d_loss.item()))
        if step % 25 == 0:
            m = np.mean(acc, axis=0)
            log.row(step, round(spent, 1), f"{lr:.2e}", *(f"{v:.5f}" for v in m))
            print(
                f"step {step} {spent:.0f}s mse {m[0]:.5f} (PSNR {-10 * np.log10(m[0]):.2f}) lpips {m[1]:.4f}"
                + (f" dists {m[2]:.4f}" if dists is not None else "")
                + (f" g_adv {m[3]:.3f} d {m[4]:.3f}" if disc is not None else ""),
                flush=True,
            )
            acc = []
        if ckpt.due():
            ckpt.save(parts, {"step": step, "seconds": spent})
            save_decoder(args.out, _copy(ema), info())
    ckpt.save(parts, {"step": step, "seconds": spent})
    digest = save_decoder(args.out, _copy(ema), info())
    log.close()
    plot_log(args.log)
    print(f"{step} steps, {spent:.0f} s -> {args.out} (sha256 {digest[:16]})")


def _copy(model: PerceptualDecoder) -> PerceptualDecoder:
    """A copy to round to float16 and save (the EMA itself keeps full precision)."""
    out = PerceptualDecoder(model.cfg)
    out.load_state_dict(model.state_dict())
    return out.eval()


def plot_log(path: Path) -> None:
    """Loss curves of a training log, beside it as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(open(path)))
    if not rows:
        return
    steps = [int(r["step"]) for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    axes[0].plot(steps, [-10 * math.log10(float(r["mse"])) for r in rows])
    axes[0].set_title("training PSNR (dB)")
    axes[1].plot(steps, [float(r["lpips"]) for r in rows], label="LPIPS")
    if any(float(r["dists"]) for r in rows):
        axes[1].plot(steps, [float(r["dists"]) for r in rows], label="DISTS")
    axes[1].legend()
    axes[1].set_title("perceptual losses")
    axes[2].plot(steps, [float(r["g_adv"]) for r in rows], label="G adversarial")
    axes[2].plot(steps, [float(r["d_loss"]) for r in rows], label="D")
    axes[2].legend()
    axes[2].set_title("adversarial")
    for a in axes:
        a.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path.with_suffix(".png"), dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
