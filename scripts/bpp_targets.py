"""How close `dpc compress --bpp TARGET` lands: per-image rate (file bytes) for each target.

    python -m scripts.bpp_targets ../shared/data/kodak --targets 0.01 0.05 0.2 --json rd/bpp_targets.json

For each target and image, `Codec.compress_to_bpp` keeps the quality whose file is
nearest the target (log-rate). Reports the mean rate, the mean per-image miss
|bpp / target - 1|, the nearest reachable mean (the lowest / highest level's mean when
the target lies beyond them) and which qualities were chosen.
"""

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from codec import Codec, load_image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--targets", type=float, nargs="+", default=[0.01, 0.05, 0.2])
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    codec = Codec.load()
    paths = sorted(p for p in args.dataset.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    images = [load_image(p) for p in paths]
    # The rate of every integer quality of the scale per image, to state what is reachable.
    levels = {q: [] for q in range(-3, 9)}
    for im in tqdm(images, desc="levels"):
        for q in levels:
            levels[q].append(len(codec.compress(im, q)) * 8 / (im.width * im.height))
    level_means = {q: float(np.mean(v)) for q, v in levels.items()}
    rows = []
    for target in args.targets:
        bpps, chosen = [], []
        for im in tqdm(images, desc=f"--bpp {target}"):
            data, q = codec.compress_to_bpp(im, target)
            bpps.append(len(data) * 8 / (im.width * im.height))
            chosen.append(q)
        reachable = min(max(target, level_means[min(levels)]), level_means[max(levels)])
        rows.append(
            {
                "target": target,
                "mean_bpp": float(np.mean(bpps)),
                "mean_error_vs_target": float(np.mean(bpps)) / target - 1,
                "mean_per_image_miss": float(np.mean([abs(b / target - 1) for b in bpps])),
                "nearest_reachable_mean": reachable,
                "mean_error_vs_reachable": float(np.mean(bpps)) / reachable - 1,
                "qualities": dict(sorted(Counter(chosen).items())),
                "per_image": [
                    {"image": p.name, "bpp": b, "quality": q} for p, b, q in zip(paths, bpps, chosen, strict=True)
                ],
            }
        )
    print(f"{len(images)} images; mean bpp per quality: " + ", ".join(f"{q}: {m:.4f}" for q, m in level_means.items()))
    header = ("target bpp", "mean bpp", "mean vs target", "mean per-image miss", "nearest reachable")
    print("| " + " | ".join(header + ("mean vs reachable", "qualities")) + " |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        qs = ", ".join(f"q{q} x{n}" for q, n in r["qualities"].items())
        print(
            f"| {r['target']} | {r['mean_bpp']:.4f} | {r['mean_error_vs_target']:+.1%} "
            f"| {r['mean_per_image_miss']:.1%} | {r['nearest_reachable_mean']:.4f} "
            f"| {r['mean_error_vs_reachable']:+.1%} | {qs} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"level_means": level_means, "targets": rows}, indent=1))


if __name__ == "__main__":
    main()
