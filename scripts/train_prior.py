"""Train the diffusion prior on the frozen autoencoder and compressor (CPU or GPU).

    python -m scripts.train_prior .data/trainpack.npz --seconds 2400 \\
        --out codec/weights/dpc-prior-v1.safetensors --log rd/prior_train.csv

1. Every training photo (a pack from `python -m scripts.pack_data`) goes through the shipped
   codec once: its autoencoder latent and, for every quality level, the coarse latent
   the decoder reconstructs (Codec.stages.latent_pairs). Cached in --cache (float16;
   scripts/common.py, latent_cache).
2. Per-level residual scales (std of latent - coarse) and the latent scale are measured.
3. The UNet learns v-prediction of the normalised residual on random 32x32 latent crops
   (horizontal flips), uniform level and timestep; the condition is dropped with
   probability --drop (classifier-free guidance). AdamW, warm-up then cosine decay over
   the wall-clock budget, EMA weights are saved. fp32 (bf16 is very slow on CPUs).
4. Loss on held-out photos is logged to CSV with the training loss.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from codec.model_files import load_prior, save_prior
from codec.models.prior import BETA_SCHEDULES, LatentPrior, PriorConfig
from scripts.common import (
    CsvLog,
    command_line,
    ema_update,
    latent_cache,
    random_box,
    seed_and_threads,
    set_lr,
    warmup_cosine,
)


class Crops:
    """Random (latent, coarse, level) crops of `size` latent px with horizontal flips."""

    def __init__(self, latents, coarses, size: int, seed: int):
        keep = [i for i, x in enumerate(latents) if min(x.shape[1:]) >= size]
        self.latents = [torch.from_numpy(latents[i].astype(np.float32)) for i in keep]
        self.coarses = [torch.from_numpy(coarses[i].astype(np.float32)) for i in keep]
        self.size = size
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xs, cs, levels = [], [], []
        for _ in range(n):
            i = self.rng.integers(len(self.latents))
            x, c = self.latents[i], self.coarses[i]
            level = int(self.rng.integers(c.shape[0]))
            top, left = random_box(self.rng, x.shape[1], x.shape[2], self.size)
            xc = x[:, top : top + self.size, left : left + self.size]
            cc = c[level, :, top : top + self.size, left : left + self.size]
            if self.rng.random() < 0.5:
                xc, cc = xc.flip(-1), cc.flip(-1)
            xs.append(xc)
            cs.append(cc)
            levels.append(level)
        return torch.stack(xs), torch.stack(cs), torch.tensor(levels)


def residual_scales(latents, coarses) -> tuple[float, tuple[float, ...]]:
    x = np.concatenate([a.reshape(a.shape[0], -1) for a in latents], axis=1).astype(np.float64)
    levels = coarses[0].shape[0]
    res = [
        np.concatenate([(x_i[None] - c_i)[lv].reshape(-1) for x_i, c_i in zip(latents, coarses, strict=True)]).astype(
            np.float64
        )
        for lv in range(levels)
    ]
    return float(x.std()), tuple(float(r.std()) for r in res)


def v_loss(prior, sched, x, c, levels, drop: float, gen: torch.Generator, t_power: float = 1.0) -> torch.Tensor:
    """MSE of the v-prediction for the normalised residual of a batch.

    Timesteps are drawn as T * u ** t_power (u uniform): t_power > 1 spends more of
    the training on low noise levels, where the fine detail is decided."""
    scales = torch.tensor(prior.cfg.residual_scales)[levels][:, None, None, None]
    r = (x - c) / scales
    noise = torch.randn(r.shape, generator=gen)
    u = torch.rand(r.shape[0], generator=gen)
    t = (u**t_power * prior.cfg.train_timesteps).long().clamp(max=prior.cfg.train_timesteps - 1)
    noisy = sched.add_noise(r, noise, t)
    target = sched.get_velocity(r, noise, t)
    cond = prior.condition(c)
    labels = levels + 1
    dropped = torch.rand(r.shape[0], generator=gen) < drop
    cond = torch.where(dropped[:, None, None, None], torch.zeros_like(cond), cond)
    labels = torch.where(dropped, torch.zeros_like(labels), labels)
    return torch.nn.functional.mse_loss(prior(noisy, t, cond, labels), target)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pack", type=Path, help=".npz from `python -m scripts.pack_data`")
    ap.add_argument("--out", type=Path, default=Path("codec/weights/dpc-prior-v1.safetensors"))
    ap.add_argument("--cache", type=Path, default=Path(".data/prior_latents.npz"))
    ap.add_argument("--log", type=Path, default=Path("rd/prior_train.csv"))
    ap.add_argument("--seconds", type=float, default=2400, help="wall-clock training budget")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0 = budget only)")
    ap.add_argument("--snapshot", type=int, default=0, help="also save the EMA weights after this many steps")
    ap.add_argument("--snapshot-out", type=Path, default=Path(".data/prior-snapshot.safetensors"))
    ap.add_argument("--schedule", choices=sorted(BETA_SCHEDULES), default="cosine")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=32, help="latent crop side (x8 image px)")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--drop", type=float, default=0.1, help="condition dropout (for guidance)")
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--val", type=int, default=32, help="held-out photos")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--t-power", type=float, default=1.0, help="timestep density T*u^p: p > 1 favours low noise")
    ap.add_argument("--init", type=Path, help="continue from these prior weights (config and scales kept)")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    seed_and_threads(args)

    latents, coarses = latent_cache(args.pack, args.cache)
    train = Crops(latents[: -args.val], coarses[: -args.val], args.crop, args.seed)
    val = Crops(latents[-args.val :], coarses[-args.val :], args.crop, args.seed + 1)
    val_batch = val.batch(64)
    latent_scale, res_scales = residual_scales(latents[: -args.val], coarses[: -args.val])
    print(f"latent std {latent_scale:.3f}; residual std per level {[round(s, 3) for s in res_scales]}")
    previous = {}
    if args.init:  # a further stage: the first stage's config and scales are kept
        bundle = load_prior(args.init)
        prior, previous = bundle.prior.train().requires_grad_(True), bundle.info
        cfg = prior.cfg
        print(f"continuing from {args.init}")
    else:
        cfg = PriorConfig(
            levels=len(res_scales), schedule=args.schedule, latent_scale=latent_scale, residual_scales=res_scales
        )
        prior = LatentPrior(cfg).train()
    ema = _copy(prior).eval().requires_grad_(False)
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(num_train_timesteps=cfg.train_timesteps, beta_schedule=BETA_SCHEDULES[cfg.schedule])
    opt = torch.optim.AdamW(prior.parameters(), lr=args.lr, weight_decay=1e-4)
    params = sum(p.numel() for p in prior.parameters())
    print(f"prior: {params / 1e6:.2f} M parameters, schedule {cfg.schedule}, {len(train.latents)} training photos")

    log = CsvLog(args.log, ["step", "seconds", "lr", "train_loss", "val_loss"])
    gen = torch.Generator().manual_seed(args.seed)
    t0, step, running, snapshot_done = time.time(), 0, [], args.snapshot <= 0
    info = lambda elapsed: {  # noqa: E731
        "steps": step,
        "seconds": round(elapsed),
        "batch": args.batch,
        "crop": args.crop,
        "schedule": cfg.schedule,
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "train_photos": len(train.latents),
        "t_power": args.t_power,
        "command": command_line(),
        "previous_stage": previous,
    }
    while True:
        elapsed = time.time() - t0
        if elapsed >= args.seconds or (args.max_steps and step >= args.max_steps):
            break
        frac = max(elapsed / args.seconds, step / args.max_steps if args.max_steps else 0.0)
        lr = set_lr(opt, warmup_cosine(args.lr, step, frac, warmup=200))
        x, c, levels = train.batch(args.batch)
        loss = v_loss(prior, sched, x, c, levels, args.drop, gen, args.t_power)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(prior.parameters(), 1.0)
        opt.step()
        ema_update(ema, prior, step, args.ema)
        running.append(loss.item())
        step += 1
        if step % 200 == 0:
            with torch.no_grad():
                vgen = torch.Generator().manual_seed(1234)
                vl = v_loss(ema, sched, *val_batch, 0.0, vgen).item()
            log.row(step, round(elapsed, 1), f"{lr:.2e}", f"{np.mean(running):.4f}", f"{vl:.4f}")
            print(f"step {step} {elapsed:.0f}s lr {lr:.1e} train {np.mean(running):.4f} val {vl:.4f}", flush=True)
            running = []
        if not snapshot_done and step >= args.snapshot:
            save_prior(args.snapshot_out, _copy(ema), info(elapsed))
            snapshot_done = True
            print(f"snapshot after {step} steps -> {args.snapshot_out}", flush=True)
    log.close()
    digest = save_prior(args.out, ema, info(time.time() - t0))
    print(f"{step} steps in {time.time() - t0:.0f} s -> {args.out} (sha256 {digest[:16]})")


def _copy(prior: LatentPrior) -> LatentPrior:
    c = LatentPrior(prior.cfg)
    c.load_state_dict(prior.state_dict())
    return c.requires_grad_(False)


if __name__ == "__main__":
    main()
