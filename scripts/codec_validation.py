"""Compare codec weight files on the validation split: the default decode's rate-distortion curves
and their BD-rates (what chooses between codecs; Kodak, the test set, is never used here).

    python -m scripts.codec_validation ../shared/data/train --images 16 \\
        --codec dpc-v2=default:-2,-1,0,1,2,3 --codec dpc-v3=.data/dpc-v3.safetensors:-1,0,1,2,3,4 \\
        --out rd/codec_validation.csv

With --multiple-of N, each photo is first centre-cropped to sides that are multiples of N (64:
sides the codec pads nothing to, as Kodak's 768 x 512, to compare edge handling). With --folder DIR,
the images of DIR instead (e.g. `python -m scripts.unseen_photos .data/unseen`:
photos in neither the training set nor Kodak, to check a choice made on the split).

Each --codec is LABEL=WEIGHTS:QUALITIES (WEIGHTS `default` = the shipped codec). Every photo of the
BSDS500 `val` split (native size; the first --images of them, sorted) is compressed at each
quality; rate = file bytes x 8 / pixels, header included. Per file: PSNR, MS-SSIM, LPIPS-Alex,
DISTS of the default decode (or, with --steps, of the decode with that many refinement steps:
label such rows apart, e.g. `dpc-v3-r1-steps0`; so too with --realism). Rows are appended to
--out as they are measured (a rerun skips what is there); the summary prints the mean curves and
each codec's BD-rates against the first.
"""

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from codec import Codec
from eval.metrics import bits_per_pixel, msssim, psnr
from eval.perceptual import DISTSMetric, LPIPSMetric
from eval.report import bd_pair
from scripts.common import folder_photos, validation_photos

FIELDS = ["image", "codec", "quality", "bytes", "bpp", "psnr", "msssim", "lpips", "dists"]
METRICS = ("psnr", "msssim", "lpips", "dists")


def parse_codec(spec: str) -> tuple[str, str, list[float]]:
    label, rest = spec.split("=", 1)
    weights, qualities = rest.rsplit(":", 1)
    return label, weights, [float(q) for q in qualities.split(",")]


def centre_crop_to_multiple(image: Image.Image, multiple: int) -> Image.Image:
    """The centre of `image` with sides rounded down to multiples of `multiple` (at least one)."""
    w, h = (max(side // multiple, 1) * multiple for side in image.size)
    left, top = (image.width - w) // 2, (image.height - h) // 2
    return image.crop((left, top, left + w, top + h)) if (w, h) != image.size else image


def summarise(path: Path, images: set[str] | None = None, codecs: list[str] | None = None) -> None:
    """Mean curves and BD-rates against the first codec: of `codecs` (labels, in order) or of the file."""
    rows = list(csv.DictReader(open(path)))
    if images:
        rows = [r for r in rows if r["image"] in images]
    if codecs:
        rows = sorted((r for r in rows if r["codec"] in codecs), key=lambda r: codecs.index(r["codec"]))
    per_image = defaultdict(set)
    for r in rows:
        per_image[r["codec"], r["quality"]].add(r["image"])
    common = set.intersection(*per_image.values()) if per_image else set()
    curves: dict[str, list] = defaultdict(list)
    for label, quality in sorted(per_image):
        sel = [r for r in rows if r["codec"] == label and r["quality"] == quality and r["image"] in common]
        mean = {k: float(np.mean([float(r[k]) for r in sel])) for k in ("bpp", *METRICS)}
        curves[label].append(mean)
        print(
            f"{label:>10} q{float(quality):+5.2f}  {len(sel)} img  "
            + "  ".join(f"{k} {v:.4f}" for k, v in mean.items())
        )
    labels = list(dict.fromkeys(r["codec"] for r in rows))
    for label in labels[1:]:
        parts = []
        for metric in METRICS:
            a = [(e["bpp"], e[metric]) for e in sorted(curves[labels[0]], key=lambda e: e["bpp"])]
            t = [(e["bpp"], e[metric]) for e in sorted(curves[label], key=lambda e: e["bpp"])]
            bd = bd_pair(a, t, metric)
            parts.append(f"{metric} {bd['bd_rate_pct']:+.1f} %" if bd["bd_rate_pct"] is not None else f"{metric} -")
        print(f"BD-rate of {label} against {labels[0]} on {len(common)} photos: " + ", ".join(parts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("train_dir", type=Path, nargs="?")
    ap.add_argument("--images", type=int, default=16, help="first N validation photos (0 = all 100)")
    ap.add_argument(
        "--folder", type=Path, help="the images of this folder instead (photos neither split holds: a check)"
    )
    ap.add_argument("--codec", action="append", default=[], help="LABEL=WEIGHTS:Q1,Q2,... (WEIGHTS: default)")
    ap.add_argument("--metric-weights", type=Path, default=Path("../shared/data/weights"))
    ap.add_argument("--out", type=Path, default=Path("rd/codec_validation.csv"))
    ap.add_argument("--summary", action="store_true", help="only summarise --out")
    ap.add_argument("--only", nargs="+", help="with --summary: these labels, BD-rates against the first")
    ap.add_argument(
        "--steps", type=int, help="decode with this many refinement steps instead of the file's (0: the plain decode)"
    )
    ap.add_argument(
        "--realism", type=float, help="decode at this realism (0..1) instead of the weights' default (label apart)"
    )
    ap.add_argument("--multiple-of", type=int, default=1, help="centre-crop each photo to sides that are multiples")
    args = ap.parse_args()
    if args.summary:
        summarise(args.out, codecs=args.only)
        return
    lpips, dists = LPIPSMetric.load(args.metric_weights), DISTSMetric.load(args.metric_weights)
    if args.folder is not None:
        photos = folder_photos(args.folder)[: args.images or None]
    else:
        photos = validation_photos(args.train_dir, args.images)
    done = set()
    if args.out.exists():
        done = {(r["image"], r["codec"], r["quality"]) for r in csv.DictReader(open(args.out))}
    new = not args.out.exists()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        if new:
            writer.writeheader()
        for spec in args.codec:
            label, weights, qualities = parse_codec(spec)
            codec = Codec.load(None if weights == "default" else weights)
            for path in photos:
                original = centre_crop_to_multiple(Image.open(path).convert("RGB"), args.multiple_of)
                for q in qualities:
                    if (path.name, label, str(q)) in done:
                        continue
                    data = codec.compress(original, quality=q)
                    decoded = codec.decompress(data, steps=args.steps, realism=args.realism)
                    row = dict(image=path.name, codec=label, quality=q, bytes=len(data))
                    row.update(bpp=bits_per_pixel(len(data), original), psnr=psnr(original, decoded))
                    row.update(msssim=msssim(original, decoded), lpips=lpips(original, decoded))
                    row.update(dists=dists(original, decoded))
                    writer.writerow(row)
                    f.flush()
                print(f"{label} {path.name} done", flush=True)
    summarise(args.out, {p.name for p in photos})


if __name__ == "__main__":
    main()
