"""How long the command line takes to answer, against what it cannot avoid (best of --repeats).

    python -m scripts.startup_times ../shared/data/kodak/kodim23.png --json rd/startup.json

Measures, each in a fresh process:
- `python -c "import torch"`: the floor of anything that runs a model;
- `dpc --help`, `dpc info FILE` (no model, no torch);
- a whole `dpc decompress FILE` against `import torch` + the same decode in one process
  (Codec.decompress timed inside a process that has imported torch and loaded the weights:
  everything else the command does, loading the weights included, counts against it).
FILE is the image compressed at --quality once, before timing.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DECODE_IN_PROCESS = """
import sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
from codec import Codec
c = Codec.load()
t2 = time.perf_counter()
c.decompress(open(sys.argv[1], "rb").read())
print(t1 - t0, t2 - t1, time.perf_counter() - t2)
"""


def best(cmd: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("image", type=Path)
    ap.add_argument("--quality", default="3")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    py, dpc = sys.executable, [sys.executable, "-m", "dpc.entry"]
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "f.dpc"
        subprocess.run([*dpc, "compress", str(args.image), "-o", str(file), "-q", args.quality], check=True)
        torch_s = best([py, "-c", "import torch"], args.repeats)
        help_s = best([*dpc, "--help"], args.repeats)
        info_s = best([*dpc, "info", str(file)], args.repeats)
        whole_s = best([*dpc, "decompress", str(file), "-o", str(Path(tmp) / "d.png"), "--force"], args.repeats)
        runs = []
        for _ in range(args.repeats):
            out = subprocess.run([py, "-c", DECODE_IN_PROCESS, str(file)], check=True, capture_output=True, text=True)
            runs.append(tuple(float(v) for v in out.stdout.split()))
        import_s, load_s, decode_s = min(runs, key=sum)
    result = {
        "import_torch_s": torch_s,
        "help_s": help_s,
        "info_s": info_s,
        "decompress_s": whole_s,
        "in_process_import_torch_s": import_s,
        "in_process_load_s": load_s,
        "in_process_decode_s": decode_s,
        "help_vs_torch": help_s / torch_s,
        "info_vs_torch": info_s / torch_s,
        # the issue's yardstick: import torch + the decode itself (the weights' loading counts against us)
        "decompress_vs_torch_plus_decode": whole_s / (torch_s + decode_s),
    }
    print("| command | seconds | ratio |\n|---|---|---|")
    print(f'| `python -c "import torch"` | {torch_s:.2f} | 1 |')
    print(f"| `dpc --help` | {help_s:.2f} | {result['help_vs_torch']:.2f} x import torch |")
    print(f"| `dpc info FILE` | {info_s:.2f} | {result['info_vs_torch']:.2f} x import torch |")
    print(
        f"| `dpc decompress FILE` | {whole_s:.2f} | {result['decompress_vs_torch_plus_decode']:.2f} x "
        f"(import torch + the decode in one process, {decode_s:.2f} s; loading the weights {load_s:.2f} s) |"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
