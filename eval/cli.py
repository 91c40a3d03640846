"""Arguments of `dpc eval` (the command itself lives in dpc/arguments.py's parser)."""

import argparse
from pathlib import Path

from codec.options import EFFORTS


def _csv(kind):
    return lambda text: [kind(t) for t in text.split(",") if t]


def add_eval_parser(sub) -> None:
    e = sub.add_parser(
        "eval",
        help="rate-distortion evaluation against JPEG, WebP, AVIF and JPEG XL",
        description="Evaluate ours and classical baselines on a folder of images; resumable.",
    )
    e.add_argument("dataset", type=Path, help="folder of images (e.g. Kodak)")
    e.add_argument("--out", type=Path, required=True, help="results folder (CSV, JSON, plots, report.md)")
    e.add_argument("--codecs", type=_csv(str), default=None, help="comma list of ours,jpeg,webp,avif,jxl (default all)")
    e.add_argument("--quality", type=_csv(int), default=None, help="our quality levels, comma list (default all)")
    e.add_argument(
        "--metrics",
        type=_csv(str),
        default=None,
        help="comma list of psnr,msssim,lpips,dists,fid,kid,spectral_gap (default all)",
    )
    e.add_argument(
        "--metric-weights",
        type=Path,
        default=None,
        help="folder with alexnet/vgg16 backbone weights for LPIPS/DISTS (or set DPC_METRIC_WEIGHTS)",
    )
    e.add_argument("--weights", type=Path, help="our model weights (.safetensors); default: the shipped ones")
    e.add_argument("--device", default="cpu", help="torch device for our codec (default cpu)")
    e.add_argument(
        "--effort", type=int, choices=EFFORTS, default=0, metavar="N", help="our encoder effort 0..9 (default 0)"
    )
    e.add_argument("--fidelity", action="store_true", help="decode ours with the MSE decoder (highest PSNR / MS-SSIM)")
    e.set_defaults(run=run_eval_command)


def run_eval_command(args: argparse.Namespace) -> int:
    from .runner import ALL_CODECS, EvalConfig, run_eval

    cfg = EvalConfig(
        dataset=args.dataset,
        out=args.out,
        codecs=args.codecs or list(ALL_CODECS),
        qualities=args.quality,
        metrics=args.metrics,
        metric_weights=args.metric_weights,
        weights=args.weights,
        device=args.device,
        effort=args.effort,
        fidelity=args.fidelity,
    )
    summary = run_eval(cfg)
    print(f"wrote {args.out}/results.csv, summary.json, report.md and {len(summary['codecs'])} codecs' RD plots")
    for m, reason in summary["unavailable_metrics"].items():
        print(f"not measured: {m}: {reason}")
    return 0
