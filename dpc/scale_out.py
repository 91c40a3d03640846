"""Folder runs on a Ray cluster: each worker is an actor that loads the codec once and keeps it.

    dpc compress SRC -o DST --ray [ADDRESS] [-j WORKERS] [--ray-gpus G]

    this process (the driver)                    the cluster (this machine, or `ray start` nodes)
      lists SRC, skips existing outputs   --->     CodecWorker x N: load_codec(task) once (1 CPU, G GPUs)
      keeps IN_FLIGHT files per worker    <---     process_reply(src, dst): write_atomic as locally
      one line per failure, "N ok, M skipped, K failed", the same exit codes (dpc/report.py)

- ADDRESS: "HOST:PORT" of a running cluster's head; without it RAY_ADDRESS, else a local cluster
  on this machine's cores is started for the run and shut down after it.
- Faults: a worker process that dies (killed, out of memory) is restarted by Ray (MAX_RESTARTS)
  and its file is retried (MAX_TASK_RETRIES). write_atomic writes a temp file and renames it, so a
  dead attempt leaves at most a temp file: removed before the retry and again at the end.
- SRC and DST must be paths that every node can reach (a shared filesystem): workers read and
  write the files themselves, the driver sends only paths (docs/scale-out.md).
"""

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from bitstream.container import MAX_PIXELS
from codec.errors import CodecError, InvalidOptionError
from codec.options import DEFAULT_TILE, check_effort
from codec.quality_scale import DEFAULT_QUALITY

from .batch import run
from .errors import ClusterError
from .exit_codes import INTERNAL_ERROR
from .files import remove_temp_files
from .jobs import Task, folder_jobs, load_codec, make_task, process_reply

MAX_RESTARTS = 3  # per worker
MAX_TASK_RETRIES = 3  # per file, when its worker died under it
IN_FLIGHT = 2  # files queued per worker: the next one is there when a file is done (no round trip idle)
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Cluster:
    """Where a run goes: `address` None = RAY_ADDRESS, else a local cluster; `gpus` per worker."""

    address: str | None = None
    gpus: float = 0.0

    def check(self) -> str | None:
        """The address to join (None: start a local cluster); ClusterError at once if nothing listens there."""
        address = self.address or os.environ.get("RAY_ADDRESS") or None
        if address and address != "auto":
            _check_reachable(address)
        return address

    def run(self, report, n_workers: int | None) -> None:
        """Do a folder run's files on the cluster (dpc/batch.py calls it): see `run_on_ray`."""
        run_on_ray(report, self, n_workers)


class CodecWorker:
    """One worker (a Ray actor): the codec loaded once, then files one after the other."""

    def __init__(self, task: Task, threads: int):
        self.task, self.codec, self.error = task, None, None
        try:
            self.codec = load_codec(task, threads)
        except CodecError as exc:  # a bad weight file or option: reported once by check(), not as a crash
            self.error = str(exc), exc.exit_code

    def pid(self) -> int:
        return os.getpid()

    def check(self) -> tuple | None:
        """The run's options against the loaded weights (the driver loads none): None, or (message, exit code)."""
        if self.error is not None:
            return self.error
        try:
            if self.task.verb == "compress":
                self.codec.default_refine(self.task.quality).with_overrides(**self.task.refine)
        except CodecError as exc:
            return str(exc), exc.exit_code
        except ValueError as exc:
            return str(exc), InvalidOptionError.exit_code
        return None

    def process(self, index: int, src: str, dst: str) -> tuple[int, tuple]:
        out = Path(dst)
        remove_temp_files(out)  # what an attempt killed midway left
        if not self.task.force and out.is_file() and not out.is_symlink():
            # The driver skipped every output that existed when the run began, so this one was
            # written (atomically: whole) by an attempt at this file whose worker died after the
            # rename and before its reply; Ray retried the file. It is done.
            return index, ("ok",)
        return index, process_reply(self.codec, self.task, Path(src), out)


def connect(cluster: Cluster) -> bool:
    """Join the cluster (or start a local one); True if this call started it (then shut it down)."""
    address = cluster.check()
    if address and address != "auto":
        _use_token_if_there()  # read by Ray when it is imported
    import ray

    if ray.is_initialized():  # this process already joined one (a Python caller, the tests)
        return False
    quiet = dict(logging_level="ERROR", log_to_driver=False)
    if address and address != "auto":
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ClusterError(f"cannot join the Ray cluster at {address}: {_first_line(exc)}") from None
        return True
    ray.init(address=address, **quiet) if address else ray.init(include_dashboard=False, **quiet)
    return True


def start_workers(task: Task, n: int, gpus: float) -> list:
    """N CodecWorker actors, each with 1 CPU (and `gpus` GPUs); fails in one line if the cluster has too few."""
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 0))
    if n > cpus:
        raise ClusterError(f"{n} workers asked for, the cluster has {cpus} CPUs")
    if gpus and ray.cluster_resources().get("GPU", 0) < gpus * n:
        raise ClusterError(
            f"{n} workers x {gpus:g} GPUs asked for, the cluster has {ray.cluster_resources().get('GPU', 0):g}"
        )
    actor = ray.remote(num_cpus=1, num_gpus=gpus, max_restarts=MAX_RESTARTS, max_task_retries=MAX_TASK_RETRIES)(
        CodecWorker
    )
    workers = [actor.remote(task, 1) for _ in range(n)]
    try:
        problems = ray.get([w.check.remote() for w in workers])  # loaded: a bad weight file fails here, once
    except ray.exceptions.RayActorError as exc:
        raise ClusterError(f"a worker could not start: {_first_line(exc)}") from None
    if problems[0] is not None:
        error = CodecError(problems[0][0])
        error.exit_code = problems[0][1]
        raise error
    return workers


def run_folder(
    verb: str,
    src,
    dst=None,
    *,
    cluster: Cluster | None = None,
    workers: int | None = None,
    quality: float = DEFAULT_QUALITY,
    bpp: float | None = None,
    effort: int = 0,
    force: bool = False,
    refine: dict | None = None,
    tile: int = DEFAULT_TILE,
    fidelity: bool = False,
    weights=None,
    prior_weights=None,
    decoder_weights=None,
    max_pixels: int = MAX_PIXELS,
    **run_options,
) -> int:
    """`dpc compress|decompress SRC -o DST --ray` from Python; returns the exit code it would.

    verb "compress" (images -> .dpc) or "decompress" (.dpc -> PNG); `effort`: compress's encoder
    effort 0..9 (codec/effort.py); `refine`: RefineSettings
    overrides ({"steps": 4}); `run_options`: RunOptions fields (dtype, int8, ...). Prints the
    same per-file lines and summary on stderr.
    """
    from codec.images import IMAGE_SUFFIXES

    if verb not in ("compress", "decompress"):
        raise ValueError(f"verb must be compress or decompress, got {verb!r}")
    suffixes, new_suffix = (IMAGE_SUFFIXES, ".dpc") if verb == "compress" else ({".dpc"}, ".png")
    check_effort(effort)  # a bad value fails here, not once per file
    cluster = cluster or Cluster()
    cluster.check()
    task = make_task(
        verb,
        quality=quality,
        force=force,
        weights=weights,
        max_pixels=max_pixels,
        refine=refine,
        tile=tile,
        prior_weights=prior_weights,
        run_options=run_options,
        bpp=bpp,
        fidelity=fidelity,
        decoder_weights=decoder_weights,
        quiet=True,
        effort=effort,
    )
    jobs = folder_jobs(Path(src), None if dst is None else Path(dst), suffixes, new_suffix)
    return run(jobs, task, None, workers, folder=True, cluster=cluster)


def run_on_ray(report, cluster: Cluster, n_workers: int | None) -> None:
    """Do `report.todo` (dpc/report.py's BatchReport) on the cluster, telling the report each file's start and end."""
    started = connect(cluster)  # first: it sets what Ray reads when imported
    import ray

    try:
        n = min(n_workers or int(ray.cluster_resources().get("CPU", 1)), len(report.todo)) or 1
        workers = start_workers(report.task, n, cluster.gpus)
        queue = list(reversed(report.todo))
        running = {}  # ObjectRef -> (worker, job index, output)

        def give(worker):
            if queue:
                index, src, dst = queue.pop()
                report.started(index, dst)
                running[worker.process.remote(index, str(src), str(dst))] = (worker, index, dst)

        for _ in range(IN_FLIGHT):
            for w in workers:
                give(w)
        while running:
            (ref,), _ = ray.wait(list(running), num_returns=1)
            worker, index, dst = running.pop(ref)
            try:
                _, reply = ray.get(ref)
            except ray.exceptions.RayError as exc:  # its worker died more often than Ray retries
                remove_temp_files(dst)
                report.done(index, (f"worker died: {_first_line(exc)}", INTERNAL_ERROR))
                give(worker)
                continue
            report.done(index, None if reply[0] == "ok" else (reply[1], reply[2]))
            give(worker)
    finally:
        report.remove_temp_files()
        if started:
            ray.shutdown()


def _use_token_if_there() -> None:
    """`ray start` (Ray >= 2.5x) enables token authentication and writes ~/.ray/auth_token; a
    driver joins such a cluster only with RAY_AUTH_MODE=token. Set it when a token is at hand
    and the user has not chosen (RAY_AUTH_MODE=disabled still opts out)."""
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if "RAY_AUTH_MODE" not in os.environ and (os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file()):
        os.environ["RAY_AUTH_MODE"] = "token"


def _check_reachable(address: str) -> None:
    """Fail in one line at once if nothing listens at HOST:PORT (ray.init would wait minutes)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"Ray address must be HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
