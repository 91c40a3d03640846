"""The realism setting's trade-off on the validation split: LPIPS / DISTS / PSNR against patch FID /
KID, per quality and realism (codec/models/latent_refiner.py; issue #29's curve).

    python -m scripts.realism_curve ../shared/data/train --weights FILE --qualities 1 2 \\
        --realism 0 0.5 1 --images 100 --out rd/realism_curve.csv --plot docs/images/realism_curve.png

Each photo (BSDS500 `val`, native size, the first --images sorted) is compressed once per quality;
the same file is decoded at each --realism (and with --seeds, once per seed; the noise is the
seed's) and at --steps 0 (the plain decode, row realism "plain"). Per decode: bpp from file bytes,
PSNR, LPIPS-Alex, DISTS (rows in --out, appended; a rerun skips what is there). Per (quality,
realism): patch FID / KID (eval/distribution.py; --patch px, shifted grid) over every photo and
seed, printed and written to --out's `.summary.csv`; --plot draws LPIPS and DISTS against FID.
"""

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from codec import Codec
from eval.distribution import PatchFidKid
from eval.metrics import bits_per_pixel, psnr
from eval.perceptual import DISTSMetric, LPIPSMetric
from scripts.common import validation_photos

FIELDS = ["image", "quality", "realism", "seed", "bytes", "bpp", "psnr", "lpips", "dists"]
PLAIN = "plain"  # the --steps 0 decode of the same file


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("train_dir", type=Path)
    ap.add_argument("--weights", required=True, help="a dpc-v3 weight file whose refiner has a realism input")
    ap.add_argument("--qualities", type=float, nargs="+", default=[1.0])
    ap.add_argument("--realism", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--images", type=int, default=100, help="first N validation photos (0 = all 100)")
    ap.add_argument("--patch", type=int, default=128, help="FID/KID patch side in px")
    ap.add_argument("--metric-weights", type=Path, default=Path("../shared/data/weights"))
    ap.add_argument("--out", type=Path, default=Path("rd/realism_curve.csv"))
    ap.add_argument("--plot", type=Path, help="a PNG of LPIPS and DISTS against FID")
    args = ap.parse_args()

    codec = Codec.load(args.weights)
    lpips, dists = LPIPSMetric.load(args.metric_weights), DISTSMetric.load(args.metric_weights)
    fid = PatchFidKid.load(patch=args.patch)
    settings = [str(r) for r in args.realism] + [PLAIN]
    acc = {(q, s): fid.accumulator() for q in args.qualities for s in settings}
    rows = _read(args.out)
    done = {(r["image"], r["quality"], r["realism"], r["seed"]) for r in rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    new = not args.out.exists()
    photos = validation_photos(args.train_dir, args.images)
    with open(args.out, "a", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        if new:
            writer.writeheader()
        for i, path in enumerate(photos):
            original = Image.open(path).convert("RGB")
            for q in args.qualities:
                data = codec.compress(original, quality=q)
                for s in settings:
                    for seed in args.seeds if s != PLAIN else [0]:
                        kw = dict(steps=0) if s == PLAIN else dict(realism=float(s), seed=seed)
                        decoded = codec.decompress(data, **kw)
                        acc[q, s].add(original, decoded)  # FID needs every decode, even one measured before
                        if (path.name, str(q), s, str(seed)) in done:
                            continue
                        row = dict(image=path.name, quality=q, realism=s, seed=seed, bytes=len(data))
                        row.update(bpp=bits_per_pixel(len(data), original), psnr=psnr(original, decoded))
                        row.update(lpips=lpips(original, decoded), dists=dists(original, decoded))
                        writer.writerow(row)
                        f.flush()
            print(f"{i + 1}/{len(photos)} {path.name}", flush=True)
    names = {p.name for p in photos}
    rows = _read(args.out)
    summary = summarise(rows, acc, names)
    _write_summary(args.out.with_suffix(".summary.csv"), summary)
    paired_against_plain(rows, names)
    if args.plot:
        plot(summary, args.plot)


def _read(path: Path) -> list[dict]:
    return list(csv.DictReader(open(path))) if path.exists() else []


def summarise(rows: list[dict], acc: dict, names: set[str]) -> list[dict]:
    """Per (quality, realism): mean bpp / PSNR / LPIPS / DISTS over `names` and every seed, and
    patch FID / KID from `acc`; printed, one line each."""
    groups = defaultdict(list)
    for r in rows:
        if r["image"] in names:
            groups[float(r["quality"]), r["realism"]].append(r)
    out = []
    for (q, s), a in acc.items():
        sel = groups[float(q), s]
        entry = dict(quality=q, realism=s, decodes=len(sel))
        entry |= {k: float(np.mean([float(r[k]) for r in sel])) for k in ("bpp", "psnr", "lpips", "dists")}
        entry |= a.results()
        out.append(entry)
        print(
            f"q{q:+.2f} realism {s:>5}: {len(sel)} decodes, bpp {entry['bpp']:.4f} PSNR {entry['psnr']:.2f} "
            f"LPIPS {entry['lpips']:.4f} DISTS {entry['dists']:.4f} FID {entry['fid']:.2f} "
            f"KID {entry['kid']:.4f} +- {entry['kid_std']:.4f} ({entry['patches']} patches)"
        )
    return out


def paired_against_plain(rows: list[dict], names: set[str]) -> None:
    """Per (quality, realism): the per-photo relative change of LPIPS and DISTS against the same
    file's --steps 0 decode (seeds averaged per photo), mean and 95 % interval (normal
    approximation: mean +- 1.96 sd / sqrt(n)); printed."""
    per = defaultdict(lambda: defaultdict(list))  # (q, realism) -> image -> [(lpips, dists)]
    for r in rows:
        if r["image"] in names:
            per[float(r["quality"]), r["realism"]][r["image"]].append((float(r["lpips"]), float(r["dists"])))
    for (q, s), images in sorted(per.items()):
        plain = per.get((q, PLAIN), {})
        common = sorted(set(images) & set(plain)) if s != PLAIN else []
        if not common:
            continue
        parts = []
        for k, metric in enumerate(("LPIPS", "DISTS")):
            d = np.array([np.mean([v[k] for v in images[i]]) / plain[i][0][k] - 1 for i in common])
            half = 1.96 * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
            parts.append(
                f"{metric} {100 * d.mean():+.1f} % [{100 * (d.mean() - half):+.1f}, {100 * (d.mean() + half):+.1f}]"
            )
        print(f"q{q:+.2f} realism {s:>5} against --steps 0 on {len(common)} photos: " + ", ".join(parts))


def _write_summary(path: Path, summary: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, list(summary[0]))
        writer.writeheader()
        writer.writerows(summary)
    print(f"-> {path}")


def plot(summary: list[dict], path: Path) -> None:
    """LPIPS and DISTS (y) against patch FID (x), one line per quality through its realism settings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for q in sorted({e["quality"] for e in summary}):
        line = [e for e in summary if e["quality"] == q and e["realism"] != PLAIN]
        plain = [e for e in summary if e["quality"] == q and e["realism"] == PLAIN]
        for ax, metric in zip(axes, ("lpips", "dists"), strict=True):
            ax.plot([e["fid"] for e in line], [e[metric] for e in line], "o-", label=f"q{q:g}: realism 0 -> 1")
            for e in line:
                ax.annotate(e["realism"], (e["fid"], e[metric]), textcoords="offset points", xytext=(4, 4))
            ax.plot([e["fid"] for e in plain], [e[metric] for e in plain], "kx", label=f"q{q:g}: --steps 0")
    for ax, metric in zip(axes, ("LPIPS-Alex", "DISTS"), strict=True):
        ax.set_xlabel("patch FID (lower: more realistic)")
        ax.set_ylabel(f"{metric} (lower: closer)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"-> {path}")


if __name__ == "__main__":
    main()
