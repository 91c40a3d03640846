"""The `dpc` console script: signal handling first, the command line (dpc/cli.py) after.

Importing the CLI's commands costs seconds (torch, diffusers), and a Ctrl-C or a SIGTERM in
that time must end like one later: in one line and exit code 130 / 143, not in a traceback
or a silent death. So this module imports nothing but `signal` and `sys` before it sets the
SIGTERM handler (SIGINT is Python's KeyboardInterrupt from the start); dpc/cli.py then
keeps them for the run. Only the interpreter's own start-up (about 0.1 s) comes before.
"""

import signal
import sys


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that outputs in progress are cleaned up as for Ctrl-C."""


def on_sigterm(signum, frame):
    raise Terminated()


def main() -> int:
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        from .cli import main as run
    except KeyboardInterrupt as exc:  # during the imports: nothing is written yet
        terminated = isinstance(exc, Terminated)
        print(f"dpc: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
    return run()


if __name__ == "__main__":
    sys.exit(main())
