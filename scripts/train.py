"""Train the shipped models: the latent autoencoder, then the variable-rate compressor.

    # GPU window (see docs/model_card.md for the exact run that made the weights)
    python scripts/train.py --data .data/trainpack.npz --out codec/weights/dpc-v1.safetensors \
        --ae-seconds 210 --compressor-seconds 300 --device cuda

    # CPU, a few minutes, for a smoke run
    python scripts/train.py --data ../shared/data/train --out /tmp/w.safetensors \
        --ae-seconds 60 --compressor-seconds 60 --crop 128 --batch 8

Stage 1 (autoencoder): MSE + a small KL term; the decoder sees posterior samples.
Stage 2 (compressor, autoencoder frozen): per sample a random quality level l,
loss = bpp + lambda_l * 255^2 * MSE(D(latent_hat), x), rate from the entropy
models' likelihoods. Each stage runs for a wall-clock budget with a cosine
learning-rate decay over that budget; losses go to a CSV beside the output.
"""

import argparse
import csv
import io
import json
import math
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from codec.autoencoder import AutoencoderConfig, LatentAutoencoder  # noqa: E402
from codec.compressor import CompressorConfig, HyperpriorCompressor  # noqa: E402
from codec.model_files import save_model  # noqa: E402

# Rate-distortion trade-off per quality level (1 = lowest rate); loss = bpp + lambda * 255^2 * MSE.
LAMBDAS = [0.00015 * 2**k for k in range(6)]


def load_images(source: Path, min_side: int) -> list[np.ndarray]:
    """A data pack (.npz from pack_data.py) or a folder of photos -> list of HxWx3 uint8."""
    if source.suffix == ".npz":
        pack = np.load(source)
        blob, offsets = pack["blob"].tobytes(), pack["offsets"]
        raw = [blob[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
        images = [np.asarray(Image.open(io.BytesIO(r)).convert("RGB")) for r in raw]
    else:
        from pack_data import find_images, load_downscaled

        images = [np.asarray(load_downscaled(p, 256)) for p in find_images(source)]
    return [im for im in images if min(im.shape[:2]) >= min_side]


class CropSampler:
    """Random crops with random flips, drawn from images held on the training device."""

    def __init__(self, images: list[np.ndarray], crop: int, device: torch.device, seed: int):
        self.images = [torch.from_numpy(im).permute(2, 0, 1).contiguous().to(device) for im in images]
        self.crop = crop
        self.rng = random.Random(seed)

    def batch(self, size: int) -> torch.Tensor:
        crops = []
        for _ in range(size):
            im = self.images[self.rng.randrange(len(self.images))]
            top = self.rng.randrange(im.shape[1] - self.crop + 1)
            left = self.rng.randrange(im.shape[2] - self.crop + 1)
            c = im[:, top : top + self.crop, left : left + self.crop]
            if self.rng.random() < 0.5:
                c = c.flip(2)
            crops.append(c)
        x = torch.stack(crops).float().div_(255.0)
        return x.contiguous(memory_format=torch.channels_last)


def cosine_lr(base: float, progress: float, warmup: float = 0.03) -> float:
    if progress < warmup:
        return base * progress / warmup
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def psnr(mse: float) -> float:
    return 10 * math.log10(1.0 / max(mse, 1e-10))


def train_autoencoder(ae, sampler, args, log) -> dict:
    opt = torch.optim.Adam(ae.parameters(), lr=args.lr)
    start, step, ema = time.time(), 0, None
    while (elapsed := time.time() - start) < args.ae_seconds:
        for g in opt.param_groups:
            g["lr"] = cosine_lr(args.lr, elapsed / args.ae_seconds)
        x = sampler.batch(args.batch)
        x_hat, kl = ae(x)
        mse = F.mse_loss(x_hat, x)
        loss = mse + args.kl_weight * kl.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 10 == 0:  # .item() synchronises the GPU: not every step
            ema = mse.item() if ema is None else 0.9 * ema + 0.1 * mse.item()
        if step % 100 == 0:
            log("autoencoder", step, elapsed, loss=loss.item(), mse=mse.item(), psnr=psnr(ema), kl=kl.mean().item())
    return {"steps": step, "seconds": round(time.time() - start, 1), "final_psnr_train_db": round(psnr(ema), 2)}


def train_compressor(ae, comp, sampler, args, log) -> dict:
    ae.eval().requires_grad_(False)
    aux_params = [p for n, p in comp.named_parameters() if n.endswith("quantiles")]
    main_params = [p for n, p in comp.named_parameters() if not n.endswith("quantiles")]
    opt = torch.optim.Adam(main_params, lr=args.lr)
    aux_opt = torch.optim.Adam(aux_params, lr=1e-3)
    lambdas = torch.tensor(LAMBDAS, device=args.device)
    start, step = time.time(), 0
    stats = {}
    while (elapsed := time.time() - start) < args.compressor_seconds:
        for g in opt.param_groups:
            g["lr"] = cosine_lr(args.lr, elapsed / args.compressor_seconds)
        x = sampler.batch(args.batch)
        levels = torch.randint(0, len(LAMBDAS), (x.shape[0],), device=x.device)
        with torch.no_grad():
            latent = ae.encode(x)
        latent_hat, y_lik, z_lik = comp(latent, levels)
        x_hat = ae.decode(latent_hat)
        pixels = x.shape[2] * x.shape[3]
        bits = -(y_lik.clamp_min(1e-9).log2().sum((1, 2, 3)) + z_lik.clamp_min(1e-9).log2().sum((1, 2, 3)))
        bpp = bits / pixels
        mse = (x_hat - x).pow(2).mean((1, 2, 3))
        loss = (bpp + lambdas[levels] * 255**2 * mse).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main_params, 5.0)
        opt.step()
        aux_loss = comp.entropy_bottleneck.loss()
        aux_opt.zero_grad(set_to_none=True)
        aux_loss.backward()
        aux_opt.step()
        step += 1
        if step % 10 == 0:  # .item() synchronises the GPU: not every step
            bpp_np, mse_np, lv_np = bpp.detach().cpu().numpy(), mse.detach().cpu().numpy(), levels.cpu().numpy()
            for lv in set(lv_np.tolist()):
                b, m = float(bpp_np[lv_np == lv].mean()), float(mse_np[lv_np == lv].mean())
                pb, pm = stats.get(lv, (b, m))
                stats[lv] = (0.9 * pb + 0.1 * b, 0.9 * pm + 0.1 * m)
        if step % 100 == 0:
            per_level = {f"q{lv + 1}": f"{b:.3f}bpp/{psnr(m):.1f}dB" for lv, (b, m) in sorted(stats.items())}
            log("compressor", step, elapsed, loss=loss.item(), aux=aux_loss.item(), **per_level)
    return {
        "steps": step,
        "seconds": round(time.time() - start, 1),
        "final_train": {
            f"q{lv + 1}": {"bpp": round(b, 4), "psnr_db": round(psnr(m), 2)} for lv, (b, m) in sorted(stats.items())
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="data pack (.npz) or folder of photos")
    ap.add_argument("--out", type=Path, required=True, help="output weight file (.safetensors)")
    ap.add_argument("--ae-seconds", type=float, default=1800)
    ap.add_argument("--compressor-seconds", type=float, default=1800)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--kl-weight", type=float, default=1e-5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--init-autoencoder", type=Path, help="skip stage 1: autoencoder state dict (.safetensors) from an earlier run"
    )
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    images = load_images(args.data, args.crop)
    sampler = CropSampler(images, args.crop, torch.device(args.device), args.seed)
    log_path = args.out.with_suffix(".log.csv")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = open(log_path, "w", newline="")
    writer = csv.writer(log_file)
    writer.writerow(["stage", "step", "seconds", "metrics"])

    def log(stage, step, elapsed, **metrics):
        writer.writerow([stage, step, round(elapsed, 1), json.dumps(metrics)])
        log_file.flush()
        print(
            stage,
            step,
            f"{elapsed:.0f}s",
            " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()),
            flush=True,
        )

    ae = LatentAutoencoder(AutoencoderConfig()).to(args.device, memory_format=torch.channels_last)
    comp = HyperpriorCompressor(CompressorConfig(levels=len(LAMBDAS))).to(
        args.device, memory_format=torch.channels_last
    )
    info = {
        "data": str(args.data),
        "images": len(images),
        "crop": args.crop,
        "batch": args.batch,
        "lambdas": LAMBDAS,
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu",
        "torch": torch.__version__,
        "command": " ".join(sys.argv),
    }
    if args.init_autoencoder:
        ae.load_state_dict(load_file(str(args.init_autoencoder), device=str(args.device)))
        info["autoencoder"] = {"from": str(args.init_autoencoder)}
    else:
        info["autoencoder"] = train_autoencoder(ae, sampler, args, log)
        state = {k: v.contiguous() for k, v in ae.state_dict().items()}
        save_file(state, str(args.out.with_name(args.out.stem + ".autoencoder.safetensors")))
    info["compressor"] = train_compressor(ae, comp, sampler, args, log)
    ae, comp = ae.cpu().float(), comp.cpu().float()
    digest = save_model(
        args.out, ae.to(memory_format=torch.contiguous_format), comp.to(memory_format=torch.contiguous_format), info
    )
    print(json.dumps(info, indent=1))
    print(f"wrote {args.out} sha256 {digest}")


if __name__ == "__main__":
    main()
