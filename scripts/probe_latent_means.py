"""Would side information on the latent's local means buy dpc-v3 its colours back? An oracle probe.

    python -m scripts.probe_latent_means ../shared/data/train --images 4 --qualities 1 3

At the lowest rates dpc-v3's decodes drift in colour (faces olive, warm skies white). This asks
whether the colour is lost in the coarse latent, and what it would be worth to put it back: per
validation photo and quality, the coarse latent g_s(y_hat) is corrected towards the true TAEF2
latent by the mean of their difference (per channel: over the whole latent, or over blocks of
16 or 8 latent px = 128 or 64 image px) - for free, as an oracle; a codec would have to send
those means. Each version goes through the codec's refiner (realism 0) and its fine-tuned
decoder, and is scored with LPIPS-Alex and DISTS against the photo; so is the `--fidelity` decode
of the uncorrected coarse latent (no refiner, TAEF2's own decoder), which shows what colour the
coarse latent holds before the refiner and the tuned decoder. Printed: the mean over the photos
per quality and correction, and the mean chroma (Cb, Cr) error against the photo.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from codec import Codec
from eval.perceptual import DISTSMetric, LPIPSMetric
from scripts.common import validation_photos

CORRECTIONS = ("none", "global", "128 px blocks", "64 px blocks")
PLAIN = "none, --fidelity"  # no correction, no refiner, TAEF2's own decoder: what the coarse latent holds


def corrected(coarse: torch.Tensor, latent: torch.Tensor, how: str) -> torch.Tensor:
    """coarse, latent (1,32,h,w) -> coarse + the mean of (latent - coarse) per channel (and block)."""
    diff = latent - coarse
    if how == "none":
        return coarse
    if how == "global":
        return coarse + diff.mean((2, 3), keepdim=True)
    k = 16 if how.startswith("128") else 8
    means = F.avg_pool2d(diff, k, ceil_mode=True)
    return coarse + F.interpolate(means, scale_factor=k, mode="nearest")[..., : diff.shape[-2], : diff.shape[-1]]


def chroma(image: np.ndarray) -> np.ndarray:
    """(H,W,3) floats in 0..1 -> the mean (Cb, Cr) (BT.601)."""
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    return np.array([(-0.1687 * r - 0.3313 * g + 0.5 * b).mean(), (0.5 * r - 0.4187 * g - 0.0813 * b).mean()])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("train_dir", type=Path)
    ap.add_argument("--images", type=int, default=4, help="first N validation photos")
    ap.add_argument("--qualities", type=float, nargs="+", default=[1, 3])
    ap.add_argument("--weights", default="dpc-v3")
    ap.add_argument("--metric-weights", type=Path, default=Path("../shared/data/weights"))
    args = ap.parse_args()
    codec = Codec.load(args.weights)
    refiner, ae = codec.bundle.refiner, codec.autoencoder
    if refiner is None or not hasattr(ae, "tuned"):
        raise SystemExit(f"{args.weights}: not a dpc-v3 codec with a latent refiner")
    lpips, dists = LPIPSMetric.load(args.metric_weights), DISTSMetric.load(args.metric_weights)
    scores = {(q, how): [] for q in args.qualities for how in (*CORRECTIONS, PLAIN)}
    for path in validation_photos(args.train_dir, args.images):
        image = Image.open(path).convert("RGB")
        w, h = (side // 64 * 64 for side in image.size)  # no padding: latent and coarse latent align
        image = image.crop((0, 0, w, h))
        pixels = np.asarray(image, dtype=np.float32) / 255
        with torch.no_grad():
            latent = ae.encode_tiled(torch.from_numpy(pixels).permute(2, 0, 1)[None], 1024)
            for q in args.qualities:
                data = codec.compress(image, quality=q)
                header, coarse = codec.stages.decode_latent(data)
                side = codec.stages.refinement_side(data)
                indexes, level = torch.as_tensor(side["scale_indexes"]), torch.tensor([float(side["level"])])
                for how in (*CORRECTIONS, PLAIN):
                    start = corrected(coarse, latent, "none" if how == PLAIN else how)
                    noise = torch.zeros(1, refiner.cfg.noise_channels, *start.shape[-2:])
                    if how == PLAIN:
                        out = ae.decoder(start)
                    elif refiner.cfg.realism:
                        out = ae.tuned(refiner(start, indexes, level, realism=torch.zeros(1), noise=noise))
                    else:
                        out = ae.tuned(refiner(start, indexes, level))
                    out = out[0].clamp(0, 1).permute(1, 2, 0).numpy()
                    decoded = Image.fromarray((out * 255 + 0.5).astype(np.uint8))
                    colour = np.abs(chroma(out) - chroma(pixels)).sum()
                    scores[q, how].append((len(data) * 8 / (w * h), lpips(image, decoded), dists(image, decoded), colour))
        print(f"{path.name} done", flush=True)
    print("quality | correction | bpp | LPIPS | DISTS | |Cb error| + |Cr error|")
    for (q, how), rows in scores.items():
        bpp, lp, ds, col = np.mean(rows, axis=0)
        print(f"{q:g} | {how} | {bpp:.4f} | {lp:.3f} | {ds:.3f} | {col:.4f}")


if __name__ == "__main__":
    main()
