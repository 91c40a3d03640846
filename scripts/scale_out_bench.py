"""Throughput of folder runs: images/s with N Ray workers (a local cluster) against -j N local processes.

    python scripts/scale_out_bench.py ../shared/data/kodak --workers 1 2 --json rd/scale_out.json

Each configuration runs the real command (`dpc compress DIR -o OUT [--ray HEAD] -j N`, then
`dpc decompress`) in a fresh process into a fresh folder, so the command's own start-up
(importing, loading the weights in every worker) counts, as a user pays it. The Ray runs go
to a cluster started once with `ray start --head` on this machine's cores (as a real
cluster is: started once, used by many jobs), so its boot (about 6 s here) is not in them.
Prints a Markdown table.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("images", type=Path, help="folder of images (Kodak)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--quality", default="3")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--port", type=int, default=6399, help="of the local head the Ray runs use")
    args = ap.parse_args()
    n = sum(1 for p in args.images.iterdir() if p.suffix.lower() == ".png")
    dpc = [sys.executable, "-m", "dpc.entry"]
    rows = []
    ray = str(Path(sys.executable).with_name("ray"))
    head = f"127.0.0.1:{args.port}"
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("local", "ray"):
            if mode == "ray":
                start = [ray, "start", "--head", f"--port={args.port}", f"--num-cpus={max(args.workers)}"]
                subprocess.run([*start, "--include-dashboard=false", "--disable-usage-stats"], check=True)
            try:
                for w in args.workers:
                    out, dec = Path(tmp) / f"{mode}{w}", Path(tmp) / f"{mode}{w}-png"
                    extra = (["--ray", head] if mode == "ray" else []) + ["-j", str(w)]
                    enc = timed([*dpc, "compress", str(args.images), "-o", str(out), "-q", args.quality, *extra])
                    dec_s = timed([*dpc, "decompress", str(out), "-o", str(dec), *extra])
                    rows.append({"mode": mode, "workers": w, "compress_s": enc, "decompress_s": dec_s})
                    print(f"{mode} x{w}: compress {enc:.1f} s, decompress {dec_s:.1f} s", file=sys.stderr)
            finally:
                if mode == "ray":
                    subprocess.run([ray, "stop", "--force"], capture_output=True)
    for r in rows:
        r["compress_img_s"], r["decompress_img_s"] = n / r["compress_s"], n / r["decompress_s"]
    print("| run | workers | compress (images/s) | decompress (images/s) |\n|---|---|---|---|")
    for r in rows:
        name = "local `-j`" if r["mode"] == "local" else "`--ray` (a local cluster)"
        print(f"| {name} | {r['workers']} | {r['compress_img_s']:.3f} | {r['decompress_img_s']:.3f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"images": n, "quality": args.quality, "runs": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
