"""Same file, same pixels, for any -j and thread count: decode a folder of .dpc files every way, compare.

    python -m scripts.decode_determinism ../shared/data/kodak --images 6 --quality 2 --out .data/determinism

The first N images are compressed at one quality (with `dpc compress`), once as the default
records them and once recording 4 refinement steps; then `dpc decompress` decodes both folders
with -j 1 and -j 2, under OMP_NUM_THREADS=1 and =2, the default decode and --fidelity. Every
decode of a file must give the same PNG bytes. Prints one line per (folder, mode) and the CPU;
exit 1 if any differ.
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from eval.bench import cpu_name
from scripts.common import find_images


def dpc(*args, threads: int | None = None) -> None:
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    subprocess.run([sys.executable, "-m", "dpc.entry", *map(str, args), "--quiet"], check=True, env=env)


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.png"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", type=Path)
    ap.add_argument("--images", dest="count", type=int, default=6)
    ap.add_argument("--quality", type=float, default=2)
    ap.add_argument("--out", type=Path, default=Path(".data/determinism"))
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    originals = args.out / "originals"
    originals.mkdir(parents=True)
    for path in find_images(args.images)[: args.count]:
        shutil.copy(path, originals / path.name)
    for name, extra in (("plain", []), ("steps4", ["--steps", "4"])):
        dpc("compress", originals, "-o", args.out / name, "-q", args.quality, *extra)
    failed = False
    print(f"CPU: {cpu_name()}")
    for name in ("plain", "steps4"):
        for mode in ("default", "fidelity") if name == "plain" else ("default",):
            seen = {}
            for jobs in (1, 2):
                for threads in (1, 2):
                    out = args.out / f"{name}-{mode}-j{jobs}-t{threads}"
                    flags = ["--fidelity"] if mode == "fidelity" else []
                    dpc("decompress", args.out / name, "-o", out, "-j", jobs, *flags, threads=threads)
                    seen[f"-j {jobs}, {threads} threads"] = digests(out)
            runs = list(seen.values())
            same = all(r == runs[0] for r in runs) and len(runs[0]) == args.count
            failed |= not same
            verdict = "identical" if same else "DIFFER: " + ", ".join(k for k, v in seen.items() if v != runs[0])
            print(f"{name:7s} {mode:9s} {len(runs[0])} files x {len(runs)} ways: {verdict}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
