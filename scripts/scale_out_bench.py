"""Throughput of folder runs: images/s with N Ray workers (a local cluster) against -j N local processes.

    python -m scripts.scale_out_bench ../shared/data/kodak --workers 1 2 --json rd/scale_out.json

Each configuration runs the real command (`dpc compress DIR -o OUT [--ray HEAD] -j N`, then
`dpc decompress`) in a fresh process into a fresh folder, so the command's own start-up
(importing, joining the cluster, loading the weights in every worker) counts, as a user pays
it. The Ray runs go to a cluster started once with `ray start --head` on this machine's cores
(as a real cluster is: started once, used by many jobs), so its boot (about 6 s here) is not
in them. Two figures per run:
- end to end: images / the command's wall time, start-up included;
- per image once started: the same command on the first --small images too, and
  (N - small) / (T_N - T_small): what each further image costs, the rate a large
  collection runs at (the fixed start-up of a few seconds cancels out).
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
    ap.add_argument("--small", type=int, default=2, help="images of the start-up run (0: skip it)")
    args = ap.parse_args()
    pngs = sorted(p for p in args.images.iterdir() if p.suffix.lower() == ".png")
    n = len(pngs)
    dpc = [sys.executable, "-m", "dpc.entry"]
    rows = []
    ray = str(Path(sys.executable).with_name("ray"))
    head = f"127.0.0.1:{args.port}"
    with tempfile.TemporaryDirectory() as tmp:
        small = Path(tmp) / "small"
        small.mkdir()
        for p in pngs[: args.small]:
            (small / p.name).symlink_to(p.resolve())
        for mode in ("local", "ray"):
            if mode == "ray":
                start = [ray, "start", "--head", f"--port={args.port}", f"--num-cpus={max(args.workers)}"]
                subprocess.run([*start, "--include-dashboard=false", "--disable-usage-stats"], check=True)
            try:
                for w in args.workers:
                    extra = (["--ray", head] if mode == "ray" else []) + ["-j", str(w)]
                    row = {"mode": mode, "workers": w}
                    for name, src in (("", args.images), ("small_", small if args.small else None)):
                        if src is None:
                            continue
                        out, dec = Path(tmp) / f"{name}{mode}{w}", Path(tmp) / f"{name}{mode}{w}-png"
                        enc = timed([*dpc, "compress", str(src), "-o", str(out), "-q", args.quality, *extra])
                        row[f"{name}compress_s"] = enc
                        row[f"{name}decompress_s"] = timed([*dpc, "decompress", str(out), "-o", str(dec), *extra])
                    rows.append(row)
                    print(f"{mode} x{w}: {row}", file=sys.stderr)
            finally:
                if mode == "ray":
                    subprocess.run([ray, "stop", "--force"], capture_output=True)
    for r in rows:
        for verb in ("compress", "decompress"):
            r[f"{verb}_img_s"] = n / r[f"{verb}_s"]
            if args.small:
                r[f"{verb}_started_img_s"] = (n - args.small) / (r[f"{verb}_s"] - r[f"small_{verb}_s"])
    print(
        "| run | workers | compress, end to end | compress, once started | decompress, end to end "
        "| decompress, once started |\n|---|---|---|---|---|---|"
    )
    for r in rows:
        name = "local `-j`" if r["mode"] == "local" else "`--ray` (a local cluster)"
        keys = ("compress_img_s", "compress_started_img_s", "decompress_img_s", "decompress_started_img_s")
        cells = [f"{r.get(k, float('nan')):.2f}" for k in keys]
        print(f"| {name} | {r['workers']} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"images": n, "small": args.small, "quality": args.quality, "unit": "images/s"}
        args.json.write_text(json.dumps(meta | {"runs": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
