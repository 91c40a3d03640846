"""`dpc bench`: decoding latency and peak memory per stage, per configuration and image size.

    dpc bench [IMAGES...] [--sizes 512,1024,2048] [--configs naive,fp32,int8] [--json FILE]

A configuration is a name made of `+`-joined tokens (see CONFIG_TOKENS), e.g. `fp32`,
`int8+channels_last`, `bf16+tile0`, `fp32+steps50+tile0`; `naive` is the baseline of
docs/performance.md (fp32, 50 steps, untiled, no compile, no offload) and `fast` the
recommended setting of the device (`FAST`). Each image is resized and centre-cropped to
each size, compressed once (fp32, `--quality`), then decoded by every configuration in
a process of its own (eval/bench_worker.py): latency is the median of `--repeats` runs
after `--warmup`; memory is the peak per stage (CUDA max allocated; peak RSS on the CPU,
in a separate run) and its working part (peak minus what was held when the stage began).
Every configuration's output is compared with the `fp32` configuration's output and
with the original (PSNR, MS-SSIM). Writes the table (stdout, and `--out`/bench.md), the
JSON and a plot of time and memory against image size.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from bitstream import bits_per_pixel

if TYPE_CHECKING:  # numpy and Pillow are imported where used: `dpc --help` builds this parser
    from PIL import Image

CONFIG_TOKENS = {
    "fp32": {"dtype": "fp32"},
    "fp16": {"dtype": "fp16"},
    "bf16": {"dtype": "bf16"},
    "int8": {"int8": True},
    "offload": {"offload": True},
    "compile": {"compile": True},
    "channels_last": {"channels_last": True},
    "eager": {"attention": "eager"},  # the prior's attention as matmul + softmax instead of SDPA
}
NAIVE = "fp32+steps50+tile0"
# The recommended fast settings per device type (docs/performance.md has the measurements).
FAST = {"cpu": "int8+bf16", "cuda": "fp16"}
DEFAULT_CONFIGS = {
    "cpu": "naive,fp32,untiled,channels_last,bf16,int8,fast",
    "cuda": "naive,fp32,fp16,bf16,offload,fast",
}


def parse_config(name: str, device: str) -> dict:
    """Configuration name -> {"options": Codec.load keywords, "steps": int|None, "tile": int}."""
    aliases = {"naive": NAIVE, "fast": FAST.get(device.split(":")[0], "fp32"), "untiled": "fp32+tile0"}

    def tokens(text: str) -> list[str]:
        return [t for part in text.split("+") for t in (tokens(aliases[part]) if part in aliases else [part])]

    from codec.options import DEFAULT_TILE

    spec = {"options": {"device": device}, "steps": None, "tile": DEFAULT_TILE}
    for token in tokens(name):
        if token in CONFIG_TOKENS:
            spec["options"].update(CONFIG_TOKENS[token])
        elif token == "fidelity":  # the MSE decoder, no refinement (dpc decompress --fidelity)
            spec["fidelity"] = True
        elif token.startswith("steps") and token[5:].isdigit():
            spec["steps"] = int(token[5:])
        elif token.startswith("tile") and token[4:].isdigit():
            spec["tile"] = int(token[4:])
        else:
            raise ValueError(f"unknown configuration token {token!r} in {name!r}")
    return spec


def add_bench_parser(sub) -> None:
    b = sub.add_parser(
        "bench",
        help="decoding latency and peak memory per stage, per configuration and size",
        description=__doc__.split("\n\n")[1],
    )
    b.add_argument("images", nargs="*", type=Path, help="images (default: scikit-image's astronaut)")
    b.add_argument("--sizes", default="512,1024,2048", help="square sizes in px, comma list (default 512,1024,2048)")
    b.add_argument("--configs", default=None, help="comma list of configurations (default per device, see --help)")
    b.add_argument("--device", default="cpu", help="torch device (default cpu)")
    b.add_argument("--quality", type=int, default=1, help="quality level of the benchmark files (default 1)")
    b.add_argument("--weights", type=Path, default=None, help="codec weights (.safetensors; default: the shipped)")
    b.add_argument("--repeats", type=int, default=3, help="timed runs per configuration and size (default 3)")
    b.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    b.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    b.add_argument("--out", type=Path, default=None, help="folder for bench.md, bench.json, bench.png")
    b.add_argument("--timeout", type=int, default=3600, help="seconds per configuration before it is abandoned")
    b.add_argument("--from-json", type=Path, default=None, help="no measuring: table and plot of an earlier --json")
    b.set_defaults(run=run_bench_command)


def run_bench_command(args) -> int:
    from codec.errors import CodecError, InvalidOptionError

    if args.from_json:
        try:
            result = json.loads(args.from_json.read_text())
            table = format_table(result)
        except (OSError, ValueError, KeyError) as exc:
            raise CodecError(f"bench: cannot read results {args.from_json}: {exc}") from None
        print(table)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "bench.md").write_text(table + "\n")
            plot(result, args.out / "bench.png")
        return 0
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s]
        device = args.device
        configs = (args.configs or DEFAULT_CONFIGS.get(device.split(":")[0], "fp32")).split(",")
        specs = {name: parse_config(name, device) for name in configs}
        if "fp32" not in specs:
            specs = {"fp32": parse_config("fp32", device), **specs}  # the quality reference
        if args.weights is not None:  # every worker decodes with them
            for spec in specs.values():
                spec["options"]["weights"] = str(args.weights)
    except ValueError as exc:
        raise InvalidOptionError(f"bench: {exc}") from None
    if not sizes or min(sizes) < 64 or max(sizes) > 16384:
        raise InvalidOptionError("bench: sizes must be between 64 and 16384 px")
    if args.repeats < 1 or args.warmup < 0:
        raise InvalidOptionError("bench: --repeats must be at least 1 and --warmup at least 0")
    result = run_bench(args.images, sizes, specs, args)
    table = format_table(result)
    print(table)
    json_paths = [p for p in (args.json, args.out / "bench.json" if args.out else None) if p]
    for path in json_paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1))
    if args.out:
        (args.out / "bench.md").write_text(table + "\n")
        plot(result, args.out / "bench.png")
        print(f"wrote {args.out}/bench.md, bench.json, bench.png")
    failed = [r for r in result["runs"] if not r.get("ok")]
    return 1 if failed and len(failed) == len(result["runs"]) else 0


def bench_images(paths: list[Path]) -> list[tuple[str, Image.Image]]:
    from PIL import Image

    from codec import load_image

    if not paths:
        from skimage import data

        return [("astronaut", Image.fromarray(data.astronaut()))]
    return [(p.stem, load_image(p)) for p in paths]


def fit(image: Image.Image, size: int) -> Image.Image:
    """Resize so the short side is `size`, then centre-crop to size x size."""
    from PIL import Image, ImageOps

    return ImageOps.fit(image.convert("RGB"), (size, size), Image.LANCZOS)


def run_bench(paths, sizes, specs, args) -> dict:
    import torch
    from tqdm import tqdm

    from codec import Codec

    codec = Codec.load(getattr(args, "weights", None))
    work = Path(tempfile.mkdtemp(prefix="dpc-bench-"))
    files = []
    for name, image in bench_images(paths):
        for size in sizes:
            im = fit(image, size)
            src = work / f"{name}-{size}.png"
            im.save(src)
            data = codec.compress(im, args.quality)
            dpc = work / f"{name}-{size}.dpc"
            dpc.write_bytes(data)
            files.append(
                {
                    "image": name,
                    "size": size,
                    "png": str(src),
                    "dpc": str(dpc),
                    "bpp": bits_per_pixel(len(data), size * size),
                }
            )
    runs = []
    for config, spec in tqdm(specs.items(), desc="bench", unit="config"):
        job = dict(spec, repeats=args.repeats, warmup=args.warmup)
        job["files"] = [
            {"dpc": f["dpc"], "size": f["size"], "png_out": str(work / f"{config}-{f['image']}-{f['size']}.png")}
            for f in files
        ]
        out = _measure(config, job, work, args.timeout, cpu=torch.device(args.device).type == "cpu")
        results = out.get("files") or []
        results += [{}] * (len(files) - len(results))
        for f, r in zip(files, results, strict=True):
            row = {"config": config, "image": f["image"], "size": f["size"], "bpp": f["bpp"], **spec}
            row.update(r if r else {"ok": False, "error": out.get("error", "not run")})
            row["setup_s"] = out.get("setup_s")
            if row.get("ok") and "rss_start_mib" in out and torch.device(args.device).type == "cpu":
                row["above_start_mib"] = row["peak_mib"] - out["rss_start_mib"]
            row["png_out"] = str(work / f"{config}-{f['image']}-{f['size']}.png")
            runs.append(row)
    _add_quality(runs, files)
    for r in runs:
        r.pop("png_out", None)
    return {
        "machine": _machine(args.device),
        "quality": args.quality,
        "weights": str(args.weights) if getattr(args, "weights", None) else "shipped",
        "repeats": args.repeats,
        "warmup": args.warmup,
        "memory": "CUDA max allocated"
        if torch.device(args.device).type == "cuda"
        else "peak RSS (VmHWM), measured in a separate single run with mmap-served allocations",
        "fast": FAST.get(args.device.split(":")[0]),
        "runs": runs,
    }


def _run_worker(spec_path: Path, result_path: Path, timeout: int, memory_pass: bool = False) -> dict:
    env = dict(os.environ)
    if memory_pass:
        # glibc keeps freed heap pages, so RSS would remember earlier stages' tensors; serving
        # large blocks by mmap returns them at free and makes RSS track live memory (as CUDA's
        # allocated counter does). It costs system time, so the timing pass runs without it.
        env["MALLOC_MMAP_THRESHOLD_"] = str(1 << 17)
        env["MALLOC_TRIM_THRESHOLD_"] = str(1 << 17)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "eval.bench_worker", str(spec_path), str(result_path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    if proc.returncode != 0 or not result_path.exists():
        lines = (proc.stderr or "").strip().splitlines()
        return {"error": f"worker exited with {proc.returncode}: {lines[-1] if lines else ''}"}
    return json.loads(result_path.read_text())


def _measure(config: str, job: dict, work: Path, timeout: int, cpu: bool) -> dict:
    """Timing pass (warm-up + repeats); on the CPU a second, single-run pass for memory."""
    spec_path, result_path = work / f"{config}.spec.json", work / f"{config}.result.json"
    spec_path.write_text(json.dumps(job))
    out = _run_worker(spec_path, result_path, timeout)
    if not cpu or out.get("error"):
        return out
    memory_job = dict(
        job, repeats=1, warmup=0, files=[dict(f, png_out=f["png_out"] + ".mem.png") for f in job["files"]]
    )
    spec_path.write_text(json.dumps(memory_job))
    mem = _run_worker(spec_path, result_path, timeout, memory_pass=True)
    for timed, measured in zip(out.get("files", []), mem.get("files", []), strict=False):
        if timed.get("ok") and measured.get("ok"):
            for key in ("peak_mib", "working_mib"):
                timed[key] = measured[key]
            for name, st in timed["stages"].items():
                for key in ("peak_mib", "working_mib"):
                    st[key] = measured["stages"][name][key]
    out["rss_start_mib"] = mem.get("rss_start_mib", out.get("rss_start_mib"))
    return out


def _add_quality(runs: list[dict], files: list[dict]) -> None:
    import numpy as np
    from PIL import Image

    from eval.metrics import msssim, psnr

    def load(path):
        return Image.open(path).convert("RGB")

    reference = {(r["image"], r["size"]): r["png_out"] for r in runs if r["config"] == "fp32" and r.get("ok")}
    naive = {(r["image"], r["size"]): r["png_out"] for r in runs if r["config"] == "naive" and r.get("ok")}
    originals = {(f["image"], f["size"]): f["png"] for f in files}
    for r in runs:
        if not r.get("ok"):
            continue
        out = load(r["png_out"])
        orig = load(originals[(r["image"], r["size"])])
        r["psnr"], r["msssim"] = psnr(orig, out), msssim(orig, out)
        ref = reference.get((r["image"], r["size"]))
        if ref:
            ref_img = load(ref)
            r["psnr_vs_fp32"], r["msssim_vs_fp32"] = psnr(ref_img, out), msssim(ref_img, out)
            r["identical_to_fp32"] = not np.isfinite(r["psnr_vs_fp32"])
            if r["identical_to_fp32"]:
                r["psnr_vs_fp32"] = None  # infinite: JSON has no number for it
        if (r["image"], r["size"]) in naive:  # the baseline of docs/performance.md
            r["msssim_vs_naive"] = msssim(load(naive[(r["image"], r["size"])]), out)


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _machine(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    return f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def format_table(result: dict) -> str:
    cpu = "RSS" in result["memory"]
    lines = [
        f"machine: {result['machine']}; quality {result['quality']}; median of {result['repeats']} runs "
        f"after {result['warmup']} warm-up; memory: {result['memory']}",
        "",
        "| config | size | steps | decode s | entropy s | refine s (per step) | pixels s | peak MiB | working MiB"
        + (" | above start MiB" if cpu else "")
        + " | PSNR / MS-SSIM vs fp32 | MS-SSIM vs naive | PSNR / MS-SSIM vs original | load s / first decode s |",
        "|---|---|---|---|---|---|---|---|---|" + ("---|" if cpu else "") + "---|---|---|---|",
    ]
    for r in result["runs"]:
        if not r.get("ok"):
            lines.append(f"| {r['config']} | {r['size']} | not run: {r.get('error', '?')} |")
            continue
        st = r["stages"]
        per_step = statistics.median(st["refine"]["step_s"]) if st["refine"]["step_s"] else 0.0
        if r.get("identical_to_fp32"):
            vs32 = "identical"
        elif r.get("psnr_vs_fp32") is not None:
            vs32 = f"{r['psnr_vs_fp32']:.2f} / {r['msssim_vs_fp32']:.4f}"
        else:
            vs32 = "-"
        vs_naive = f"{r['msssim_vs_naive']:.4f}" if "msssim_vs_naive" in r else "-"
        lines.append(
            f"| {r['config']} | {r['size']} | {r['steps']} | {r['decode_s']:.3f} | {st['entropy']['seconds']:.3f} | "
            f"{st['refine']['seconds']:.3f} ({per_step:.3f}) | {st['pixels']['seconds']:.3f} | {r['peak_mib']:.0f}"
            f" | {r['working_mib']:.0f}"
            + (f" | {r['above_start_mib']:.0f}" if cpu else "")
            + f" | {vs32} | {vs_naive} | {r['psnr']:.2f} / {r['msssim']:.4f}"
            + f" | {r['setup_s']:.1f} / {r['first_decode_s']:.1f} |"
        )
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cpu = "RSS" in result["memory"]
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    for config in dict.fromkeys(r["config"] for r in result["runs"]):
        rows = sorted((r for r in result["runs"] if r["config"] == config and r.get("ok")), key=lambda r: r["size"])
        if not rows:
            continue
        sizes = [r["size"] for r in rows]
        (line,) = ax_t.plot(sizes, [r["decode_s"] for r in rows], marker="o", label=config)
        colour = line.get_color()
        ax_m.plot(sizes, [r["peak_mib"] for r in rows], marker="o", color=colour)
        ax_m.plot(sizes, [r["working_mib"] for r in rows], marker="x", linestyle="--", color=colour)
    memory = "peak RSS (solid) / working (dashed), MiB" if cpu else "peak / working allocated (solid / dashed), MiB"
    for ax, label in ((ax_t, "decode time (s)"), (ax_m, memory)):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("image side (px, square)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=8)
    fig.suptitle(f"dpc bench: {result['machine']}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
