"""Ctrl-C and SIGTERM at every moment of a run: each must end in one line and exit 130 / 143 (or 0,
the run being over), never in a traceback, a C++ abort or death by the signal (issue #30).

    python -m scripts.signal_sweep                        # dpc compress of a 256 px image
    python -m scripts.signal_sweep --jobs 2 --signals INT # a -j 2 folder run (workers, forkserver)

Starts the console script again and again, each time in a new session with SIGINT at its default
(as a terminal would; a shell's background job ignores it), and sends the signal to the whole
process group --start, --start + --step, ... seconds after the start. Prints the failing cases
and a count; exit 1 if any failed.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--start", type=float, default=0.2, help="seconds after start of the first signal")
    ap.add_argument("--stop", type=float, default=3.0)
    ap.add_argument("--step", type=float, default=0.1)
    ap.add_argument("--jobs", type=int, default=0, help="0: one file; N: a folder of 6 files with -j N")
    ap.add_argument("--signals", nargs="+", choices=["INT", "TERM"], default=["INT", "TERM"])
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="signal_sweep_"))
    rng = np.random.default_rng(0)
    images = work / "images"
    images.mkdir()
    for i in range(6 if args.jobs else 1):
        Image.fromarray((rng.random((256, 256, 3)) * 255).astype(np.uint8)).save(images / f"x{i}.png")
    dpc = str(Path(sys.executable).with_name("dpc"))
    if args.jobs:
        command = [dpc, "compress", str(images), "-o", str(work / "out"), "-j", str(args.jobs), "--force"]
    else:
        command = [dpc, "compress", str(images / "x0.png"), "-o", str(work / "x0.dpc"), "--force"]

    failed = cases = 0
    moments = np.arange(args.start, args.stop + 1e-9, args.step)
    for moment in moments:
        for name in args.signals:
            sig = getattr(signal, f"SIG{name}")
            proc = subprocess.Popen(
                command, stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=_sigint_default
            )
            time.sleep(moment)
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:  # already over
                pass
            err = proc.communicate(timeout=300)[1]
            lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "%|" not in line]
            expected = {0, 128 + sig}
            ok = (
                proc.returncode in expected
                and len(lines) <= 2
                and "Traceback" not in err
                and "terminate called" not in err
            )
            cases += 1
            if not ok:
                failed += 1
                said = " | ".join(lines)[:300]
                print(f"{moment:.2f} s SIG{name}: exit {proc.returncode}, {len(lines)} lines: {said}")
    print(f"{cases} cases ({' '.join(command[1:2])}, -j {args.jobs or 1}), {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
