"""What each encoder effort costs and saves: encode time, rate and fidelity per image, and the
PSNR / MS-SSIM BD-rate of every effort against effort 0 (docs/effort.md).

    python -m scripts.effort_table ../shared/data/kodak --every 3 --efforts 0 1 2 4 9 --qualities 1 3 5 \\
        --csv rd/effort_kodak.csv --markdown rd/effort_kodak.md
    # choosing the search settings: on the BSDS500 validation photos, never on Kodak
    python -m scripts.effort_table ../shared/data/train/bsds500 --split val --images 6 --efforts 0 1 2 4 9 \\
        --msssim-weight 0.5 --csv rd/effort_val.csv --markdown rd/effort_val_ms0.5.md
    python -m scripts.effort_table ../shared/data/train/bsds500 --split val --images 6 --efforts 0 2 9 \\
        --msssim-weight 0 --csv rd/effort_val.csv --markdown rd/effort_val_ms0.md

One row per (image, quality, effort) in --csv: file bytes (the rate), encode seconds (in
process, weights loaded, one image at a time), PSNR and MS-SSIM of the fidelity decode (the
MSE decoder, which the search targets). A rerun keeps the rows it finds and does the rest, so
a long table can be built in pieces (--images N takes the first N). BD-rates use the mean bpp
and the mean metric per quality (the curve over q1..q5), as `dpc eval` does.
"""

import argparse
import csv
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from codec import Codec
from codec.effort import SearchSettings
from codec.images import load_image
from eval.metrics import msssim, psnr
from eval.report import bd_pair
from scripts.common import folder_photos

FIELDS = ["image", "quality", "effort", "settings", "model", "bytes", "bpp", "encode_s", "psnr", "msssim"]
FIELDS += ["lpips", "dists"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("images", type=Path, help="folder of images (Kodak)")
    ap.add_argument("--split", help="only the photos of this BSDS500 split (bsds500_splits.tsv two folders up)")
    ap.add_argument("--efforts", type=int, nargs="+", default=[0, 3, 6, 9])
    ap.add_argument("--qualities", type=float, nargs="+", default=[1, 3, 5])
    ap.add_argument("--images", dest="count", type=int, default=0, help="only the first N images (0 = all)")
    ap.add_argument("--every", type=int, default=1, help="every Nth image (3: kodim01, 04, ..., 22)")
    ap.add_argument("--csv", type=Path, required=True)
    ap.add_argument("--markdown", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument(
        "--metric-weights",
        type=Path,
        default=None,
        help="also LPIPS and DISTS of the default (perceptual) decode: the folder of their backbones",
    )
    ap.add_argument(
        "--baselines",
        type=Path,
        default=None,
        help="a `dpc eval` results.csv: BD-rates of every effort against each classical codec in it, same images",
    )
    defaults = SearchSettings()
    ap.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    ap.add_argument("--tau-start", type=float, default=defaults.tau_start)
    ap.add_argument("--tau-end", type=float, default=defaults.tau_end)
    ap.add_argument("--msssim-weight", type=float, default=defaults.msssim_weight)
    ap.add_argument("--joint-z", action="store_true", default=defaults.joint_z, help="search z too (SearchSettings)")
    ap.add_argument("--weights", type=Path, default=None, help="codec weights (default: the shipped ones)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    paths = folder_photos(args.images, args.split)[:: args.every]
    paths = paths[: args.count] if args.count else paths
    settings = replace(
        defaults,
        learning_rate=args.learning_rate,
        tau_start=args.tau_start,
        tau_end=args.tau_end,
        msssim_weight=args.msssim_weight,
        joint_z=args.joint_z,
    )
    codec = Codec.load(args.weights)
    # rows are reused only for the same weights (model id) and, above effort 0, the same settings
    tag = f"lr{settings.learning_rate:g}_tau{settings.tau_start:g}-{settings.tau_end:g}_ms{settings.msssim_weight:g}"
    tag += "_jz" * settings.joint_z
    model = f"{codec.model_id:04x}"
    rows = [
        r
        for r in _read(args.csv)
        if r.get("model", "9197") == model and (r["settings"] == tag or int(r["effort"]) == 0)
    ]
    done = {(r["image"], float(r["quality"]), int(r["effort"])) for r in rows}
    codec.effort_search.settings = settings
    perceptual = None
    if args.metric_weights:
        from eval.perceptual import DISTSMetric, LPIPSMetric

        perceptual = (LPIPSMetric.load(args.metric_weights), DISTSMetric.load(args.metric_weights))
    todo = [(p, q, e) for p in paths for q in args.qualities for e in args.efforts if (p.name, q, e) not in done]
    if todo:
        codec.compress(load_image(paths[0]), 3, effort=1)  # warm-up: first-call costs stay out of the times
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    new = not args.csv.exists()
    fields = FIELDS if new else args.csv.read_text().splitlines()[0].split(",")  # an older table's columns
    with open(args.csv, "a", newline="") as f:
        out = csv.DictWriter(f, fields, extrasaction="ignore")
        if new:
            out.writeheader()
        for path in paths:
            image = load_image(path)
            for q in args.qualities:
                for e in args.efforts:
                    if (path.name, q, e) in done:
                        continue
                    t0 = time.perf_counter()
                    data = codec.compress(image, q, effort=e)
                    seconds = time.perf_counter() - t0
                    decoded = codec.decompress(data, fidelity=True)
                    row = dict(image=path.name, quality=q, effort=e, settings=tag if e else "", bytes=len(data))
                    row.update(model=model)
                    row.update(encode_s=round(seconds, 3))
                    row.update(bpp=len(data) * 8 / (image.width * image.height))
                    row.update(psnr=psnr(image, decoded), msssim=msssim(image, decoded))
                    if perceptual:
                        default = codec.decompress(data)
                        row.update(lpips=perceptual[0](image, default), dists=perceptual[1](image, default))
                    out.writerow(row)
                    f.flush()
                    rows.append({k: str(v) for k, v in row.items()})
                    print(f"{path.name} q{q:g} effort {e}: {row['bpp']:.4f} bpp, {row['psnr']:.2f} dB, {seconds:.1f} s")
    table = f"search settings {tag}; " + summarise(rows, [p.name for p in paths], args.qualities, args.efforts)
    if args.baselines:
        efforts = sorted({0, *args.efforts})
        table += "\n\n" + against_baselines(rows, _read(args.baselines), args.qualities, efforts)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    return 0


LABELS = {"psnr": "PSNR", "msssim": "MS-SSIM", "lpips": "LPIPS (default decode)", "dists": "DISTS (default decode)"}


def summarise(rows: list[dict], names: list[str], qualities, efforts) -> str:
    """Markdown: per effort, encode s per image, and BD-rates against effort 0 (images with every row only)."""
    by = {(r["image"], float(r["quality"]), int(r["effort"])): r for r in rows}
    complete = [n for n in names if all((n, float(q), e) in by for q in qualities for e in [0, *efforts])]
    measured = [by[n, float(q), e] for n in complete for q in qualities for e in [0, *efforts]]
    metrics = [m for m in LABELS if measured and all(r.get(m) not in (None, "") for r in measured)]
    lines = [
        f"{len(complete)} images, qualities {', '.join(f'{q:g}' for q in qualities)}; "
        "BD-rate against effort 0 (negative = fewer bytes for the same fidelity)",
        "",
        "| effort | encode s per image (mean over qualities) | bpp at q" + "/".join(f"{q:g}" for q in qualities)
        + " | " + " | ".join(f"{LABELS[m]} BD-rate" for m in metrics) + " |",
        "|---|---|---|" + "---|" * len(metrics),
    ]  # fmt: skip
    if not complete:
        return "\n".join(lines)

    def curve(e: int, metric: str) -> list[tuple[float, float]]:
        return [
            (np.mean([float(by[n, float(q), e]["bpp"]) for n in complete]),
             np.mean([float(by[n, float(q), e][metric]) for n in complete]))
            for q in qualities
        ]  # fmt: skip

    for e in sorted(set([0, *efforts])):
        secs = np.mean([float(by[n, float(q), e]["encode_s"]) for n in complete for q in qualities])
        bpps = "/".join(f"{b:.4f}" for b, _ in curve(e, "psnr"))
        bd = [bd_pair(curve(0, m), curve(e, m), m)["bd_rate_pct"] for m in metrics]
        text = ["-" if e == 0 else (f"{v:+.1f} %" if v is not None else "n/a") for v in bd]
        lines.append(f"| {e} | {secs:.2f} | {bpps} | " + " | ".join(text) + " |")
    return "\n".join(lines)


def against_baselines(rows: list[dict], baseline_rows: list[dict], qualities, efforts) -> str:
    """Markdown: BD-rate of each effort's curve against each baseline's (mean bpp and metric per
    setting) on the images both tables hold, PSNR and MS-SSIM of the fidelity decode."""
    by = {(r["image"], float(r["quality"]), int(r["effort"])): r for r in rows}
    names = sorted({r["image"] for r in rows})
    names = [n for n in names if all((n, float(q), e) in by for q in qualities for e in efforts)]
    codecs = sorted({r["codec"] for r in baseline_rows} - {"ours"})
    lines = [
        f"Against the classical codecs of the given results ({len(names)} images, their settings matched to "
        "effort 0's sizes there); BD-rate of ours, negative = fewer bytes than the baseline for the same fidelity",
        "",
        "| effort | " + " | ".join(f"{c} PSNR | {c} MS-SSIM" for c in codecs) + " |",
        "|---|" + "---|---|" * len(codecs),
    ]
    for e in efforts:
        cells = []
        for c in codecs:
            theirs = [r for r in baseline_rows if r["codec"] == c and r["image"] in names]
            settings = sorted({r["setting"] for r in theirs})
            for m in ("psnr", "msssim"):
                curve_b = [
                    (np.mean([float(r["bpp"]) for r in theirs if r["setting"] == s]),
                     np.mean([float(r[m]) for r in theirs if r["setting"] == s]))
                    for s in settings
                    if len([r for r in theirs if r["setting"] == s]) == len(names)
                ]  # fmt: skip
                ours = [
                    (np.mean([float(by[n, float(q), e]["bpp"]) for n in names]),
                     np.mean([float(by[n, float(q), e][m]) for n in names]))
                    for q in qualities
                ]  # fmt: skip
                value = bd_pair(sorted(curve_b), ours, m)["bd_rate_pct"]
                cells.append("n/a" if value is None else f"{value:+.1f} %")
        lines.append(f"| {e} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _read(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


if __name__ == "__main__":
    sys.exit(main())
