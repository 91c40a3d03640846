"""Train the checkerboard context (codec/entropy/context.py) on the shipped compressor's frozen y.

    python -m scripts.train_context ../shared/data/train --seconds 1000 --threads 2 \\
        --out .data/dpc-ctx.safetensors --log rd/context_train.csv
    # shipped as codec/weights/dpc-v2.safetensors (with its .sha256 record)

1. y cache (--y-cache; scripts/common.py, build_y_cache): every photo of the perceptual
   decoder's cache (--cache, short side 288 px) cropped to its centre 256 x 384 (or 384 x 256)
   px, a multiple of 64, through the encoder and g_a: y (64, 16, 24) per photo. The validation
   split (BSDS500 `val`) is kept out of training; the saving on it, measured in file bytes, is
   printed at the end.
2. Steps: a batch of y crops (--crop y px, at multiples of 4 so that z's grid is the coder's),
   each at a random level (half the time a trained level 0..5, half the time uniform on the
   continuous scale, -4..7). z, and from it the hyperprior's means and scales, exactly as the
   coder derives them (frozen). The anchors are rounded about the hyperprior's means, as the
   coder does; the context predicts the non-anchors' means and scales from them. Loss: the
   non-anchors' bits under a Gaussian over unit bins, with uniform noise standing in for the
   rounding (Balle et al. 2018). Only the context learns: y, z and the anchors' bits are fixed.
3. --out: the --base weight file plus the context (codec.model_files.save_model_variant),
   with a new model id. The file's y symbols differ from --base's at the non-anchors only by
   where they are rounded (the quantisation error stays uniform within one step).
"""

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from codec import Codec
from codec.effort import gaussian_bits
from codec.entropy.compressor import CompressorConfig, HyperpriorCompressor
from codec.entropy.context import anchor_mask
from codec.model_files import LEGACY_WEIGHTS, load_model, save_model_variant
from scripts.common import (
    CsvLog,
    YCrops,
    build_y_cache,
    cached_photos,
    centre_crop,
    hyper,
    load_compressor_state,
    parse_training_args,
    set_lr,
    training_record,
    validation_names,
    warmup_cosine,
)

# the weight file's record of this training (training_record)
WHAT = "checkerboard context (codec/entropy/context.py) trained on the frozen compressor's y"
LOSS = "bits of the non-anchors (uniform-noise proxy)"


def non_anchor_bits(comp, y, levels, noise: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(bits of the non-anchors with the context, without it) summed over the batch."""
    v, means, scales, gy = hyper(comp, y, levels)
    mask = anchor_mask(*v.shape[2:])
    anchors = torch.where(mask, torch.round(v - means) + means, 0.0)
    c_means, c_scales = comp.context(anchors, means, scales, gy)
    u = torch.rand_like(v) - 0.5 if noise else None
    r_ctx = v - c_means + u if noise else torch.round(v - c_means)
    r_hyp = v - means + u if noise else torch.round(v - means)
    keep = ~mask.expand_as(v)
    lower = scales.new_tensor(0.11)
    with_ctx = gaussian_bits(r_ctx, c_scales.clamp_min(lower))[keep].sum()
    without = gaussian_bits(r_hyp, scales.clamp_min(lower))[keep].sum()
    return with_ctx, without.detach()


def file_bytes(codec: Codec, photos: list[np.ndarray], qualities) -> dict[int, int]:
    """{quality: total .dpc bytes over the photos}."""
    return {q: sum(len(codec.compress(Image.fromarray(p), q)) for p in photos) for q in qualities}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("train_dir", type=Path, help="folder of training photos (../shared/data/train)")
    ap.add_argument("--cache", type=Path, default=Path(".data/decoder_latents.npz"))
    ap.add_argument("--y-cache", type=Path, default=Path(".data/context_y.npz"))
    ap.add_argument("--base", type=Path, default=LEGACY_WEIGHTS[0], help="codec weights without a context (dpc-v1)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--log", type=Path, required=True, help="CSV log")
    ap.add_argument("--seconds", type=float, default=1200)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=16, help="y crop side (x16 image px; a multiple of 4)")
    ap.add_argument("--init", type=Path, help="continue from the context of this weight file (same --base)")
    ap.add_argument("--features", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=192)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--val-photos", type=int, default=24, help="validation photos for the file-byte check")
    args = parse_training_args(ap)

    names, ys = build_y_cache(args.train_dir, args.cache, args.y_cache, args.base)
    val = validation_names(args.train_dir)
    train = [y for n, y in zip(names, ys, strict=True) if n not in val]
    base = load_model(args.base)
    cfg = asdict(base.compressor.cfg)
    cfg.update(context_features=args.features, context_hidden=args.hidden)
    comp = HyperpriorCompressor(CompressorConfig(**cfg))
    missing = load_compressor_state(comp, base.compressor.state_dict())  # all but the CDF tables
    assert all(k.startswith("context.") for k in missing), missing
    previous = None
    if args.init:
        start = load_model(args.init)
        comp.context.load_state_dict(start.compressor.context.state_dict())
        previous = start.info.get("context")
    comp.eval().requires_grad_(False)
    comp.context.train().requires_grad_(True)
    batches = YCrops(train, args.crop, comp.cfg.levels, args.seed)
    print(f"{len(batches.arrays)} training photos; context {sum(p.numel() for p in comp.context.parameters())} params")
    opt = torch.optim.Adam(comp.context.parameters(), lr=args.lr)

    log = CsvLog(args.log, ["step", "seconds", "lr", "saving_percent"])
    step, t0, acc = 0, time.time(), []
    while (spent := time.time() - t0) < args.seconds:
        lr = set_lr(opt, warmup_cosine(args.lr, step, spent / args.seconds, warmup=200, floor=0.05))
        y, levels = batches.batch(args.batch)
        with_ctx, without = non_anchor_bits(comp, y, levels, noise=True)
        opt.zero_grad(set_to_none=True)
        (with_ctx / y.numel()).backward()
        opt.step()
        step += 1
        acc.append((with_ctx.item(), without.item()))
        if step % 100 == 0:
            a = np.sum(acc, axis=0)
            saving = 100 * (1 - a[0] / a[1])
            log.row(step, round(spent, 1), f"{lr:.2e}", f"{saving:.3f}")
            print(f"step {step} {spent:.0f}s lr {lr:.1e}: non-anchor bits -{saving:.2f} %", flush=True)
            acc = []
    log.close()

    record = training_record(
        WHAT, step, time.time() - t0, args.batch, len(batches.arrays), crop_y_px=args.crop, lr=args.lr, loss=LOSS
    )
    info = dict(base.info, context=record | {"previous_stage": previous})
    tensors = {f"compressor.context.{k}": v for k, v in comp.context.state_dict().items()}
    digest = save_model_variant(args.out, args.base, tensors, info, {"compressor": json.dumps(cfg)})
    print(f"{step} steps -> {args.out} (sha256 {digest[:16]}, model id {digest[:4]})", flush=True)

    # the saving in file bytes on validation photos: the base weights against the new ones
    photos = [centre_crop(p) for p in cached_photos(args.train_dir, args.cache, validation=True)[: args.val_photos]]
    with torch.inference_mode():
        before = file_bytes(Codec.load(args.base), photos, range(1, 7))
        after = file_bytes(Codec.load(args.out), photos, range(1, 7))
    for q in before:
        print(f"validation q{q}: {before[q]} -> {after[q]} bytes ({100 * (after[q] / before[q] - 1):+.2f} %)")


if __name__ == "__main__":
    main()
