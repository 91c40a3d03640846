"""Probe: how many of the anchors' bits would a channel-conditional context save (#13)?

    python -m scripts.probe_channel_context ../shared/data/train --slices 4 --seconds 300 \\
        --threads 2 --log rd/channel_context_probe.csv

A measurement, not a model that ships. The checkerboard context (codec/entropy/context.py)
refines the non-anchors from the anchors around them; the anchors, half of y, are still coded
with the hyperprior alone. Channel-conditional slices (Minnen & Singh 2020; ELIC's SCCTX) would
code the anchors in --slices groups of channels, each group's means and scales refined from the
anchors of the groups before it (a 5 x 5 convolution over them, and a 1 x 1 network over that
and the group's hyperprior means and log-scales, its last layer at zero: it starts as today).
This trains just those networks on the frozen y of the shipped weights (the context training's
y cache and batches, scripts/common.py; the validation split held out) and logs the share of the anchors' bits
(uniform-noise proxy, all groups, the first included) they save. A format with slices is worth
building only if that share, times the anchors' share of the file, beats the bytes the extra
sections cost.

The channels are ordered by the spread of their gained values at a middle level (largest first),
so the groups coded first are the ones that carry the most.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from codec.effort import gaussian_bits
from codec.entropy.compressor import SCALE_MIN
from codec.entropy.context import anchor_mask
from codec.model_files import DEFAULT_WEIGHTS, LEGACY_WEIGHTS, load_model
from scripts.common import (
    CsvLog,
    YCrops,
    build_y_cache,
    hyper,
    parse_training_args,
    set_lr,
    validation_names,
    warmup_cosine,
)


class SliceContext(nn.Module):
    """Group k's (means, scales) deltas from the anchors of groups 0..k-1 (gained domain)."""

    def __init__(self, before: int, width: int, features: int = 64, hidden: int = 128):
        super().__init__()
        self.anchors = nn.Conv2d(before, features, 5, padding=2)
        self.params = nn.Sequential(
            nn.Conv2d(features + 2 * width, hidden, 1),
            nn.SiLU(),
            nn.Conv2d(hidden, hidden, 1),
            nn.SiLU(),
            nn.Conv2d(hidden, 2 * width, 1),
        )
        nn.init.zeros_(self.params[-1].weight)
        nn.init.zeros_(self.params[-1].bias)

    def forward(self, anchors_before, means, scales, gain_before, gain):
        x = torch.cat([self.anchors(anchors_before / gain_before), means / gain, torch.log(scales)], dim=1)
        d_means, d_log_scales = self.params(x).chunk(2, dim=1)
        return means + d_means * gain, scales * torch.exp(d_log_scales.clamp(-8, 8))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("train_dir", type=Path, help="folder of training photos (../shared/data/train)")
    ap.add_argument("--cache", type=Path, default=Path(".data/decoder_latents.npz"))
    ap.add_argument("--y-cache", type=Path, default=Path(".data/context_y.npz"))
    ap.add_argument("--slices", type=int, default=4, help="channel groups of the anchors")
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--log", type=Path, required=True, help="CSV log")
    args = parse_training_args(ap)

    # the y cache holds dpc-v1's y, which dpc-v2 shares (same g_a)
    names, ys = build_y_cache(args.train_dir, args.cache, args.y_cache, LEGACY_WEIGHTS[0])
    val = validation_names(args.train_dir)
    train = [y for n, y in zip(names, ys, strict=True) if n not in val]
    comp = load_model(DEFAULT_WEIGHTS).compressor
    m = comp.cfg.y_channels
    if args.slices < 2 or m % args.slices:
        ap.error(f"--slices must divide {m} and be at least 2")
    width = m // args.slices
    gain = comp.gains(2.0)[0].flatten().numpy()
    spread = np.concatenate([y.reshape(m, -1) for y in train[:200]], axis=1).std(axis=1) * gain
    order = torch.as_tensor(np.argsort(-spread).copy())
    nets = nn.ModuleList(SliceContext(k * width, width) for k in range(1, args.slices))
    print(f"{len(train)} training photos; {sum(p.numel() for p in nets.parameters())} parameters", flush=True)
    opt = torch.optim.Adam(nets.parameters(), lr=args.lr)
    batches = YCrops(train, 16, comp.cfg.levels, args.seed)

    log = CsvLog(args.log, ["step", "seconds", "anchor_bits_saved_percent"])
    step, t0, acc = 0, time.time(), []
    while (spent := time.time() - t0) < args.seconds:
        set_lr(opt, warmup_cosine(args.lr, step, spent / args.seconds, warmup=200, floor=0.05))
        y, levels = batches.batch(args.batch)
        v, means, scales, gy = (t[:, order] for t in hyper(comp, y, levels))
        mask = anchor_mask(*v.shape[2:])
        anchors = torch.where(mask, torch.round(v - means) + means, 0.0)
        noise = torch.rand_like(v) - 0.5
        keep = mask.expand(v.shape[0], width, *v.shape[2:])
        with_ctx, without = 0.0, 0.0
        for k in range(args.slices):
            part = slice(k * width, (k + 1) * width)
            c_means, c_scales = means[:, part], scales[:, part]
            if k:
                before = slice(0, k * width)
                c_means, c_scales = nets[k - 1](anchors[:, before], c_means, c_scales, gy[:, before], gy[:, part])
            u = v[:, part] + noise[:, part]
            with_ctx = with_ctx + gaussian_bits(u - c_means, c_scales.clamp_min(SCALE_MIN))[keep].sum()
            without = without + gaussian_bits(u - means[:, part], scales[:, part].clamp_min(SCALE_MIN))[keep].sum()
        opt.zero_grad(set_to_none=True)
        (with_ctx / y.numel()).backward()
        opt.step()
        step += 1
        acc.append((with_ctx.item(), float(without)))
        if step % 200 == 0:
            a = np.sum(acc, axis=0)
            saved = 100 * (1 - a[0] / a[1])
            log.row(step, round(spent, 1), f"{saved:.3f}")
            print(f"step {step} {spent:.0f}s: anchor bits -{saved:.2f} %", flush=True)
            acc = []
    log.close()


if __name__ == "__main__":
    main()
