"""Compare codec weight files on fidelity: file bytes, PSNR and MS-SSIM of the fidelity decode.

    python -m scripts.fidelity_validation ../shared/data/train/bsds500 --split val --images 16 \\
        --weights codec/weights/dpc-v1.safetensors .data/dpc-ctx.safetensors .data/dpc-fdec2.safetensors \\
        --out rd/fidelity_validation_v2.csv --threads 2    # dpc-ctx: shipped as dpc-v2

For each photo, quality and weight file: compress (rate from the file's bytes, header
included), decode with fidelity=True, measure. Prints per weight file the mean bpp / PSNR /
MS-SSIM per quality and the BD-rates (PSNR, MS-SSIM) of every file against the first, over
the mean curves. This is how settings are chosen: on the validation split, never on Kodak.
"""

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import torch

from codec import Codec
from codec.images import load_image
from eval.metrics import msssim, psnr
from eval.report import bd_pair
from scripts.common import folder_photos


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", type=Path, help="folder of photos")
    ap.add_argument("--split", help="only this BSDS500 split (bsds500_splits.tsv two folders up)")
    ap.add_argument("--images", dest="count", type=int, default=16, help="first N photos (0 = all)")
    ap.add_argument("--qualities", type=float, nargs="+", default=[1, 3, 5])
    ap.add_argument(
        "--weights", type=Path, nargs="+", required=True, help="codec weight files; the first is the anchor"
    )
    ap.add_argument("--effort", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True, help="CSV of every measurement")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    paths = folder_photos(args.images, args.split)
    paths = paths[: args.count] if args.count else paths
    images = [load_image(p) for p in paths]
    results = []
    for weights in args.weights:
        codec = Codec.load(weights)
        for path, image in zip(paths, images, strict=True):
            for q in args.qualities:
                data = codec.compress(image, q, effort=args.effort)
                decoded = codec.decompress(data, fidelity=True)
                results.append(
                    dict(
                        weights=weights.name,
                        image=path.name,
                        quality=q,
                        bytes=len(data),
                        bpp=len(data) * 8 / (image.width * image.height),
                        psnr=psnr(image, decoded),
                        msssim=msssim(image, decoded),
                    )
                )
        print(f"{weights.name}: {len(paths)} photos done", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        out = csv.DictWriter(f, list(results[0]))
        out.writeheader()
        out.writerows(results)
    curves = {}
    for weights in args.weights:
        mine = [r for r in results if r["weights"] == weights.name]
        curves[weights.name] = {
            q: {k: float(np.mean([r[k] for r in mine if r["quality"] == q])) for k in ("bpp", "psnr", "msssim")}
            for q in args.qualities
        }
    anchor = curves[args.weights[0].name]
    print(f"{len(paths)} photos, qualities {args.qualities}, effort {args.effort}")
    for name, curve in curves.items():
        points = " | ".join(f"q{q:g} {c['bpp']:.4f} bpp {c['psnr']:.2f} dB {c['msssim']:.4f}" for q, c in curve.items())
        bd = {
            m: bd_pair([(a["bpp"], a[m]) for a in anchor.values()], [(c["bpp"], c[m]) for c in curve.values()], m)
            for m in ("psnr", "msssim")
        }
        rates = ", ".join(
            f"{m} BD-rate {b['bd_rate_pct']:+.2f} %" for m, b in bd.items() if b["bd_rate_pct"] is not None
        )
        print(
            f"{name}: {points}" + (f"; against {args.weights[0].name}: {rates}" if name != args.weights[0].name else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
