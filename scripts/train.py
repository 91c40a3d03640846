"""Train the shipped models: the latent autoencoder, then the variable-rate compressor.

    # GPU window (see docs/model_card.md for the exact run that made the weights)
    python -m scripts.train --data .data/trainpack.npz --out codec/weights/dpc-v1.safetensors \
        --ae-seconds 210 --compressor-seconds 300 --device cuda

    # CPU, a few minutes, for a smoke run
    python -m scripts.train --data ../shared/data/train --out /tmp/w.safetensors \
        --ae-seconds 60 --compressor-seconds 60 --crop 128 --batch 8

Stage 1 (autoencoder): MSE + a small KL term; the decoder sees posterior samples.
Stage 2 (compressor, autoencoder frozen): per sample a random quality level l,
loss = bpp + lambda_l * 255^2 * D(D(latent_hat), x), rate from the entropy
models' likelihoods, D = MSE, or with --msssim-weight w the mix
(1 - w) MSE + w * MSSSIM_TO_MSE * (1 - MS-SSIM). Each stage runs for a wall-clock
budget with a cosine learning-rate decay over that budget; losses go to a CSV
beside the output (appended on resume) and a plot of it (OUT.log.png) at the end.

Resumable: every --checkpoint-every seconds, and between the stages, the models,
optimizers, step, elapsed time and RNG states go to OUT.ckpt.safetensors (no
pickle); rerun the same command with --resume to continue where it stopped (a
time-limited GPU window that ends mid-stage loses at most that interval). On a
GPU, --amp bf16 and --compile are available; on the CPU keep fp32 (bf16 autocast
is very slow there).
"""

import argparse
import contextlib
import csv
import json
import math
import platform
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim
from safetensors.torch import load_file, save_file

# MS-SSIM in MSE units: at ~0.1 bpp on Kodak the shipped model has MSE 0.0026 (25.9 dB)
# and 1 - MS-SSIM 0.12, so this factor (0.02) makes both terms of the mix about equal there.
from codec.effort import MSSSIM_TO_MSE
from codec.entropy.compressor import CompressorConfig
from codec.entropy.training import TrainableCompressor
from codec.model_files import save_model
from codec.models.autoencoder import AutoencoderConfig, LatentAutoencoder
from scripts.checkpoints import TimedCheckpoint, read_meta
from scripts.common import CsvLog, command_line, find_images, likelihood_bits, load_downscaled, pack_images, set_lr

# Rate-distortion trade-off per quality level (1 = lowest rate); loss = bpp + lambda * 255^2 * D.
LAMBDAS = [0.00015 * 2**k for k in range(6)]


def load_images(source: Path, min_side: int) -> list[np.ndarray]:
    """A data pack (.npz from `python -m scripts.pack_data`) or a folder of photos -> list of HxWx3 uint8."""
    if source.suffix == ".npz":
        images = [np.asarray(im) for im in pack_images(source)]
    else:
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


class Checkpointer(TimedCheckpoint):
    """Saves the run every `every` seconds and on demand (with the crop sampler's RNG state);
    restores it on --resume; ends the process after --stop-after-steps."""

    def __init__(self, path: Path, every: float, sampler, stop_after_steps: int = 0):
        super().__init__(path, every, sampler.rng)
        self.stop_after, self.steps = stop_after_steps, 0  # steps taken by this process

    def step(self) -> bool:
        """Count one optimizer step; True when --stop-after-steps says this process is done."""
        self.steps += 1
        return bool(self.stop_after) and self.steps >= self.stop_after

    def stop(self, parts: dict, meta: dict) -> None:
        self.maybe_save(parts, meta, force=True)
        raise SystemExit(f"stopped after {self.steps} steps; continue with --resume ({self.path})")

    def maybe_save(self, parts: dict, meta: dict, force: bool = False) -> None:
        if force or self.due():
            self.save(parts, meta)

    def after_step(self, step: int, parts: dict, meta: dict) -> None:
        """After a stage's optimizer step `step`: count it (step()); every 10th step, and at
        --stop-after-steps, save `meta` when due (maybe_save), then stop there (stop())."""
        stop = self.step()
        if step % 10 == 0 or stop:
            self.maybe_save(parts, meta)
            if stop:
                self.stop(parts, meta)


def autocast(args):
    if args.amp == "bf16":
        return torch.autocast(device_type=torch.device(args.device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_autoencoder(ae, sampler, args, log, ckpt, resume: dict | None = None) -> dict:
    opt = torch.optim.Adam(ae.parameters(), lr=args.lr)
    step, ema, elapsed0 = 0, None, 0.0
    if resume:
        meta = ckpt.load({"ae": ae, "opt": opt}, args.device)
        step, ema, elapsed0 = meta["step"], meta["ema"], meta["elapsed"]
        log("autoencoder", step, elapsed0, resumed=1)
    start = time.time() - elapsed0
    while (elapsed := time.time() - start) < args.ae_seconds:
        set_lr(opt, cosine_lr(args.lr, elapsed / args.ae_seconds))
        x = sampler.batch(args.batch)
        with autocast(args):
            x_hat, kl = ae(x)
        mse = F.mse_loss(x_hat.float(), x)
        loss = mse + args.kl_weight * kl.float().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 10 == 0:  # .item() synchronises the GPU: not every step
            ema = mse.item() if ema is None else 0.9 * ema + 0.1 * mse.item()
        if step % 100 == 0:
            log("autoencoder", step, elapsed, loss=loss.item(), mse=mse.item(), psnr=psnr(ema), kl=kl.mean().item())
        meta = {"stage": "autoencoder", "step": step, "elapsed": time.time() - start, "ema": ema}
        ckpt.after_step(step, {"ae": ae, "opt": opt}, meta)
    if ema is None:  # a budget too short for 10 steps
        ema = F.mse_loss(x_hat.float(), x).item()
    return {"steps": step, "seconds": round(time.time() - start, 1), "final_psnr_train_db": round(psnr(ema), 2)}


def train_compressor(ae, comp, sampler, args, log, ckpt, autoencoder_info: dict, resume: dict | None = None) -> dict:
    ae.eval().requires_grad_(False)
    aux_params = [p for n, p in comp.named_parameters() if n.endswith("quantiles")]
    main_params = [p for n, p in comp.named_parameters() if not n.endswith("quantiles")]
    opt = torch.optim.Adam(main_params, lr=args.lr)
    aux_opt = torch.optim.Adam(aux_params, lr=1e-3)
    lambdas = torch.tensor(LAMBDAS, device=args.device)
    parts = {"ae": ae, "comp": comp, "opt": opt, "aux_opt": aux_opt}
    step, stats, elapsed0 = 0, {}, 0.0
    if resume and resume.get("step"):
        meta = ckpt.load(parts, args.device)
        step, elapsed0 = meta["step"], meta["elapsed"]
        stats = {int(k): tuple(v) for k, v in meta["stats"].items()}
        log("compressor", step, elapsed0, resumed=1)
    start = time.time() - elapsed0
    while (elapsed := time.time() - start) < args.compressor_seconds:
        set_lr(opt, cosine_lr(args.lr, elapsed / args.compressor_seconds))
        x = sampler.batch(args.batch)
        levels = torch.randint(0, len(LAMBDAS), (x.shape[0],), device=x.device)
        with torch.no_grad(), autocast(args):
            latent = ae.encode(x).float()
        with autocast(args):
            latent_hat, y_lik, z_lik = comp(latent, levels)
            x_hat = ae.decode(latent_hat)
        x_hat, y_lik, z_lik = x_hat.float(), y_lik.float(), z_lik.float()  # the rate in fp32 always
        pixels = x.shape[2] * x.shape[3]
        bits = likelihood_bits(y_lik) + likelihood_bits(z_lik)
        bpp = bits / pixels
        mse = (x_hat - x).pow(2).mean((1, 2, 3))
        distortion = mse
        if args.msssim_weight > 0:
            sim = ms_ssim(x_hat.clamp(0, 1), x, data_range=1.0, size_average=False)
            distortion = (1 - args.msssim_weight) * mse + args.msssim_weight * MSSSIM_TO_MSE * (1 - sim)
        loss = (bpp + lambdas[levels] * 255**2 * distortion).mean()
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
        meta = {"stage": "compressor", "step": step, "elapsed": time.time() - start, "stats": stats}
        ckpt.after_step(step, parts, meta | {"autoencoder_info": autoencoder_info})
    return {
        "steps": step,
        "seconds": round(time.time() - start, 1),
        "final_train": {
            f"q{lv + 1}": {"bpp": round(b, 4), "psnr_db": round(psnr(m), 2)} for lv, (b, m) in sorted(stats.items())
        },
    }


def plot_log(csv_path: Path, png_path: Path) -> None:
    """The training log as curves: autoencoder PSNR; compressor bpp and PSNR per level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(open(csv_path)))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    ae = [(int(r["step"]), json.loads(r["metrics"])) for r in rows if r["stage"] == "autoencoder"]
    ae = [(s, m["psnr"]) for s, m in ae if "psnr" in m]
    if ae:
        axes[0].plot(*zip(*ae, strict=True))
    axes[0].set(title="autoencoder", xlabel="step", ylabel="PSNR (dB, training crops)")
    comp = [(int(r["step"]), json.loads(r["metrics"])) for r in rows if r["stage"] == "compressor"]
    for level in range(1, len(LAMBDAS) + 1):
        pts = [
            (s, *map(float, m[f"q{level}"].replace("bpp", "").replace("dB", "").split("/")))
            for s, m in comp
            if f"q{level}" in m
        ]
        if pts:
            steps, bpp, db = zip(*pts, strict=True)
            axes[1].plot(steps, bpp, label=f"q{level}")
            axes[2].plot(steps, db, label=f"q{level}")
    axes[1].set(title="compressor: rate", xlabel="step", ylabel="bpp (training crops)")
    axes[2].set(title="compressor: distortion", xlabel="step", ylabel="PSNR (dB)")
    if comp:
        axes[1].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


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
    ap.add_argument("--msssim-weight", type=float, default=0.0, help="MS-SSIM share of the distortion (0 = MSE)")
    ap.add_argument("--amp", choices=("none", "bf16"), default="none", help="autocast precision (GPU; default none)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the models (GPU)")
    ap.add_argument("--checkpoint-every", type=float, default=60.0, help="seconds between checkpoints")
    ap.add_argument("--resume", action="store_true", help="continue from OUT.ckpt.safetensors")
    ap.add_argument(
        "--stop-after-steps", type=int, default=0, help="end this process after N steps, checkpointed (tests, windows)"
    )
    args = ap.parse_args()
    if not 0 <= args.msssim_weight <= 1:
        ap.error("--msssim-weight must be in [0, 1]")
    if args.crop % 64:
        ap.error("--crop must be a multiple of 64 (the models downsample by 64)")
    if args.msssim_weight > 0 and args.crop <= 160:
        ap.error("--msssim-weight needs --crop above 160 (MS-SSIM downsamples 4 times)")

    torch.manual_seed(args.seed)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    images = load_images(args.data, args.crop)
    sampler = CropSampler(images, args.crop, torch.device(args.device), args.seed)
    log_path = args.out.with_suffix(".log.csv")
    ckpt_path = args.out.with_suffix(".ckpt.safetensors")
    if args.resume and not ckpt_path.exists():
        ap.error(f"--resume: no checkpoint {ckpt_path}")
    resume = read_meta(ckpt_path) if args.resume else None
    log_file = CsvLog(log_path, ["stage", "step", "seconds", "metrics"], append=bool(resume))

    def log(stage, step, elapsed, **metrics):
        log_file.row(stage, step, round(elapsed, 1), json.dumps(metrics))
        print(
            stage,
            step,
            f"{elapsed:.0f}s",
            " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()),
            flush=True,
        )

    ae = LatentAutoencoder(AutoencoderConfig()).to(args.device, memory_format=torch.channels_last)
    comp = TrainableCompressor(CompressorConfig(levels=len(LAMBDAS))).to(args.device, memory_format=torch.channels_last)
    if args.compile:  # in place: parameter names (and so checkpoints and weights) stay the same
        ae.compile()
        for part in (comp.g_a, comp.g_s, comp.h_a, comp.h_s):
            part.compile()
    ckpt = Checkpointer(ckpt_path, args.checkpoint_every, sampler, args.stop_after_steps)
    info = {
        "data": str(args.data),
        "images": len(images),
        "crop": args.crop,
        "batch": args.batch,
        "lambdas": LAMBDAS,
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu",
        "torch": torch.__version__,
        "command": command_line(),
        "seed": args.seed,
        "msssim_weight": args.msssim_weight,
        "amp": args.amp,
    }
    if resume and resume["stage"] == "compressor":
        ckpt.load({"ae": ae}, args.device)  # the finished stage 1
        info["autoencoder"] = resume["autoencoder_info"]
    elif args.init_autoencoder:
        ae.load_state_dict(load_file(str(args.init_autoencoder), device=str(args.device)))
        info["autoencoder"] = {"from": str(args.init_autoencoder)}
    else:
        info["autoencoder"] = train_autoencoder(ae, sampler, args, log, ckpt, resume)
        resume = None
    if info["autoencoder"].get("from") is None:
        state = {k: v.contiguous() for k, v in ae.state_dict().items()}
        save_file(state, str(args.out.with_name(args.out.stem + ".autoencoder.safetensors")))
    if resume is None:  # stage boundary: a resume from here starts the compressor afresh
        meta = {"stage": "compressor", "step": 0, "elapsed": 0.0, "stats": {}, "autoencoder_info": info["autoencoder"]}
        ckpt.save({"ae": ae}, meta)
    info["compressor"] = train_compressor(ae, comp, sampler, args, log, ckpt, info["autoencoder"], resume)
    log_file.close()
    plot_log(log_path, args.out.with_suffix(".log.png"))
    ae, comp = ae.cpu().float(), comp.cpu().float()
    digest = save_model(
        args.out, ae.to(memory_format=torch.contiguous_format), comp.to(memory_format=torch.contiguous_format), info
    )
    ckpt_path.unlink(missing_ok=True)  # the run is complete: its result is the weight file
    print(json.dumps(info, indent=1))
    print(f"wrote {args.out} sha256 {digest}")


if __name__ == "__main__":
    main()
