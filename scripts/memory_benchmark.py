"""Peak memory and time of `dpc decompress` against image size (a benchmark, not a test).

    python -m scripts.memory_benchmark ../shared/data/kodak --sizes 1024 2048 4096 8192 \\
        --untiled-up-to 2048 --json rd/memory.json

For each size a photo-like test image is made by tiling the dataset's photos
(a mosaic, resized to fill SIZE x SIZE), compressed once with `dpc compress`,
and decoded by `dpc decompress` in a fresh process, whose peak resident memory
(ru_maxrss from wait4) and wall time are reported; with the default tiling and,
up to --untiled-up-to, with --tile 0 for comparison. Files go to a temporary folder.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from eval.bench import cpu_name
from scripts.common import mosaic


def run_measured(cmd: list[str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MiB, exit code) of a child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(proc.stderr.read().decode(errors="replace").strip(), file=sys.stderr)
    return wall, usage.ru_maxrss / 1024, code


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path, help="folder of photos (PNG) to build the test images from")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    ap.add_argument("--quality", type=int, default=1)
    ap.add_argument("--untiled-up-to", type=int, default=2048, help="also decode with --tile 0 up to this size")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()

    photos = sorted(args.dataset.glob("*.png"))
    dpc = [sys.executable, "-m", "dpc.cli"]
    results = []
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores")
    print("| size | file bytes | bpp | tiling | decode wall s | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            src, dpc_file = Path(tmp) / f"{size}.png", Path(tmp) / f"{size}.dpc"
            mosaic(photos, size).save(src, compress_level=1)
            _, enc_rss, code = run_measured(
                [*dpc, "compress", str(src), "-o", str(dpc_file), "-q", str(args.quality), "-f"]
            )
            if code:
                raise SystemExit(f"compress failed at {size}")
            nbytes = dpc_file.stat().st_size
            for tile in ["512", "0"] if size <= args.untiled_up_to else ["512"]:
                out = Path(tmp) / f"{size}-{tile}.png"
                wall, rss, code = run_measured(
                    [*dpc, "decompress", str(dpc_file), "-o", str(out), "--tile", tile, "-f"]
                )
                ok = code == 0 and Image.open(out).size == (size, size)
                row = dict(
                    size=size,
                    bytes=nbytes,
                    bpp=nbytes * 8 / size**2,
                    tile=int(tile),
                    seconds=wall,
                    peak_rss_mib=rss,
                    compress_peak_rss_mib=enc_rss,
                    ok=ok,
                )
                results.append(row)
                label = "default (512 px tiles)" if tile != "0" else "off (--tile 0)"
                print(f"| {size}x{size} | {nbytes} | {row['bpp']:.4f} | {label} | {wall:.1f} | {rss:.0f} |", flush=True)
                if not ok:
                    raise SystemExit(f"decompress failed at {size} (tile {tile})")
                out.unlink()
            src.unlink()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": cpu_name(), "results": results}, indent=1))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
