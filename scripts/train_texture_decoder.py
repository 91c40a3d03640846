"""Fine-tune the texture decoder: the autoencoder decoder's last layers, for sharp rendering of refined latents.

    python scripts/train_texture_decoder.py .data/trainpack.npz --prior codec/weights/dpc-prior-v1.safetensors \\
        --metric-weights ../shared/data/weights --seconds 1500 --log rd/texture_train.csv

The shipped autoencoder decoder was trained for MSE and renders even a perfect
latent smoothly; the diffusion prior can only restore texture the decoder then
draws. This copies the decoder's layers from --from-layer on, fine-tunes them on
(true latent -> photo) pairs of random 256x256 crops with MSE + --lpips x LPIPS
(AlexNet, local backbone weights), the earlier layers frozen, and stores them in
the prior's weight file (config `texture_from`). The plain decoder (steps 0) is
untouched: a texture decoder never changes what a file decodes to without refinement.
"""

import argparse
import csv
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train_prior import latent_cache, pack_images  # noqa: E402

from codec import Codec  # noqa: E402
from codec.model_files import load_prior, save_prior  # noqa: E402
from codec.models.prior import texture_layers  # noqa: E402
from eval.perceptual import LPIPSMetric  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pack", type=Path)
    ap.add_argument("--prior", type=Path, default=Path("codec/weights/dpc-prior-v1.safetensors"))
    ap.add_argument("--out", type=Path, help="default: overwrite --prior")
    ap.add_argument("--cache", type=Path, default=Path(".data/prior_latents.npz"))
    ap.add_argument("--metric-weights", type=Path, default=Path("../shared/data/weights"))
    ap.add_argument("--from-layer", type=int, default=4, help="first decoder layer to fine-tune")
    ap.add_argument("--lpips", type=float, default=1.0, help="LPIPS weight (MSE weight 1 / 0.01)")
    ap.add_argument("--seconds", type=float, default=1500)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=32, help="latent crop side (x8 px)")
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--log", type=Path, default=Path("rd/texture_train.csv"))
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--head-from", type=Path, help="take the trained head from this prior file (no training)")
    ap.add_argument("--head-init", type=Path, help="continue training the head stored in this prior file")
    args = ap.parse_args()
    if args.head_from:
        graft(args.prior, args.head_from, args.out or args.prior)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    codec = Codec.load()
    latents, _ = latent_cache(args.pack, args.cache)
    photos = [np.asarray(im) for im in pack_images(args.pack)]
    keep = [i for i, x in enumerate(latents) if min(x.shape[1:]) >= args.crop]
    bundle = load_prior(args.prior)
    cfg = replace(bundle.prior.cfg, texture_from=args.from_layer, texture_widths=codec.autoencoder.cfg.widths)
    frozen = nn.Sequential(*list(codec.autoencoder.decoder.net)[: args.from_layer]).eval().requires_grad_(False)
    head = texture_layers(cfg)
    head.load_state_dict(nn.Sequential(*list(codec.autoencoder.decoder.net)[args.from_layer :]).state_dict())
    previous = None
    if args.head_init:
        donor = load_prior(args.head_init)
        head.load_state_dict(donor.prior.texture.state_dict())
        previous = donor.info.get("texture")
    head.train().requires_grad_(True)
    lpips = LPIPSMetric.load(args.metric_weights).model.eval().requires_grad_(False)
    opt = torch.optim.AdamW(head.parameters(), lr=args.lr, weight_decay=0.0)
    print(
        f"texture decoder: layers {args.from_layer}.. ({sum(p.numel() for p in head.parameters()) / 1e6:.2f} M params)"
    )

    def batch():
        zs, xs = [], []
        for _ in range(args.batch):
            i = keep[rng.integers(len(keep))]
            z, photo = latents[i], photos[i]
            top = int(rng.integers(z.shape[1] - args.crop + 1))
            left = int(rng.integers(z.shape[2] - args.crop + 1))
            zs.append(torch.from_numpy(z[:, top : top + args.crop, left : left + args.crop].astype(np.float32)))
            px = photo[8 * top : 8 * (top + args.crop), 8 * left : 8 * (left + args.crop)]
            xs.append(torch.from_numpy(px.astype(np.float32) / 255).permute(2, 0, 1))
        return torch.stack(zs), torch.stack(xs)

    args.log.parent.mkdir(parents=True, exist_ok=True)
    log = csv.writer(open(args.log, "w", newline=""))
    log.writerow(["step", "seconds", "mse", "lpips"])
    t0, step, acc = time.time(), 0, []
    while (elapsed := time.time() - t0) < args.seconds:
        for g in opt.param_groups:
            g["lr"] = args.lr * min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * elapsed / args.seconds))
        z, x = batch()
        with torch.no_grad():
            feats = frozen(z)
        y = (head(feats) + 1) / 2
        mse = (y - x).pow(2).mean()
        perceptual = lpips(y * 2 - 1, x * 2 - 1).mean()
        loss = mse / 0.01 + args.lpips * perceptual
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        acc.append((mse.item(), perceptual.item()))
        step += 1
        if step % 50 == 0:
            m, p = np.mean(acc, axis=0)
            log.writerow([step, round(elapsed, 1), f"{m:.5f}", f"{p:.4f}"])
            print(f"step {step} {elapsed:.0f}s mse {m:.5f} (PSNR {-10 * np.log10(m):.2f}) lpips {p:.4f}", flush=True)
            acc = []
    prior = bundle.prior
    prior.cfg = cfg
    prior.texture = head.eval().requires_grad_(False)
    info = dict(
        bundle.info,
        texture=dict(
            steps=step,
            seconds=round(time.time() - t0),
            lpips=args.lpips,
            from_layer=args.from_layer,
            batch=args.batch,
            device="cpu",
            command=" ".join(sys.argv),
            previous_stage=previous,
        ),
    )
    digest = save_prior(args.out or args.prior, prior, info)
    print(f"{step} steps -> {args.out or args.prior} (sha256 {digest[:16]})")


def graft(prior_path: Path, donor_path: Path, out: Path) -> None:
    """Give the prior at prior_path the texture decoder trained beside another prior (the
    head never sees the UNet, so it does not depend on which one), with its training record."""
    bundle, donor = load_prior(prior_path), load_prior(donor_path)
    prior = bundle.prior
    prior.cfg = replace(
        prior.cfg, texture_from=donor.prior.cfg.texture_from, texture_widths=donor.prior.cfg.texture_widths
    )
    prior.texture = donor.prior.texture
    digest = save_prior(out, prior, dict(bundle.info, texture=donor.info.get("texture")))
    print(f"texture decoder of {donor_path} -> {out} (sha256 {digest[:16]})")


if __name__ == "__main__":
    main()
