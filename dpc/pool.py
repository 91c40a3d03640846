"""The local process pool of `dpc compress|decompress FOLDER --jobs N`: N worker processes.

- Workers start with "forkserver" (or "spawn" where there is none), never "fork": torch and its threads
  do not survive a fork. Each loads the Codec once (dpc/jobs.py: load_codec) and uses
  cpu_count // N torch threads, then does one file after the other as they are handed out.
- A worker that dies (out of memory, a crash, killed) fails its file; a new one takes the rest.
  One that cannot load the model ends the run: nothing could succeed.
- Ctrl-C (SIGINT) or SIGTERM: dpc/batch.py calls `stop`, which ends the workers with SIGTERM, on which
  they unwind so write_atomic removes its temp file (dpc/signals.py: as_worker).
"""

import multiprocessing
import multiprocessing.forkserver
import os
import signal
from collections import deque
from multiprocessing.connection import wait
from pathlib import Path

from codec.errors import CodecError

from . import signals
from .exit_codes import INTERNAL_ERROR
from .files import remove_temp_files
from .jobs import Task, internal_message, load_codec, process_reply

# Each worker loads the models: about 550 MB of memory measured per worker (issue #30: -j 8 peaked
# at 4.7 GB), so -j is capped by the memory available as well as by the cores.
WORKER_MEMORY = 550 * 2**20


def worker_limit(requested: int) -> tuple[int, str | None]:
    """(workers to start, a line saying why, if fewer than `requested`): at most one per core and
    one per WORKER_MEMORY of the memory available now."""
    cores = _cpu_count()
    available = _available_memory()
    by_memory = max(1, available // WORKER_MEMORY) if available is not None else requested
    n = max(1, min(requested, cores, by_memory))
    if n == requested:
        return n, None
    memory = f"{available / 2**30:.1f} GB available" if available is not None else "memory unknown"
    why = f"{cores} core{'s' if cores > 1 else ''}, {memory}, about {WORKER_MEMORY // 2**20} MB per worker"
    return n, f"-j {requested} capped to {n} ({why})"


def _available_memory() -> int | None:
    """Bytes of memory available for new processes (Linux: MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class Pool:
    """`n` worker processes for `task`; `run(report)` does the report's `todo` (dpc/report.py)."""

    def __init__(self, task: Task, n: int):
        self.task, self.n = task, n
        self.workers: list[_Worker] = []

    def run(self, report) -> None:
        ctx = _context()
        threads = max(1, _cpu_count() // self.n)
        queue = deque(report.todo)
        for _ in range(self.n):
            self.workers.append(_Worker(ctx, self.task, threads))
            _give(self.workers[-1], queue, report)
        while busy := [w for w in self.workers if w.job is not None]:
            ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy]))
            for w in busy:
                if w.conn not in ready and w.process.sentinel not in ready:
                    continue
                try:
                    reply = w.conn.recv()
                except (EOFError, OSError):  # the worker died (out of memory, a crash, killed)
                    w.process.join()
                    remove_temp_files(w.job[1])
                    report.done(w.job[0], (f"worker process died ({_how(w.process.exitcode)})", INTERNAL_ERROR))
                    w.job = None
                    if queue:
                        self.workers.append(_Worker(ctx, self.task, threads))
                        _give(self.workers[-1], queue, report)
                    continue
                if reply[0] == "fatal":  # the worker could not load the model: nothing can succeed
                    error = CodecError(reply[1])
                    error.exit_code = reply[2]
                    raise error
                report.done(w.job[0], None if reply[0] == "ok" else (reply[1], reply[2]))
                _give(w, queue, report)
        for w in self.workers:
            w.process.join()

    def stop(self) -> None:
        """Interrupted (or a fatal error): end the workers (SIGTERM, then SIGKILL after 10 s)."""
        for w in self.workers:
            if w.process.is_alive():
                w.process.terminate()
        for w in self.workers:
            w.process.join(10)
            if w.process.is_alive():
                w.process.kill()
                w.process.join()


def _give(w: "_Worker", queue: deque, report) -> None:
    if queue:
        index, src, dst = queue.popleft()
        w.job = (index, dst)
        report.started(index, dst)
        message = (src, dst)
    else:
        w.job = message = None
    try:
        w.conn.send(message)
    except OSError:  # it died meanwhile: the next wait() sees its sentinel
        pass


def _how(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            pass
    return f"exit code {exitcode}"


def _context():
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if ctx.get_start_method() == "forkserver":
        ctx.set_forkserver_preload(["codec.pipeline", "dpc.pool"])  # torch is imported once, by the server
        with signals.children_ignore_sigint():  # the server's imports take seconds: no traceback on Ctrl-C
            multiprocessing.forkserver.ensure_running()
    return ctx


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class _Worker:
    def __init__(self, ctx, task: Task, threads: int):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, task, threads), daemon=True)
        with signals.sigint_blocked():  # Ctrl-C reaches the whole process group (dpc/signals.py)
            self.process.start()
        child.close()
        self.job: tuple[int, Path] | None = None  # (job index, output) while it works on one


def _worker_main(conn, task: Task, threads: int) -> None:
    signals.as_worker()
    try:
        codec = load_codec(task, threads)
    except Exception as exc:
        code = exc.exit_code if isinstance(exc, CodecError) else INTERNAL_ERROR
        try:
            conn.send(("fatal", str(exc) if isinstance(exc, CodecError) else internal_message(exc), code))
        except OSError:
            pass
        return
    while True:
        try:
            job = conn.recv()
        except EOFError:  # the parent is gone
            return
        if job is None:
            return
        try:
            conn.send(process_reply(codec, task, *job))
        except OSError:  # the parent is gone
            return
