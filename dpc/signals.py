"""Signal handling of `dpc`: Ctrl-C (SIGINT) and SIGTERM end a run in one line, 130 / 143.

Imports nothing but `signal`, `sys` and `contextlib` (and `threading` once a signal comes
mid-import): dpc/entry.py sets these handlers before any slow import (torch), so a signal in the
first seconds ends like one later.

- In the CLI's process: SIGTERM -> `Terminated`, SIGINT -> KeyboardInterrupt (`on_signal`), and
  each one recorded in `received`. One that comes while the main thread imports is raised as soon
  as the import is done, not inside it: torch's C++ initialisers abort on an exception. Some
  libraries import optional parts under a bare `except:`, which would swallow the
  KeyboardInterrupt (and later imports, torch's among them, happen inside the command); a signal
  that came is honoured once the imports are done, before any work (`raise_if_received`, called
  per file by dpc/jobs.py), and an error that follows a swallowed signal is reported as the
  interruption it is (dpc/cli.py).
- Cleaning up after one (stopping workers, removing temp files): both ignored (`ignored`).
- Worker processes (dpc/pool.py): started with SIGINT blocked (`sigint_blocked`), then they ignore
  it (the parent stops them with SIGTERM) and unwind on SIGTERM (`as_worker`), so that write_atomic
  removes its temp file. The forkserver they fork from is a new program (exec), which inherits an
  ignored signal but not a blocked one, so it is started with SIGINT ignored
  (`children_ignore_sigint`): a Ctrl-C while it imports torch printed its traceback (issue #30).
"""

import signal
import sys
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that outputs in progress are cleaned up as for Ctrl-C."""


received: list[int] = []  # the SIGINT / SIGTERM this run got, also one that a library swallowed
_deferred: list[int] = []  # a signal that came mid-import, to be raised once the import is done


def on_signal(signum, frame):
    """SIGTERM -> Terminated, SIGINT -> KeyboardInterrupt, and a record of it in `received`.

    Not in the middle of an import: torch's import runs C++ initialisers (c10d's, for one) that call
    back into Python, and an exception raised there cannot unwind through them: the process died
    with "terminate called after throwing an instance of 'pybind11::error_already_set'" (SIGABRT,
    issue #30). There the signal waits until the main thread has left its imports (`_raise_later`)."""
    if signum not in received:
        received.append(signum)
    if _importing(frame):
        _raise_later(signum)
        return
    _deferred.clear()
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def raise_if_received() -> None:
    """At a safe point (the imports done, nothing written yet): raise for a signal that came
    while a library's bare `except:` was running, and was swallowed there, or that still waits
    for an import to end."""
    if received:
        _deferred.clear()
        raise Terminated() if signal.SIGTERM in received else KeyboardInterrupt()


def _importing(frame) -> bool:
    """Whether this stack runs an import (Python's import machinery has a frame in it)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _raise_later(signum: int) -> None:
    """Hand `signum` to the main thread again every 50 ms (`on_signal` returns while it still
    imports, and raises once it does not) until it has been raised."""
    import _thread
    import threading
    import time

    if _deferred:  # a watcher is already at it
        return
    _deferred.append(signum)

    def redeliver():
        while _deferred:
            time.sleep(0.05)
            if _deferred:
                _thread.interrupt_main(_deferred[0])

    threading.Thread(target=redeliver, name="dpc-signal-after-import", daemon=True).start()


def stopped(terminated: bool) -> int:
    """The one line a run stopped by a signal ends with; returns its exit code (143 SIGTERM, 130 SIGINT)."""
    print(f"dpc: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
    return 143 if terminated else 130


@contextmanager
def ignored():
    """SIGINT and SIGTERM ignored inside: a second Ctrl-C does not cut the cleaning up short."""
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def _sigmask(how, mask=frozenset({signal.SIGINT})):
    return signal.pthread_sigmask(how, mask) if hasattr(signal, "pthread_sigmask") else set()


@contextmanager
def sigint_blocked():
    """Start a worker process in here: Ctrl-C reaches the whole process group, and the worker
    inherits SIGINT blocked until `as_worker` has set it to ignored."""
    mask = _sigmask(signal.SIG_BLOCK)
    try:
        yield
    finally:
        _sigmask(signal.SIG_SETMASK, mask)


@contextmanager
def children_ignore_sigint():
    """Start a helper program in here (one that execs a new interpreter) that must ignore Ctrl-C
    from its first instruction. CPython's process start resets the signal mask of the new program,
    but an ignored signal stays ignored across exec. Keep the block short (a fork and exec): SIGINT
    is blocked in this thread meanwhile, so a Ctrl-C aimed at it stays pending and is raised after,
    but one that the kernel hands to another of our threads in that window is lost. Outside the
    main thread (the CLI run in-process from a thread) handlers cannot be set: nothing is changed."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    mask = _sigmask(signal.SIG_BLOCK)
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        _sigmask(signal.SIG_SETMASK, mask)


def as_worker() -> None:
    """A worker process's handling: SIGINT ignored (the parent handles Ctrl-C and stops us with
    SIGTERM), SIGTERM unwinds (SystemExit), and such an exit is not printed as an error."""
    sys.unraisablehook = _quiet_unraisable
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    _sigmask(signal.SIG_UNBLOCK)


def _exit_on_sigterm(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(128 + signum)  # unwinds: write_atomic's `finally` removes its temp file


def _quiet_unraisable(info) -> None:
    """A SIGTERM that lands in a finalizer (an unclosed file's ResourceWarning, mid-import) raises
    SystemExit where Python can only print it as "Exception ignored ... Traceback": we are being
    stopped on purpose, so say nothing; anything else is printed as usual."""
    if not issubclass(info.exc_type, (SystemExit, KeyboardInterrupt)):
        sys.__unraisablehook__(info)
