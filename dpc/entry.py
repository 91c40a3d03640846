"""The `dpc` console script: signal handling first, the command line (dpc/cli.py) after.

Importing the CLI's commands costs seconds (torch, diffusers), and a Ctrl-C or a SIGTERM in
that time must end like one later: in one line and exit code 130 / 143, not in a traceback
or a silent death. So this module imports nothing but `os`, `sys` and dpc/signals.py (`signal`,
`contextlib`) before it sets the SIGTERM handler (SIGINT is Python's KeyboardInterrupt from the
start); dpc/cli.py then keeps them for the run. Only the interpreter's own start-up (about 0.1 s)
comes before. A signal that a library swallowed during the imports is honoured after them
(dpc/signals.py).

OpenMP threads spin while they wait for work by default, which makes a run 3-10x slower when
any other process wants the CPU (issue #30; the bytes are the same either way).
OpenMP reads OMP_WAIT_POLICY once, when torch loads it, so `main` sets PASSIVE before any
import that could load torch, unless the user chose a policy; worker processes inherit it.
"""

import os
import signal
import sys

from .signals import on_signal, received, stopped


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
        return stopped(signal.SIGTERM in received)
    code = run()
    # The run is over and its exit code decided: the interpreter's exit (torch's teardown, a few
    # tenths of a second) must not end in death by a late Ctrl-C or SIGTERM (exit -2 / -15 and no
    # line, issue #30). Python puts back the default action only where a Python handler was set.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    return code


if __name__ == "__main__":
    sys.exit(main())
