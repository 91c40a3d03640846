"""Measure diffusion refinement on a dataset: rate, PSNR, MS-SSIM, spectral gap, time per setting.

    python -m scripts.refinement_table ../shared/data/kodak --levels 1 2 \\
        --samplers ddim dpmpp unipc --steps 0 1 2 4 8 25 --guidance 1 2 --out rd/refinement.csv

Each image is compressed once per level (bpp from the file's bytes, header included);
its coarse latent is decoded once, then refined and decoded to pixels for every
combination of --samplers x --steps x --guidance x --start x --early-exit (steps 0 =
the plain decoder, once per level). Rows are appended to --out as they are measured,
and a rerun skips rows already there. The summary (means over images) is printed as
a markdown table, with the spectral-gap change against steps 0.
"""

import argparse
import csv
import itertools
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from bitstream import SAMPLERS, RefineSettings
from codec import Codec
from codec.canvas import Canvas
from codec.image_tensors import tensor_to_image
from eval.metrics import spectral_gap
from scripts.common import ResultRows, scored_as_written

FIELDS = [
    "image",
    "level",
    "decoder",
    "sampler",
    "steps",
    "guidance",
    "start",
    "early_exit",
    "bpp",
    "psnr",
    "msssim",
    "spectral_gap",
    "steps_run",
    "seconds",
]
KEY = FIELDS[:8]
PLAIN = ("plain", "fidelity")  # the MSE decoder's label: rd/ files before the perceptual decoder say "plain"


ORACLE = RefineSettings(steps=0, seed=1)  # a marker: decode the true latent instead of the file's


def settings_grid(args) -> list[tuple[RefineSettings, bool]]:
    """(settings, perceptual decoder?) pairs; refined latents use the perceptual decoder, as decompress() does."""
    grid = [(RefineSettings(steps=0), False)] if 0 in args.steps else []
    if args.plain_texture:
        grid.append((RefineSettings(steps=0), True))
    if args.oracle:  # the autoencoder's own latent: what a perfect refinement would hand the decoder
        grid += [(ORACLE, False), (ORACLE, True)]
    for sampler, steps, guidance, start, early in itertools.product(
        args.samplers, [s for s in args.steps if s > 0], args.guidance, args.start, args.early_exit
    ):
        s = RefineSettings(steps=steps, sampler=sampler, guidance=guidance, start=start, early_exit=early)
        grid.append((s, True))
    return grid


def key_of(image: str, level: int, s: RefineSettings, texture: bool) -> tuple:
    sampler = "true latent" if s is ORACLE else s.sampler if s.steps else "-"
    decoder = "perceptual" if texture else "fidelity"
    return (image, str(level), decoder, sampler, str(s.steps), f"{s.guidance:g}", f"{s.start:g}", f"{s.early_exit:g}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path, nargs="?", help="folder of images (PNG)")
    ap.add_argument("--summary", type=Path, metavar="CSV", help="only print the summary of an existing CSV")
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--samplers", nargs="+", choices=SAMPLERS, default=list(SAMPLERS))
    ap.add_argument("--steps", type=int, nargs="+", default=[0, 1, 2, 4, 8, 25])
    ap.add_argument("--guidance", type=float, nargs="+", default=[1.0, 2.0])
    ap.add_argument("--start", type=float, nargs="+", default=[1.0])
    ap.add_argument("--early-exit", type=float, nargs="+", default=[0.0])
    ap.add_argument("--images", type=int, default=0, help="only the first N images (0 = all)")
    ap.add_argument(
        "--plain-texture", action="store_true", help="also: no refinement, but the perceptual decoder (isolates it)"
    )
    ap.add_argument(
        "--oracle", action="store_true", help="also: decode the true autoencoder latent (the ceiling of refinement)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prior-weights", type=Path, help="default: the shipped prior")
    ap.add_argument("--out", type=Path, default=Path("rd/refinement.csv"))
    args = ap.parse_args()
    if args.summary:
        print(summary(args.summary, args.levels))
        return
    if args.dataset is None:
        ap.error("a dataset folder is needed (or --summary CSV)")

    codec = Codec.load(prior_weights=args.prior_weights)
    paths = sorted(args.dataset.glob("*.png"))[: args.images or None]
    grid = settings_grid(args)
    with ResultRows(args.out, FIELDS, KEY) as results:
        bar = tqdm(total=len(paths) * len(args.levels) * len(grid), desc="decodes", unit="decode")
        for path in paths:
            original = Image.open(path).convert("RGB")
            for level in args.levels:
                todo = [(s, tex) for s, tex in grid if key_of(path.name, level, s, tex) not in results.done]
                bar.update(len(grid) - len(todo))
                if not todo:
                    continue
                data = codec.compress(original, level)  # as users get it: default hints included
                header, coarse = codec.stages.decode_latent(data)
                true_latent = codec.stages.latent_pairs(original, [level])[0] if args.oracle else None
                for s, texture in todo:
                    oracle, key = s is ORACLE, key_of(path.name, level, s, texture)
                    s = replace(s, seed=args.seed)
                    steps_run = []
                    t0 = time.perf_counter()
                    if oracle:
                        latent = true_latent
                    else:
                        latent = codec.stages.refine_latent(coarse, level, s, progress=count_steps(steps_run))
                    x = codec.stages.decode_pixels(latent, level=header.level if texture else None)
                    decoded = tensor_to_image(Canvas.of_header(header).crop(x))
                    seconds = time.perf_counter() - t0
                    decoded, scores = scored_as_written(original, decoded, len(data))  # what `dpc decompress` writes
                    scores.update(spectral_gap=f"{spectral_gap(original, decoded):.5f}", steps_run=len(steps_run))
                    results.write(key, **scores, seconds=f"{seconds:.3f}")
                    bar.update(1)
        bar.close()
    print(summary(args.out, args.levels))


def summary(csv_path: Path, levels=None) -> str:
    """Markdown table of means over images, with the spectral-gap change against the plain decoder."""
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if levels and int(r["level"]) not in levels:
            continue
        groups.setdefault(tuple(r[k] for k in KEY[1:]), []).append(r)
    mean = lambda rs, k: float(np.mean([float(r[k]) for r in rs]))  # noqa: E731
    # g = (level, decoder, sampler, steps, guidance, start, early_exit)
    base = {g[0]: mean(rs, "spectral_gap") for g, rs in groups.items() if g[3] == "0" and g[1] in PLAIN and g[2] == "-"}

    def order(g):
        return (int(g[0]), g[3] != "0", g[1] not in PLAIN, g[2], int(g[3]), float(g[4]), -float(g[5]), float(g[6]))

    table = []
    for g in sorted(groups, key=order):
        rs = groups[g]
        gap = mean(rs, "spectral_gap")
        plain = g[3] == "0" and g[1] in PLAIN and g[2] == "-"
        change = f"{100 * (gap / base[g[0]] - 1):+.1f} %" if g[0] in base and not plain else "-"
        table.append(
            [
                *g,
                str(len(rs)),
                f"{mean(rs, 'bpp'):.4f}",
                f"{mean(rs, 'psnr'):.2f}",
                f"{mean(rs, 'msssim'):.4f}",
                f"{gap:.3f}",
                change,
                f"{mean(rs, 'steps_run'):.1f}",
                f"{mean(rs, 'seconds'):.2f}",
            ]
        )
    label = {"early_exit": "early exit", "psnr": "PSNR (dB)", "msssim": "MS-SSIM", "spectral_gap": "spectral gap",
             "steps_run": "steps run", "seconds": "decode s"}  # fmt: skip
    header = [label.get(f, f) for f in KEY[1:]] + ["images"] + [label.get(f, f) for f in FIELDS[len(KEY) :]]
    header.insert(header.index("spectral gap") + 1, "gap vs plain")
    # Columns that are the same on every row (e.g. start 1, early exit 0) are left out.
    keep = [i for i in range(len(header)) if i in (0, 8) or len({row[i] for row in table}) > 1]
    lines = ["| " + " | ".join(header[i] for i in keep) + " |", "|" + "---|" * len(keep)]
    lines += ["| " + " | ".join(row[i] for i in keep) + " |" for row in table]
    return "\n".join(lines)


def count_steps(steps_run: list):
    """A refine_latent progress hook that appends each sampling step it reports."""
    return lambda _stage, done, _total: steps_run.append(done) if done else None


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
