"""BD-rates between our codec's rows of two `dpc eval` results (e.g. a new model against today's).

    python -m scripts.compare_reports rd/perceptual-v4/results.csv rd/latent-codec-v3/results.csv

Mean rate and metrics per setting over the images both runs measured; BD-rate of the second
against the first (negative = the second needs fewer bits for the same quality) over the rate
range both cover (eval/report.py's bd_pair, as `dpc eval` computes it against the baselines).
"""

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

from eval.report import bd_pair

METRICS = ("psnr", "msssim", "lpips", "dists")


def curve(path: Path, images: set[str], codec: str) -> list[dict]:
    rows = [r for r in csv.DictReader(open(path)) if r["codec"] == codec and r["image"] in images]
    by_setting = defaultdict(list)
    for r in rows:
        by_setting[r["setting"]].append(r)
    return sorted(
        ({k: float(np.mean([float(r[k]) for r in rs])) for k in ("bpp", *METRICS)} for rs in by_setting.values()),
        key=lambda e: e["bpp"],
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("anchor", type=Path, help="results.csv of the reference run")
    ap.add_argument("test", type=Path, help="results.csv of the run compared with it")
    ap.add_argument("--codec", default="ours", help="which codec's rows (default ours)")
    args = ap.parse_args()
    names = [
        {r["image"] for r in csv.DictReader(open(p)) if r["codec"] == args.codec} for p in (args.anchor, args.test)
    ]
    images = names[0] & names[1]
    a, t = curve(args.anchor, images, args.codec), curve(args.test, images, args.codec)
    print(f"{len(images)} images in both runs")
    for label, points in (("anchor", a), ("test", t)):
        for e in points:
            print(f"  {label:6} " + "  ".join(f"{k} {e[k]:.4f}" for k in ("bpp", *METRICS)))
    for metric in METRICS:
        bd = bd_pair([(e["bpp"], e[metric]) for e in a], [(e["bpp"], e[metric]) for e in t], metric)
        value = f"{bd['bd_rate_pct']:+.1f} %" if bd["bd_rate_pct"] is not None else f"- ({bd.get('reason')})"
        print(f"BD-rate {metric}: {value}  overlap {bd.get('overlap_bpp')}")


if __name__ == "__main__":
    main()
