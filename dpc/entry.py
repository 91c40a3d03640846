"""The `dpc` console script: signal handling first, the command line (dpc/cli.py) after.

Importing the CLI's commands costs seconds (torch, diffusers), and a Ctrl-C or a SIGTERM in
that time must end like one later: in one line and exit code 130 / 143, not in a traceback
or a silent death. So this module imports nothing but `os`, `signal` and `sys` before it sets the
SIGTERM handler (SIGINT is Python's KeyboardInterrupt from the start); dpc/cli.py then
keeps them for the run. Only the interpreter's own start-up (about 0.1 s) comes before.

Some libraries import optional parts under a bare `except:`, which would swallow the
KeyboardInterrupt (and later imports, torch's among them, happen inside the command). So every
SIGINT / SIGTERM is also recorded (`received`): a signal that came is honoured once the
imports are done, before any work (`raise_if_received`, called by dpc/batch.py), and an error
that follows a swallowed signal is reported as the interruption it is (dpc/cli.py).

OpenMP threads spin while they wait for work by default, which makes a run 3-10x slower when
any other process wants the CPU (issue #30; the bytes are the same either way).
OpenMP reads OMP_WAIT_POLICY once, when torch loads it, so `main` sets PASSIVE before any
import that could load torch, unless the user chose a policy; worker processes inherit it.
"""

import os
import signal
import sys


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that outputs in progress are cleaned up as for Ctrl-C."""


received: list[int] = []  # the SIGINT / SIGTERM this run got, also one that a library swallowed


def on_signal(signum, frame):
    """SIGTERM -> Terminated, SIGINT -> KeyboardInterrupt, and a record of it in `received`."""
    received.append(signum)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def raise_if_received() -> None:
    """At a safe point (the imports done, nothing written yet): raise for a signal that came
    while a library's bare `except:` was running, and was swallowed there."""
    if received:
        raise Terminated() if signal.SIGTERM in received else KeyboardInterrupt()


def main() -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported: see the docstring
    signal.signal(signal.SIGTERM, on_signal)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # SIG_IGN in the background: left so
        signal.signal(signal.SIGINT, on_signal)
    try:
        from .cli import main as run
    except KeyboardInterrupt:  # during the imports: nothing is written yet
        pass
    if received:
        terminated = signal.SIGTERM in received
        print(f"dpc: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
    return run()


if __name__ == "__main__":
    sys.exit(main())
