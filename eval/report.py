"""summary.json, RD plots, BD-rates and report.md from a finished results table."""

import json
import platform
import warnings
from pathlib import Path

import numpy as np

from .results import PER_IMAGE_METRICS

LOWER_IS_BETTER = {"lpips", "dists", "spectral_gap", "fid", "kid"}
LABELS = {
    "psnr": "PSNR (dB)",
    "msssim": "MS-SSIM",
    "lpips": "LPIPS (AlexNet)",
    "dists": "DISTS",
    "spectral_gap": "spectral gap (log10 power)",
    "fid": "patch FID",
    "kid": "patch KID",
}


def write_report(cfg, table, suite, lowest: dict, skipped: dict, codec) -> dict:
    rows = table.rows
    codecs = [c for c in cfg.codecs if any(r["codec"] == c for r in rows)]
    metrics = [m for m in PER_IMAGE_METRICS if m in suite.per_image_names]
    settings = {}
    for c in codecs:
        for r in rows:
            if r["codec"] == c:
                settings.setdefault(c, [])
                if r["setting"] not in settings[c]:
                    settings[c].append(r["setting"])
    per_setting = {}
    for c in codecs:
        for s in settings[c]:
            rs = [r for r in rows if r["codec"] == c and r["setting"] == s]
            entry = {"images": len(rs), "bpp": _mean(rs, "bpp"), "encode_s": _mean(rs, "encode_s")}
            entry["decode_s"] = _mean(rs, "decode_s")
            entry.update({m: _mean(rs, m) for m in metrics})
            entry.update(suite.distribution_metrics(c, s, [r["image"] for r in rs]))
            per_setting.setdefault(c, {})[s] = entry
    curve_metrics = metrics + [m for m in ("fid", "kid") if m in suite.distribution_names]
    curves = {c: {m: _curve(per_setting[c], m) for m in curve_metrics} for c in codecs}
    bd = {}
    if "ours" in codecs:
        for base in (c for c in codecs if c != "ours"):
            bd[base] = {m: bd_pair(curves[base][m], curves["ours"][m], m) for m in curve_metrics}
    lowest_by_codec = {}
    for key, value in lowest.items():
        name = key.split("/", 1)[0]
        lowest_by_codec.setdefault(name, []).append(value)
    summary = {
        "dataset": str(cfg.dataset),
        "images": len({r["image"] for r in rows}),
        "model_id": f"{codec.model_id:04x}",
        "device": str(codec.device),
        "ours_encode": {"effort": cfg.effort},
        "ours_decode": "fidelity (MSE decoder)" if cfg.fidelity else "default (perceptual decoder)",
        "machine": platform.processor() or platform.machine(),
        "codecs": codecs,
        "unavailable_codecs": skipped,
        "unavailable_metrics": suite.unavailable,
        "settings": per_setting,
        "lowest_bpp": {c: {"mean": float(np.mean(v)), "min": float(np.min(v))} for c, v in lowest_by_codec.items()},
        "bd_vs_baselines": bd,
    }
    (cfg.out / "summary.json").write_text(json.dumps(summary, indent=1))
    plots = _plots(cfg.out, curves, curve_metrics)
    (cfg.out / "report.md").write_text(_markdown(summary, curve_metrics, plots))
    return summary


def _mean(rows, key):
    values = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(values)) if values and len(values) == len(rows) else None


def _curve(settings: dict, metric: str) -> list[tuple[float, float]]:
    points = sorted((e["bpp"], e[metric]) for e in settings.values() if e.get(metric) is not None)
    return [(float(b), float(v)) for b, v in points]


def bd_pair(anchor: list, test: list, metric: str) -> dict:
    """BD-rate (%) and BD-metric of `test` against `anchor` over their common rate range.

    Negative BD-rate = test needs fewer bits for the same quality. Lower-is-better
    metrics are negated first, so the sign convention is the same for all.
    """
    import bjontegaard as bd

    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    a, t = _monotone(anchor, sign), _monotone(test, sign)
    if len(a) < 2 or len(t) < 2:
        return {"bd_rate_pct": None, "bd_metric": None, "reason": "fewer than 2 points on a curve"}
    overlap = min(a[-1][0], t[-1][0]) - max(a[0][0], t[0][0])
    if overlap <= 0:
        return {"bd_rate_pct": None, "bd_metric": None, "reason": "rate ranges do not overlap"}
    args = ([p[0] for p in a], [p[1] for p in a], [p[0] for p in t], [p[1] for p in t])
    out = {}
    method = "akima" if min(len(a), len(t)) >= 3 else "pchip"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the package warns and returns nan instead of raising
            rate = float(bd.bd_rate(*args, method=method, require_matching_points=False, min_overlap=0))
            metric = sign * float(bd.bd_psnr(*args, method=method, require_matching_points=False, min_overlap=0))
    except Exception as exc:  # the package refuses curves it cannot interpolate
        return {"bd_rate_pct": None, "bd_metric": None, "reason": f"{type(exc).__name__}: {exc}"}
    if not (np.isfinite(rate) and np.isfinite(metric)):
        return {"bd_rate_pct": None, "bd_metric": None, "reason": "curves do not overlap once made monotone"}
    out.update(bd_rate_pct=rate, bd_metric=metric)
    out["overlap_bpp"] = [max(a[0][0], t[0][0]), min(a[-1][0], t[-1][0])]
    return out


def _monotone(points: list, sign: float) -> list:
    """Points as (rate, sign * metric), keeping those where quality rises with rate
    (BD integrates a monotone curve)."""
    out = []
    for b, v in sorted(points):
        v = sign * v
        if not out or (b > out[-1][0] and v > out[-1][1]):
            out.append((b, v))
    return out


def _plots(out: Path, curves: dict, metrics: list) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = {}
    for m in metrics:
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for c, by_metric in curves.items():
            pts = by_metric.get(m) or []
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-" if c == "ours" else ".--", label=c)
        ax.set_xscale("log")
        ax.set_xlabel("bits per pixel (file bytes)")
        ax.set_ylabel(LABELS.get(m, m) + (" (lower is better)" if m in LOWER_IS_BETTER else ""))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        paths[m] = f"rd_{m}.png"
        fig.savefig(out / paths[m], dpi=110)
        plt.close(fig)
    return paths


def _markdown(summary: dict, metrics: list, plots: dict) -> str:
    lines = [
        f"# Rate-distortion report: {summary['dataset']}",
        "",
        f"{summary['images']} images; our model {summary['model_id']} on {summary['device']}, "
        f"effort {summary['ours_encode']['effort']}, {summary['ours_decode']} decode; "
        "rate = file bytes on disk x 8 / pixels.",
        "",
        "| codec | setting | images | bpp | "
        + " | ".join(LABELS.get(m, m) for m in metrics)
        + " | encode s | decode s |",
        "|---|---|---|---|" + "---|" * len(metrics) + "---|---|",
    ]
    for c, settings in summary["settings"].items():
        for s, e in sorted(settings.items(), key=lambda kv: kv[1]["bpp"]):
            vals = " | ".join(_num(e.get(m)) for m in [*metrics, "encode_s", "decode_s"])
            lines.append(f"| {c} | {s} | {e['images']} | {e['bpp']:.4f} | {vals} |")
    if summary["bd_vs_baselines"]:
        lines += [
            "",
            "## BD-rate of ours against each baseline",
            "",
            "Negative = ours needs fewer bits for the same quality, over the rate range both cover.",
            "",
        ]
        lines.append("| baseline | " + " | ".join(LABELS.get(m, m) for m in metrics) + " |")
        lines.append("|---|" + "---|" * len(metrics))
        for base, by_metric in summary["bd_vs_baselines"].items():
            cells = []
            for m in metrics:
                r = by_metric[m]
                cells.append(
                    f"{r['bd_rate_pct']:+.1f} %" if r.get("bd_rate_pct") is not None else f"n/a ({r['reason']})"
                )
            lines.append(f"| {base} | " + " | ".join(cells) + " |")
    if summary["lowest_bpp"]:
        lines += ["", "## Lowest rate each baseline reaches (its lowest quality setting)", ""]
        lines += [
            f"- {c}: mean {v['mean']:.4f} bpp, lowest {v['min']:.4f} bpp" for c, v in summary["lowest_bpp"].items()
        ]
    if summary["unavailable_metrics"] or summary["unavailable_codecs"]:
        lines += ["", "## Not measured", ""]
        lines += [f"- {m}: {reason}" for m, reason in summary["unavailable_metrics"].items()]
        lines += [f"- {c}: {reason}" for c, reason in summary["unavailable_codecs"].items()]
    lines += ["", "## Plots", ""] + [f"![{m}]({p})" for m, p in plots.items()]
    return "\n".join(lines) + "\n"


def _num(v) -> str:
    if v is None:
        return "–"
    return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"
