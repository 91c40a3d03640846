"""How well image edges and tiny images decode: flat images through compress and decompress.

    python -m scripts.edge_quality [--weights FILE] [--qualities 2 6] [--out rd/edge_quality.csv]
    python -m scripts.edge_quality --photos ../shared/data/kodak --out rd/edge_quality_kodak.csv

For each size and colour: PSNR of the whole decoded image, of its outer 8 px frame ("edge"), of
its first row and column and last ones ("row0"), and of what lies 24 px or more inside ("inner",
only for sides of at least 64 px). With --photos, the same for each photo of a folder instead of
the flat images (edge against inner on real content). A flat image has no detail to lose, so the gaps between these
are the codec's placement and padding at work (codec/canvas.py, docs/reliability.md). Uses only
the public API, so it runs unchanged on older commits (before and after comparisons).
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from codec import Codec
from scripts.common import CsvLog, find_images

SIZES = [(1, 1), (1, 7), (1, 64), (7, 1), (8, 8), (64, 64), (100, 150), (128, 128), (120, 184), (256, 192)]
COLOURS = {"red": (200, 60, 40), "green": (120, 160, 90)}


def psnr(err: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / max(float(err.mean()), 1e-9)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None, help="a weight file (default: the shipped weights)")
    ap.add_argument("--qualities", type=float, nargs="+", default=[2, 6])
    ap.add_argument("--out", type=Path, default=Path("rd/edge_quality.csv"))
    ap.add_argument("--photos", type=Path, help="measure the photos of this folder instead of flat images")
    args = ap.parse_args()
    codec = Codec.load(args.weights)
    log = CsvLog(args.out, ["height", "width", "colour", "quality", "bytes", "all", "edge", "row0", "inner"])
    if args.photos:
        cases = [(p.stem, np.asarray(Image.open(p).convert("RGB"))) for p in find_images(args.photos)]
    else:
        cases = [(n, np.full((h, w, 3), c, np.uint8)) for h, w in SIZES for n, c in COLOURS.items()]
    for name, image in cases:
        height, width = image.shape[:2]
        for q in args.qualities:
            data = codec.compress(Image.fromarray(image), q)
            err = ((np.asarray(codec.decompress(data), np.float64) - image) ** 2).mean(2)
            frame = np.zeros_like(err, dtype=bool)
            frame[:8], frame[-8:], frame[:, :8], frame[:, -8:] = True, True, True, True
            outer = np.zeros_like(frame)
            outer[[0, -1]], outer[:, [0, -1]] = True, True
            inner = err[24:-24, 24:-24] if min(height, width) >= 64 else np.array([np.nan])
            row = [psnr(err), psnr(err[frame]), psnr(err[outer]), psnr(inner) if inner.size > 1 else ""]
            row = [round(v, 2) if v != "" else v for v in row]
            log.row(height, width, name, q, len(data), *row)
            print(f"{height:4d} x {width:<4d} {name:8s} q{q:g}: all, edge, row0, inner: {row}", flush=True)


if __name__ == "__main__":
    main()
