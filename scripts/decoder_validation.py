"""Measure decoders and refinement settings on the validation split; choose each level's decode defaults.

    python -m scripts.decoder_validation ../shared/data/train --images 16 --levels 1 3 5 \\
        --decoder-weights codec/weights/dpc-decoder-v2.safetensors --steps 0 2 4 8 --out rd/decoder_validation.csv
    python -m scripts.decoder_validation --summary rd/decoder_validation.csv
    python -m scripts.decoder_validation --summary rd/decoder_validation.csv --write   # record the choice

The validation split is BSDS500's `val` images (bsds500_splits.tsv), which no decoder was
trained on; Kodak, the test set, is never used here. Each photo (native size) is compressed
once per level (bpp from the file's bytes) and decoded with: the fidelity decoder (`fidelity`),
and for each --decoder-weights file the perceptual decoder after --steps refinement steps
(0 = none) with --sampler. Per decode: PSNR, MS-SSIM, LPIPS-Alex, DISTS. Rows are appended to
--out as they are measured (a rerun skips what is there).

The choice (--summary): per level and decoder file, the steps whose mean LPIPS + DISTS is lowest;
more steps only when they lower it by at least --min-gain (refinement costs time). Levels that
were not measured take the nearest measured level's choice. --write stores the chosen steps
and sampler in the prior's weight file config (what compress() records in each file).
"""

import argparse
import csv
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from bitstream import SAMPLERS
from codec import Codec
from codec.model_files import DEFAULT_PRIOR_WEIGHTS, load_prior, save_prior
from eval.perceptual import DISTSMetric, LPIPSMetric
from scripts.common import ResultRows, scored_as_written, validation_photos

FIELDS = ["image", "level", "decoder", "sampler", "steps", "bpp", "psnr", "msssim", "lpips", "dists"]
KEY = FIELDS[:5]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("train_dir", type=Path, nargs="?", help="../shared/data/train (the validation split is taken)")
    ap.add_argument("--images", type=int, default=16, help="first N validation photos (0 = all 100)")
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 3, 5])
    ap.add_argument("--decoder-weights", type=Path, nargs="+", default=[], help="perceptual decoder files to compare")
    ap.add_argument("--weights", type=Path, default=None, help="codec weights (default: the shipped ones)")
    ap.add_argument("--steps", type=int, nargs="+", default=[0])
    ap.add_argument("--sampler", choices=SAMPLERS, default="unipc")
    ap.add_argument("--metric-weights", type=Path, default=Path("../shared/data/weights"))
    ap.add_argument("--out", type=Path, default=Path("rd/decoder_validation.csv"))
    ap.add_argument("--summary", type=Path, metavar="CSV", help="only summarise an existing CSV (and choose)")
    ap.add_argument("--decoder", default=None, help="with --summary: the decoder label to choose for")
    ap.add_argument("--min-gain", type=float, default=0.01, help="relative LPIPS+DISTS gain that earns steps")
    ap.add_argument("--write", action="store_true", help="with --summary: record the choice in the prior file")
    args = ap.parse_args()
    if args.summary:
        summarise(args.summary, args.decoder, args.min_gain, args.write, args.sampler)
        return
    if args.train_dir is None:
        ap.error("a training folder is needed (or --summary CSV)")

    lpips = LPIPSMetric.load(args.metric_weights)
    dists = DISTSMetric.load(args.metric_weights)
    # with --weights, every label names them too: rows of other codec weights never mix
    tag = f"@{args.weights.stem}" if args.weights else ""
    codecs = {f"fidelity{tag}": Codec.load(args.weights)}
    for path in args.decoder_weights:
        codecs[path.stem + tag] = Codec.load(args.weights, decoder_weights=path)
    paths = validation_photos(args.train_dir, args.images)
    fidelity = f"fidelity{tag}"
    settings = [(fidelity, 0)] + [(name, s) for name in codecs if name != fidelity for s in args.steps]
    with ResultRows(args.out, FIELDS, KEY) as results:
        bar = tqdm(total=len(paths) * len(args.levels) * len(settings), desc="decodes", unit="decode")
        for path in paths:
            original = Image.open(path).convert("RGB")
            for level in args.levels:
                data = None
                for name, steps in settings:
                    sampler = args.sampler if steps else "-"
                    key = (path.name, str(level), name, sampler, str(steps))
                    bar.update(1)
                    if key in results.done:
                        continue
                    codec = codecs[name]
                    if data is None:  # every codec here shares the codec weights: one file per level
                        data = codec.compress(original, level)
                    if name == fidelity:
                        decoded = codec.decompress(data, fidelity=True)
                    else:
                        decoded = codec.decompress(data, steps=steps, sampler=args.sampler if steps else None)
                    decoded, scores = scored_as_written(original, decoded, len(data))
                    scores.update(lpips=f"{lpips(original, decoded):.5f}", dists=f"{dists(original, decoded):.5f}")
                    results.write(key, **scores)
        bar.close()
    summarise(args.out, None, args.min_gain, False, args.sampler)


def summarise(path: Path, decoder: str | None, min_gain: float, write: bool, sampler: str) -> None:
    rows = list(csv.DictReader(open(path)))
    groups = defaultdict(list)
    for r in rows:
        groups[(int(r["level"]), r["decoder"], r["sampler"], int(r["steps"]))].append(r)
    print("| level | decoder | sampler | steps | images | bpp | PSNR | MS-SSIM | LPIPS | DISTS |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    means = {}
    for g, rs in sorted(groups.items()):
        m = {k: float(np.mean([float(r[k]) for r in rs])) for k in ("bpp", "psnr", "msssim", "lpips", "dists")}
        means[g] = m
        print(
            f"| {g[0]} | {g[1]} | {g[2]} | {g[3]} | {len(rs)} | {m['bpp']:.4f} | {m['psnr']:.2f} | "
            f"{m['msssim']:.4f} | {m['lpips']:.4f} | {m['dists']:.4f} |"
        )
    perceptual = sorted({g[1] for g in means if not g[1].startswith("fidelity")})
    if not perceptual:
        return
    decoder = decoder or perceptual[-1]
    chosen = {}
    for level in sorted({g[0] for g in means}):
        options = {g[3]: m["lpips"] + m["dists"] for g, m in means.items() if g[0] == level and g[1] == decoder}
        if not options:
            continue
        best = min(options, key=lambda s: (options[s], s))
        fewer = [s for s in options if s < best and options[s] <= options[best] * (1 + min_gain)]
        chosen[level] = min(fewer) if fewer else best
    print(f"\nchosen ({decoder}, LPIPS + DISTS, min gain {min_gain:g}): {chosen}")
    if not write:
        return
    bundle = load_prior(DEFAULT_PRIOR_WEIGHTS)
    levels = bundle.prior.cfg.levels
    steps = tuple(chosen[min(chosen, key=lambda m: (abs(m - q), m))] for q in range(1, levels + 1))
    bundle.prior.cfg = replace(bundle.prior.cfg, default_steps=steps, default_sampler=sampler)
    info = dict(bundle.info, decode_defaults={"rule": "min LPIPS + DISTS on the validation split", "csv": str(path)})
    digest = save_prior(DEFAULT_PRIOR_WEIGHTS, bundle.prior, info)
    print(f"default steps {steps}, sampler {sampler} -> {DEFAULT_PRIOR_WEIGHTS} (sha256 {digest[:16]})")


if __name__ == "__main__":
    main()
