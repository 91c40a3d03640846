"""The `dpc` console script: signal handling first, the command line (dpc/cli.py) after.

Importing the CLI's commands costs seconds (torch, diffusers), and a Ctrl-C or a SIGTERM in
that time must end like one later: in one line and exit code 130 / 143, not in a traceback
or a silent death. So this module imports nothing but `signal` and `sys` before it sets the
SIGTERM handler (SIGINT is Python's KeyboardInterrupt from the start); dpc/cli.py then
keeps them for the run. Only the interpreter's own start-up (about 0.1 s) comes before.

Some libraries import optional parts under a bare `except:`, which would swallow the
KeyboardInterrupt and let the command run on as if never interrupted. So during the imports
both signals are also recorded, and a signal that came is honoured once they are done.
"""

import signal
import sys


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that outputs in progress are cleaned up as for Ctrl-C."""


def on_sigterm(signum, frame):
    raise Terminated()


def main() -> int:
    received = []  # signals that came during the imports, caught or swallowed by a library

    def on_sigint_importing(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt()

    def on_sigterm_importing(signum, frame):
        received.append(signum)
        raise Terminated()

    sigint = signal.getsignal(signal.SIGINT)  # SIG_IGN when started in the background: left so
    signal.signal(signal.SIGTERM, on_sigterm_importing)
    if sigint is signal.default_int_handler:
        signal.signal(signal.SIGINT, on_sigint_importing)
    try:
        from .cli import main as run
    except KeyboardInterrupt:  # during the imports: nothing is written yet
        pass
    finally:
        signal.signal(signal.SIGTERM, on_sigterm)
        signal.signal(signal.SIGINT, sigint)
    if received:
        terminated = signal.SIGTERM in received
        print(f"dpc: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
    return run()


if __name__ == "__main__":
    sys.exit(main())
