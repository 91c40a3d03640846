"""Tiled against untiled decoding of the same files: PSNR between the two decodes (seams show up as a drop).

    python -m scripts.tiling_check ../shared/data/kodak --quality 1 --size 2048

Every image of the dataset, and one SIZE x SIZE mosaic of them, is compressed at
--quality (default refinement recorded) and decoded twice with the header's
settings: with the default tiling and with --tile 0. Prints the PSNR between the
two decodes per image and the minimum.
"""

import argparse
from pathlib import Path

from PIL import Image

from codec import Codec
from codec.options import DEFAULT_TILE
from eval.metrics import psnr
from scripts.common import mosaic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--quality", type=int, default=1)
    ap.add_argument("--size", type=int, default=2048, help="side of the mosaic test image (0 = none)")
    ap.add_argument("--tile", type=int, default=DEFAULT_TILE)
    args = ap.parse_args()

    codec = Codec.load()
    paths = sorted(args.dataset.glob("*.png"))
    images = [(p.name, Image.open(p).convert("RGB")) for p in paths]
    if args.size:
        images.append((f"mosaic {args.size}x{args.size}", mosaic(paths, args.size)))
    worst = float("inf")
    print(f"| image | size | refinement | PSNR tiled ({args.tile} px) vs untiled (dB) |")
    print("|---|---|---|---|")
    for name, image in images:
        data = codec.compress(image, args.quality)
        r = codec.read_header(data).refine
        tiled = codec.decompress(data, tile=args.tile)
        whole = codec.decompress(data, tile=0)
        value = psnr(tiled, whole)
        worst = min(worst, value)
        print(f"| {name} | {image.width}x{image.height} | {r.steps} {r.sampler} steps | {value:.2f} |", flush=True)
    print(f"minimum PSNR tiled vs untiled: {worst:.2f} dB")


if __name__ == "__main__":
    main()
