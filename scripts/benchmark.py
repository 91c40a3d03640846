"""Compress/decompress time for one image on this machine (a benchmark, not a test).

    python -m scripts.benchmark ../shared/data/kodak/kodim23.png --repeats 5 --steps 4
    python -m scripts.benchmark ../shared/data/kodak/kodim23.png --weights dpc-v2 dpc-v3 --dtypes fp32 bf16 --no-cli

Reports the median in-process time of Codec.compress and Codec.decompress
after a warm-up (decompress with --steps refinement steps, default: what the file
records), split into its stages (entropy decoding, refinement, pixel decoding),
the one-off model load, and the wall time of the `dpc` commands (which add
Python and torch start-up) for the same image.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from codec import DEFAULT_QUALITY, Codec, load_image
from eval.bench import cpu_name


def timed(fn, repeats: int) -> tuple[float, object]:
    fn()  # warm-up: first calls pay for allocator and kernel selection
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", type=Path)
    ap.add_argument("--quality", type=int, default=DEFAULT_QUALITY)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, help="refinement steps (default: the file's)")
    ap.add_argument("--no-cli", action="store_true", help="skip timing the dpc commands")
    ap.add_argument("--weights", nargs="+", default=[None], help="codec weights: files or shipped names (dpc-v3)")
    ap.add_argument("--dtypes", nargs="+", default=["fp32"], help="decoding precisions to time (fp32, bf16, fp16)")
    args = ap.parse_args()
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    for weights in args.weights:
        for dtype in args.dtypes:
            print(f"\n== weights {weights or 'default'}, decoding in {dtype}")
            bench(args, weights, dtype)


def bench(args, weights, dtype: str) -> None:
    t0 = time.perf_counter()
    codec = Codec.load(weights, dtype=dtype)
    load_s = time.perf_counter() - t0
    image = load_image(args.image)
    enc_s, data = timed(lambda: codec.compress(image, args.quality), args.repeats)
    settings = codec.read_header(data).refine.with_overrides(steps=args.steps)
    dec_s, _ = timed(lambda: codec.decompress(data, steps=settings.steps), args.repeats)
    entropy_s, (_, coarse) = timed(lambda: codec.stages.decode_latent(data), args.repeats)
    refine_s, latent = timed(lambda: codec.stages.refine_latent(coarse, args.quality, settings), args.repeats)
    level = codec.read_header(data).level
    pixels_s, _ = timed(lambda: codec.stages.decode_pixels(latent, level=level), args.repeats)

    print(f"image: {args.image.name} {image.width}x{image.height}, quality {args.quality}, {len(data)} bytes")
    print(f"model load: {load_s:.2f} s")
    print(f"compress (median of {args.repeats}):   {enc_s:.3f} s")
    print(
        f"decompress (median of {args.repeats}): {dec_s:.3f} s with {settings.steps} {settings.sampler} steps"
        f" (guidance {settings.guidance:g})"
    )
    print(f"  entropy decoding to the coarse latent: {entropy_s:.3f} s")
    print(f"  refinement ({settings.steps} steps):          {refine_s:.3f} s")
    print(f"  pixel decoding (tiled, perceptual):    {pixels_s:.3f} s")
    if not args.no_cli:
        with tempfile.TemporaryDirectory() as tmp:
            dpc = [sys.executable, "-m", "dpc.cli"]
            for name, cmd in (
                ("dpc compress", [*dpc, "compress", str(args.image), "-o", f"{tmp}/a.dpc", "-q", str(args.quality)]),
                (
                    "dpc decompress",
                    [*dpc, "decompress", f"{tmp}/a.dpc", "-o", f"{tmp}/a.png", "--steps", str(settings.steps)],
                ),
            ):
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True)
                print(f"{name} (whole command, incl. start-up): {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
