"""Train the checkerboard context (codec/entropy/context.py) on the shipped compressor's frozen y.

    python scripts/train_context.py ../shared/data/train --seconds 1000 --threads 2 \\
        --out .data/dpc-ctx.safetensors --log rd/context_train.csv
    # shipped as codec/weights/dpc-v2.safetensors (with its .sha256 record)

1. y cache (--y-cache): every photo of scripts/train_perceptual_decoder.py's cache (short
   side 288 px) cropped to its centre 256 x 384 (or 384 x 256) px, a multiple of 64, through
   the encoder and g_a: y (64, 16, 24) per photo. The validation split (BSDS500 `val`) is kept
   out of training; the saving on it, measured in file bytes, is printed at the end.
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
import csv
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_perceptual_decoder import QUALITIES, build_cache, validation_names  # noqa: E402

from codec import Codec  # noqa: E402
from codec.entropy.compressor import CompressorConfig, HyperpriorCompressor, medians  # noqa: E402
from codec.entropy.context import anchor_mask  # noqa: E402
from codec.model_files import LEGACY_WEIGHTS, load_model, save_model_variant  # noqa: E402


def centre_crop(photo: np.ndarray) -> np.ndarray:
    """(h, w, 3) -> its centre, each side cut down to a multiple of 64 px."""
    h, w = (photo.shape[0] // 64) * 64, (photo.shape[1] // 64) * 64
    top, left = (photo.shape[0] - h) // 2, (photo.shape[1] - w) // 2
    return photo[top : top + h, left : left + w]


def build_y_cache(train_dir: Path, cache: Path, y_cache: Path, base: Path) -> tuple[list[str], list[np.ndarray]]:
    """(names, y (M, h/16, w/16) float32 per photo) of the centre crops, cached in `y_cache`."""
    if y_cache.exists():
        d = np.load(y_cache, allow_pickle=False)
        return [str(x) for x in d["names"]], [d[f"y{i}"] for i in range(int(d["count"]))]
    data = build_cache(train_dir, cache, QUALITIES)
    codec = Codec.load(base)
    names, ys, t0 = [], [], time.time()
    with torch.inference_mode():
        for i, (name, photo) in enumerate(zip(data["names"], data["photos"], strict=True)):
            crop = centre_crop(photo)
            if min(crop.shape[:2]) < 128:
                continue
            latent = codec.encode(Image.fromarray(crop))
            ys.append(codec.entropy.compressor.g_a(latent)[0].numpy().astype(np.float32))
            names.append(name)
            if i % 100 == 0:
                print(f"y cache: {i}/{len(data['names'])} photos, {time.time() - t0:.0f} s", flush=True)
    tmp = y_cache.with_name(y_cache.name + ".tmp.npz")
    np.savez(tmp, count=len(names), names=np.array(names), **{f"y{i}": y for i, y in enumerate(ys)})
    tmp.replace(y_cache)
    return names, ys


def gaussian_bits(residual: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """-log2 P(residual's unit bin) under N(0, scale) (the side of the curve that keeps precision)."""
    r = residual.abs()
    p = torch.special.ndtr((0.5 - r) / scales) - torch.special.ndtr((-0.5 - r) / scales)
    return -torch.log2(p.clamp_min(1e-9))


def random_level(rng: np.random.Generator, levels: int) -> float:
    """A 0-based level: half the time a trained one, half the time uniform on the continuous
    scale (-4 .. levels + 1, in the quality scale's 1/32 steps)."""
    if rng.random() < 0.5:
        return float(rng.integers(levels))
    return round(float(rng.uniform(-4, levels + 1)) * 32) / 32


class Batches:
    """Random y crops (B, M, crop, crop) at multiples of 4 y px, flipped half the time, with levels."""

    def __init__(self, ys: list[np.ndarray], crop: int, levels: int, seed: int):
        self.ys, self.crop, self.levels = [y for y in ys if min(y.shape[1:]) >= crop], crop, levels
        self.rng = np.random.default_rng(seed)

    def level(self) -> float:
        return random_level(self.rng, self.levels)

    def batch(self, n: int) -> tuple[torch.Tensor, list[float]]:
        out, s = [], self.crop
        for _ in range(n):
            y = self.ys[self.rng.integers(len(self.ys))]
            top = 4 * int(self.rng.integers((y.shape[1] - s) // 4 + 1))
            left = 4 * int(self.rng.integers((y.shape[2] - s) // 4 + 1))
            t = torch.from_numpy(y[:, top : top + s, left : left + s])
            out.append(t.flip(-1) if self.rng.random() < 0.5 else t)
        return torch.stack(out), [self.level() for _ in range(n)]


def hyper(comp: HyperpriorCompressor, y: torch.Tensor, levels: list[float]):
    """The coder's z and hyperprior parameters for each crop at its level (no gradient)."""
    with torch.no_grad():
        gy = torch.cat([comp.gains(v)[0] for v in levels])
        gz = torch.cat([comp.gains(v)[1] for v in levels])
        med = medians(comp.entropy_bottleneck)
        z = torch.round(comp.h_a(y) * gz - med)
        means, scales = comp.raw_params((z + med) / gz, gy)
        means = torch.round(means * 64) / 64
    return y * gy, means, scales, gy


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
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    names, ys = build_y_cache(args.train_dir, args.cache, args.y_cache, args.base)
    val = validation_names(args.train_dir)
    train = [y for n, y in zip(names, ys, strict=True) if n not in val]
    base = load_model(args.base)
    cfg = asdict(base.compressor.cfg)
    cfg.update(context_features=args.features, context_hidden=args.hidden)
    comp = HyperpriorCompressor(CompressorConfig(**cfg))
    # training needs no CDF tables (their shapes are only known once computed): the rest loads
    tables = ("_quantized_cdf", "_offset", "_cdf_length")
    state = {k: v for k, v in base.compressor.state_dict().items() if not k.endswith(tables)}
    missing = comp.load_state_dict(state, strict=False).missing_keys
    assert all(k.startswith("context.") or k.endswith(tables) for k in missing), missing
    previous = None
    if args.init:
        start = load_model(args.init)
        comp.context.load_state_dict(start.compressor.context.state_dict())
        previous = start.info.get("context")
    comp.eval().requires_grad_(False)
    comp.context.train().requires_grad_(True)
    batches = Batches(train, args.crop, comp.cfg.levels, args.seed)
    print(f"{len(batches.ys)} training photos; context {sum(p.numel() for p in comp.context.parameters())} params")
    opt = torch.optim.Adam(comp.context.parameters(), lr=args.lr)

    args.log.parent.mkdir(parents=True, exist_ok=True)
    log_file = open(args.log, "w", newline="")
    log = csv.writer(log_file)
    log.writerow(["step", "seconds", "lr", "saving_percent"])
    step, t0, acc = 0, time.time(), []
    while (spent := time.time() - t0) < args.seconds:
        frac = spent / args.seconds
        lr = args.lr * min(1.0, (step + 1) / 200) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
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
            log.writerow([step, round(spent, 1), f"{lr:.2e}", f"{saving:.3f}"])
            log_file.flush()
            print(f"step {step} {spent:.0f}s lr {lr:.1e}: non-anchor bits -{saving:.2f} %", flush=True)
            acc = []
    log_file.close()

    info = dict(base.info)
    info["context"] = {
        "what": "checkerboard context (codec/entropy/context.py) trained on the frozen compressor's y",
        "steps": step,
        "seconds": round(time.time() - t0),
        "batch": args.batch,
        "crop_y_px": args.crop,
        "lr": args.lr,
        "loss": "bits of the non-anchors (uniform-noise proxy)",
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "train_photos": len(batches.ys),
        "command": " ".join(sys.argv),
        "previous_stage": previous,
    }
    tensors = {f"compressor.context.{k}": v for k, v in comp.context.state_dict().items()}
    digest = save_model_variant(args.out, args.base, tensors, info, {"compressor": json.dumps(cfg)})
    print(f"{step} steps -> {args.out} (sha256 {digest[:16]}, model id {digest[:4]})", flush=True)

    # the saving in file bytes on validation photos: the base weights against the new ones
    data = build_cache(args.train_dir, args.cache, QUALITIES)
    photos = [centre_crop(p) for n, p in zip(data["names"], data["photos"], strict=True) if n in val]
    photos = photos[: args.val_photos]
    with torch.inference_mode():
        before = file_bytes(Codec.load(args.base), photos, range(1, 7))
        after = file_bytes(Codec.load(args.out), photos, range(1, 7))
    for q in before:
        print(f"validation q{q}: {before[q]} -> {after[q]} bytes ({100 * (after[q] / before[q] - 1):+.2f} %)")


if __name__ == "__main__":
    main()
