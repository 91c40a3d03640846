"""Running `dpc compress` / `dpc decompress` over (input, output) pairs, in-process or with N worker processes.

- Every output is written by `write_atomic`: complete or absent, never half-written.
- Folder mode: an output that already exists is skipped (not overwritten, not a failure) unless --force,
  so a rerun after Ctrl-C, `kill` or a crash finishes only what is missing.
- Before any encoding: an output that is an input of the run or not a regular file (a FIFO, a device),
  and a folder that cannot be written, fail their files at once (dpc/files.py: check_output).
- Workers start with "forkserver" (or "spawn" where there is none), never "fork": torch and its threads
  do not survive a fork. Each loads the Codec once and uses cpu_count // N torch threads.
- Ctrl-C (SIGINT) or SIGTERM: the workers are stopped (SIGTERM, on which they unwind so write_atomic
  removes its temp file), any temp file left by a job in flight is removed, a summary is printed and
  the KeyboardInterrupt goes on to the CLI (exit 130, or 143 for SIGTERM).
- The end: one line per failure (input order), then "N ok, M skipped, K failed"; the exit code is
  the first failure's (input order), 0 if none.
"""

import io
import multiprocessing
import os
import select
import signal
import sys
import traceback
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

from codec.errors import (
    BitstreamError,
    CodecError,
    ImageReadError,
    InvalidOptionError,
    NoInputsError,
    OutputWriteError,
    UnsafeOutputError,
)
from codec.options import DEFAULT_TILE

from .entry import raise_if_received
from .files import InputSet, check_output, check_writable, remove_temp_files, unwritable_reason, write_atomic
from .progress import StageLine

INTERNAL_ERROR = 70  # as the CLI's exit code for a bug


@dataclass(frozen=True)
class Task:
    """What to do with each pair; picklable, sent once to every worker."""

    verb: str  # "compress" or "decompress"
    quality: float  # on the continuous scale (codec/rate.py)
    force: bool
    weights: Path | None
    max_pixels: int
    refine: dict = field(default_factory=dict)  # RefineSettings overrides (None = file's/level's default)
    tile: int = DEFAULT_TILE  # decompress: pixel-decoding tile side (0 = off)
    prior_weights: Path | None = None
    run_options: dict = field(default_factory=dict)  # Codec.load keywords: device, dtype, int8, ...
    bpp: float | None = None  # compress: the level whose file is nearest this rate, per image
    fidelity: bool = False  # decompress: the MSE decoder, no refinement
    decoder_weights: Path | None = None  # decompress: perceptual-decoder weights (None = shipped)
    quiet: bool = False  # no stage progress for a single file on a terminal
    effort: int = 0  # compress: encoder effort 0..9 (codec/effort.py)


def read_bytes(path: Path) -> bytes:
    fifo = False
    try:
        if path.is_dir():
            raise BitstreamError(f"{path} is a folder, not a .dpc file")
        fifo = path.is_fifo()
        data = _read_fifo(path) if fifo else path.read_bytes()
    except OSError as exc:
        raise BitstreamError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not data:
        if fifo:
            raise BitstreamError(f"{path} is a FIFO with no writer (nothing to read): not a .dpc file")
        raise BitstreamError(f"{path} is empty (0 bytes): not a .dpc file")
    return data


FIFO_GRACE_S = 1.0  # how long a FIFO's writer may take to turn up (one blocked in its open() wakes with ours)


def _read_fifo(path: Path) -> bytes:
    """All a FIFO's writer writes, or b"" when it has none: a plain open() would wait for a writer
    for ever (issue #30). The open does not wait; a writer then gets FIFO_GRACE_S to write, after
    which a non-blocking read tells the cases apart: data, EAGAIN (a writer, silent so far: wait
    for it) or end of file (none)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb", buffering=0) as f:
        select.select([fd], [], [], FIFO_GRACE_S)
        try:
            first = os.read(fd, 1 << 16)
        except BlockingIOError:
            first = None
        if first == b"":
            return b""
        os.set_blocking(fd, True)
        return (first or b"") + f.readall()


def folder_jobs(src: Path, out: Path | None, suffixes, new_suffix: str) -> list[tuple[Path, Path]]:
    """(input, output) pairs for a file or a folder (output folder: `out`, default `src`; created here)."""
    if not src.exists():
        raise (
            ImageReadError(f"{src} does not exist") if new_suffix == ".dpc" else BitstreamError(f"{src} does not exist")
        )
    if not src.is_dir():
        return [(src, out if out is not None else src.with_suffix(new_suffix))]
    out_dir = out if out is not None else src
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidOptionError(f"{out_dir} is a file; with a folder input, -o must name a folder")
    entries = sorted(src.iterdir())
    files = [p for p in entries if p.is_file() and p.suffix.lower() in suffixes]
    skipped = _skipped_entries(entries, files, out_dir, new_suffix)
    if not files:
        raise NoInputsError(f"no {' / '.join(sorted(suffixes))} files in {src}" + "".join(f"; {s}" for s in skipped))
    by_stem: dict[str, Path] = {}
    for f in files:
        if f.stem in by_stem:  # a.jpg and a.png would both become a.dpc: refuse rather than lose one
            raise UnsafeOutputError(
                f"{by_stem[f.stem].name} and {f.name} would both be written to {out_dir / (f.stem + new_suffix)}"
            )
        by_stem[f.stem] = f
    created = None if out_dir.is_dir() else out_dir
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputWriteError(f"cannot create {out_dir}: {exc.strerror or exc}") from None
    verb = "compress" if new_suffix == ".dpc" else "decompress"
    for note in skipped:
        print(f"dpc: {verb}: {note}", file=sys.stderr)
    return FolderJobs(((f, out_dir / (f.stem + new_suffix)) for f in files), created)


class FolderJobs(list):
    """folder_jobs' (input, output) pairs, and the output folder if this run created it.

    A run that stops before its first output (a bad option the Ray workers find, Ctrl-C while
    the model loads) removes that folder again: a failed command leaves nothing behind."""

    def __init__(self, pairs, created: Path | None):
        super().__init__(pairs)
        self.created = created

    def remove_created_folder(self) -> None:
        if self.created is not None:
            try:
                self.created.rmdir()  # only if still empty: never anything a worker wrote
            except OSError:
                pass


def _skipped_entries(entries: list[Path], inputs: list[Path], out_dir: Path, new_suffix: str) -> list[str]:
    """What a folder run leaves out, and why: ["3 files skipped: not images (a.txt, b.csv, c.doc)", ...].

    This run's own outputs (a.dpc beside a.png) are not mentioned: a rerun would list them all.
    """
    outputs = {(out_dir / (f.stem + new_suffix)).resolve() for f in inputs}
    taken = set(inputs)
    folders = [p for p in entries if p.is_dir()]
    others = [p for p in entries if p not in taken and not p.is_dir() and p.resolve() not in outputs]
    what = "not images" if new_suffix == ".dpc" else "not .dpc files"
    notes = []
    for items, noun, why in ((others, "file", what), (folders, "folder", "subfolders are not searched")):
        if items:
            names = ", ".join(p.name for p in items[:3]) + (", ..." if len(items) > 3 else "")
            notes.append(f"{len(items)} {noun}{'s' if len(items) > 1 else ''} skipped: {why} ({names})")
    return notes


def process(codec, task: Task, src: Path, dst: Path, progress=None) -> None:
    """Compress or decompress one file; CodecError on bad input or a failed write.

    `progress(stage, done, total)`: the stages as they advance (the decode's, or the effort search)."""
    raise_if_received()  # a signal a library swallowed during the imports: stop before any output
    check_output(dst, (src,), task.force)  # before the work, which write_atomic then does not waste
    if task.verb == "compress":
        from codec.images import load_image

        image = load_image(src, task.max_pixels)
        if task.bpp is not None:
            data = codec.compress_to_bpp(image, task.bpp, effort=task.effort, progress=progress, **task.refine)[0]
        else:
            refine = codec.default_refine(task.quality).with_overrides(**task.refine)
            data = codec.compress(image, task.quality, refine, effort=task.effort, progress=progress)
    else:
        buf = io.BytesIO()
        data = read_bytes(src)
        image = codec.decompress(data, tile=task.tile, fidelity=task.fidelity, progress=progress, **task.refine)
        image.save(buf, "PNG")
        data = buf.getvalue()
    write_atomic(dst, data, task.force)  # checks the output's type again, right before the rename


def run(
    jobs: list[tuple[Path, Path]], task: Task, codec, n_jobs: int | None = 1, folder: bool = False, cluster=None
) -> int:
    """Do `jobs`; returns the exit code. A single file (not folder mode) raises its CodecError instead.

    `n_jobs`: worker processes (None: 1; with a cluster, one Ray worker per CPU of the cluster).
    `cluster` (dpc/scale_out.py's Cluster): the files go to Ray workers, as a folder run (summary)."""
    if not folder and cluster is None:
        ((src, dst),) = jobs
        advice = "use --force to overwrite"
        if task.verb == "decompress":  # photo.dpc's photo.png is likely the original: --force would lose it
            advice = "it may be the original image: write the decoded one elsewhere with -o OTHER.png"
        check_output(dst, (src,), task.force, advice)  # checked before any work; write_atomic checks again
        check_writable(dst)
        show = not task.quiet and sys.stderr.isatty()  # a single long decode (8192 px: minutes) says where it is
        progress = StageLine(f"{task.verb} {src.name}") if show else None
        try:
            process(codec, task, src, dst, progress)
        except BaseException:  # Ctrl-C or SIGTERM at any point: no temp file stays behind
            remove_temp_files(dst)
            raise
        finally:
            if progress is not None:
                progress.close()
        return 0
    return _Batch(jobs, task).run(codec, n_jobs, cluster)


class _Batch:
    def __init__(self, jobs, task: Task):
        self.jobs, self.task = jobs, task
        todo = [(i, src, dst) for i, (src, dst) in enumerate(jobs) if task.force or not _output_exists(dst)]
        self.skipped = len(jobs) - len(todo)
        self.ok = 0
        self.failures: dict[int, tuple[str, int]] = {}  # job index -> (message, exit code)
        self.todo = self._refuse_early(todo, InputSet(src for src, _ in jobs))
        self.in_flight: dict[int, Path] = {}  # job index -> output being written
        self.workers: list[_Worker] = []

    def _refuse_early(self, todo: list, inputs: InputSet) -> list:
        """Fail, before any work, the jobs whose output is an input or a special file, or whose folder
        cannot be written (a missing or read-only folder fails every file in one go, not after each encode)."""
        reasons: dict[Path, str | None] = {}
        left = []
        for index, src, dst in todo:
            try:
                check_output(dst, inputs, force=True)  # an existing file was skipped above unless --force
            except CodecError as exc:
                self.failures[index] = (str(exc), exc.exit_code)
                continue
            if dst.parent not in reasons:
                reasons[dst.parent] = unwritable_reason(dst.parent)
            if reasons[dst.parent] is not None:
                self.failures[index] = (f"cannot write {dst}: {reasons[dst.parent]}", OutputWriteError.exit_code)
                continue
            left.append((index, src, dst))
        return left

    def run(self, codec, n_jobs: int | None, cluster=None) -> int:
        from tqdm import tqdm

        done = self.skipped + len(self.failures)
        self.bar = tqdm(
            total=len(self.jobs),
            initial=done,
            desc=self.task.verb,
            unit="file",
            file=sys.stderr,
            disable=self.task.quiet,  # --quiet: failures and the summary line only
        )
        try:
            if cluster is not None and self.todo:
                from .scale_out import run_on_ray

                run_on_ray(self, cluster, n_jobs)
            elif (n_jobs or 1) > 1 and len(self.todo) > 1:
                self._parallel(min(n_jobs, len(self.todo)))
            else:
                self._sequential(codec)
        except BaseException:
            self._shutdown()
            if self.ok == 0 and isinstance(self.jobs, FolderJobs):
                self.jobs.remove_created_folder()
            raise
        self._report()
        return next((code for _, (_, code) in sorted(self.failures.items())), 0)

    def done(self, index: int, failure: tuple[str, int] | None = None) -> None:
        self.in_flight.pop(index, None)
        if failure is None:
            self.ok += 1
        else:
            self.failures[index] = failure
            self.bar.set_postfix(failed=len(self.failures), refresh=False)
        self.bar.update()

    def _sequential(self, codec) -> None:
        for index, src, dst in self.todo:
            self.in_flight[index] = dst
            try:
                process(codec, self.task, src, dst)
            except CodecError as exc:
                self.done(index, (str(exc), exc.exit_code))
            else:
                self.done(index)

    def _parallel(self, n: int) -> None:
        ctx = _context()
        threads = max(1, _cpu_count() // n)
        queue = deque(self.todo)
        for _ in range(n):
            self.workers.append(_Worker(ctx, self.task, threads))
            self._give(self.workers[-1], queue)
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
                    self.done(w.job[0], (f"worker process died ({_how(w.process.exitcode)})", INTERNAL_ERROR))
                    w.job = None
                    if queue:
                        self.workers.append(_Worker(ctx, self.task, threads))
                        self._give(self.workers[-1], queue)
                    continue
                if reply[0] == "fatal":  # the worker could not load the model: nothing can succeed
                    error = CodecError(reply[1])
                    error.exit_code = reply[2]
                    raise error
                self.done(w.job[0], None if reply[0] == "ok" else (reply[1], reply[2]))
                self._give(w, queue)
        for w in self.workers:
            w.process.join()

    def _give(self, w: "_Worker", queue: deque) -> None:
        if queue:
            index, src, dst = queue.popleft()
            w.job = (index, dst)
            self.in_flight[index] = dst
            message = (src, dst)
        else:
            w.job = message = None
        try:
            w.conn.send(message)
        except OSError:  # it died meanwhile: the next wait() sees its sentinel
            pass

    def _shutdown(self) -> None:
        """Interrupted (or a fatal error): stop the workers, remove temp files of jobs in flight, report."""
        old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}  # finish cleaning up
        try:
            for w in self.workers:
                if w.process.is_alive():
                    w.process.terminate()
            for w in self.workers:
                w.process.join(10)
                if w.process.is_alive():
                    w.process.kill()
                    w.process.join()
            for dst in self.in_flight.values():
                remove_temp_files(dst)
            self._report(interrupted=True)
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)

    def _report(self, interrupted: bool = False) -> None:
        self.bar.close()
        for index, (message, _) in sorted(self.failures.items()):
            print(f"dpc: error: {self.jobs[index][0].name}: {message}", file=sys.stderr)
        line = f"{self.ok} ok, {self.skipped} skipped, {len(self.failures)} failed"
        if interrupted:
            left = len(self.jobs) - self.ok - self.skipped - len(self.failures)
            line = f"stopped with {line}, {left} not done (run again to finish them)"
        print(f"dpc: {self.task.verb}: {line}", file=sys.stderr)


def _output_exists(dst: Path) -> bool:
    return dst.exists() and not dst.is_dir()  # a folder in the way is a failure, reported by write_atomic


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
        ctx.set_forkserver_preload(["codec.api", "dpc.batch"])  # torch is imported once, by the server
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
        # Ctrl-C reaches the whole process group: the worker inherits SIGINT blocked until it has set it to ignored.
        mask = _sigmask(signal.SIG_BLOCK)
        try:
            self.process.start()
        finally:
            _sigmask(signal.SIG_SETMASK, mask)
        child.close()
        self.job: tuple[int, Path] | None = None  # (job index, output) while it works on one


def _sigmask(how, mask=frozenset({signal.SIGINT})):
    return signal.pthread_sigmask(how, mask) if hasattr(signal, "pthread_sigmask") else set()


def _exit_on_sigterm(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(128 + signum)  # unwinds: write_atomic's `finally` removes its temp file


def _quiet_unraisable(info) -> None:
    """A SIGTERM that lands in a finalizer (an unclosed file's ResourceWarning, mid-import) raises
    SystemExit where Python can only print it as "Exception ignored ... Traceback": we are being
    stopped on purpose, so say nothing; anything else is printed as usual."""
    if not issubclass(info.exc_type, (SystemExit, KeyboardInterrupt)):
        sys.__unraisablehook__(info)


def _worker_main(conn, task: Task, threads: int) -> None:
    sys.unraisablehook = _quiet_unraisable
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us with SIGTERM
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    _sigmask(signal.SIG_UNBLOCK)
    try:
        codec = load_codec(task, threads)
    except Exception as exc:
        code = exc.exit_code if isinstance(exc, CodecError) else INTERNAL_ERROR
        try:
            conn.send(("fatal", str(exc) if isinstance(exc, CodecError) else _internal(exc), code))
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


def load_codec(task: Task, threads: int):
    """The Codec a worker process (local or on Ray) loads once for all its files."""
    import torch

    from codec.api import Codec

    torch.set_num_threads(threads)
    return Codec.load(
        task.weights,
        max_pixels=task.max_pixels,
        prior_weights=task.prior_weights,
        decoder_weights=task.decoder_weights,
        **task.run_options,
    )


def process_reply(codec, task: Task, src: Path, dst: Path) -> tuple:
    """One file in a worker: ("ok",) or ("failed", one-line message, exit code); never raises CodecError."""
    try:
        process(codec, task, src, dst)
        return ("ok",)
    except CodecError as exc:
        return ("failed", str(exc), exc.exit_code)
    except Exception as exc:  # a bug: reported for this file, the others go on
        return ("failed", _internal(exc), INTERNAL_ERROR)


def _internal(exc: Exception) -> str:
    text = f"internal error: {type(exc).__name__}: {exc}"
    return text + "\n" + traceback.format_exc() if os.environ.get("DPC_DEBUG") else text
