"""Running `dpc compress` / `dpc decompress` over (input, output) pairs: one file, or a folder run.

- One file (not folder mode): its CodecError goes to the CLI; a long single job shows its stages on a
  terminal (dpc/progress.py).
- A folder run: dpc/report.py keeps the books (skipped outputs, early refusals, the summary and the
  exit code); the files are done here one after the other, by N local worker processes
  (dpc/pool.py, --jobs N) or on a Ray cluster (the `cluster`'s `run`, dpc/scale_out.py).
- Every output is written by `write_atomic` (dpc/jobs.py: process): complete or absent.
- Ctrl-C (SIGINT) or SIGTERM: the workers are stopped, any temp file left by a job in flight is removed,
  a summary is printed and the KeyboardInterrupt goes on to the CLI (exit 130, or 143 for SIGTERM).
"""

import sys
from pathlib import Path

from codec.errors import CodecError

from . import jobs as job  # job.process: looked up at each call (the tests replace it)
from . import signals
from .files import check_output, check_writable, remove_temp_files
from .jobs import FolderJobs, Task
from .pool import Pool, worker_limit
from .progress import StageLine
from .report import BatchReport


def run(
    jobs: list[tuple[Path, Path]], task: Task, codec, n_jobs: int | None = 1, folder: bool = False, cluster=None
) -> int:
    """Do `jobs`; returns the exit code. A single file (not folder mode) raises its CodecError instead.

    `codec`: a Codec, or a function that loads one, called only once some file needs it (inputs that
    their bytes alone refuse, dpc/jobs.py: refuse_early, cost no model load).
    `n_jobs`: worker processes (None: 1; with a cluster, one Ray worker per CPU of the cluster).
    `cluster` (dpc/scale_out.py's Cluster): the files go to Ray workers, as a folder run (summary)."""
    if not folder and cluster is None:
        ((src, dst),) = jobs
        return _one_file(src, dst, task, codec)
    report = BatchReport(jobs, task, job.refuse_early)
    pool = None
    try:
        if callable(codec) and report.todo and cluster is None:
            codec = codec()  # bad options or weights fail here, once, before any file is written
        if cluster is not None and report.todo:
            cluster.run(report, n_jobs)
        elif (n_jobs or 1) > 1 and len(report.todo) > 1 and (n := _workers(n_jobs, report)) > 1:
            pool = Pool(task, n)
            pool.run(report)
        else:
            _sequential(report, codec)
    except BaseException:
        with signals.ignored():  # interrupted (or a fatal error): finish cleaning up
            if pool is not None:
                pool.stop()
            report.remove_temp_files()
            report.summary(interrupted=True)
        if report.ok == 0 and isinstance(jobs, FolderJobs):
            jobs.remove_created_folder()
        raise
    report.summary()
    if report.ok == 0 and isinstance(jobs, FolderJobs):
        jobs.remove_created_folder()  # a run that wrote nothing leaves no empty folder behind
    return report.exit_code()


def _workers(n_jobs: int, report: BatchReport) -> int:
    """Worker processes for the files to do: -j, capped by cores and memory (with a line saying so)."""
    n, note = worker_limit(min(n_jobs, len(report.todo)))
    if note is not None:
        report.note(note)
    return n


def _one_file(src: Path, dst: Path, task: Task, codec) -> int:
    advice = "use --force to overwrite"
    if task.verb == "decompress":  # photo.dpc's photo.png is likely the original: --force would lose it
        advice = "it may be the original image: write the decoded one elsewhere with -o OTHER.png"
    check_output(dst, (src,), task.force, advice)  # checked before any work; write_atomic checks again
    check_writable(dst)
    # what the input alone refuses is refused before any model loads (a bad image, a bad .dpc file)
    image = job.read_image(task, src) if task.verb == "compress" else None
    job.refuse_early(task, src)
    codec = codec() if callable(codec) else codec
    show = not task.quiet and sys.stderr.isatty()  # a single long decode (8192 px: minutes) says where it is
    progress = StageLine(f"{task.verb} {src.name}") if show else None
    try:
        job.process(codec, task, src, dst, progress, image)
    except BaseException:  # Ctrl-C or SIGTERM at any point: no temp file stays behind
        remove_temp_files(dst)
        raise
    finally:
        if progress is not None:
            progress.close()
    return 0


def _sequential(report: BatchReport, codec) -> None:
    for index, src, dst in report.todo:
        report.started(index, dst)
        try:
            job.process(codec, report.task, src, dst)
        except CodecError as exc:
            report.done(index, (str(exc), exc.exit_code))
        else:
            report.done(index)
