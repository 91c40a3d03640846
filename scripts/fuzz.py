"""Fuzz the .dpc container parser and the whole decode path (or, with --target images, the image side).

    python -m scripts.fuzz --cases 100000 --json out/fuzz.json --save-failures out/fuzz-failures
    python -m scripts.fuzz --replay out/fuzz-failures/*.dpc     # re-run saved failing cases
    python -m scripts.fuzz --target images --cases 10000        # cut and lying images (scripts/fuzz_images.py)

Every case mutates seeds and hands the bytes to `Codec.decompress`. The fuzzer is
three modules:

    fuzz_seeds.py     the seed files (real files of several sizes and qualities) and
                      the writers that forge files from their parts
    fuzz_mutators.py  the mutations, and the case maker that picks one per case
    fuzz.py           running the cases (in this process or in workers), the
                      report and the command line
    fuzz_report.py    the failing cases' records and files, the JSON report (shared
                      with the image fuzzer, fuzz_images.py)

A case passes if it ends in an RGB PIL image of the size its header gives, or in
a `codec.CodecError`, within --time-limit seconds. Failures: "crash" (any other
exception, or the worker process dying), "hang" (over the time limit; a case
still running after --kill-after seconds is killed), "bad-image" (an image of
the wrong size or mode), "not-decoded" (a valid file from the symbols mutation
that does not decode). Failing cases are saved as files; the exit code is 1 if
there is any failure.

Case i is a pure function of (--seed, i) and the weights, so a run can be
repeated exactly. Work and memory per case grow with the image size a header
claims (up to the Codec's pixel limit), so the fuzzer's Codec uses a smaller
pixel limit (--max-pixels, 4 Mpx) than the default; see docs/reliability.md.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import queue
import resource
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image
from tqdm import tqdm

from codec.errors import (
    CodecError,
    DecoderDesyncError,
    ImageTooLargeError,
    ModelMismatchError,
    UnsupportedVersionError,
)
from scripts.fuzz_report import CasePeak, failure_record, write_outputs

if TYPE_CHECKING:  # torch and the codec load where a .dpc run needs them: the image target's worker,
    # which re-imports this module, stays without them (its memory per case is what it reports)
    from codec import Codec
    from scripts.fuzz_mutators import Case, CaseMaker
    from scripts.fuzz_seeds import SeedFile

FUZZ_MAX_PIXELS = 1 << 22
CHUNK = 50  # cases per work item in multi-process runs


# -- running cases ------------------------------------------------------------------------------------
FAILURES = ("crash", "hang", "bad-image", "not-decoded")


@dataclass(frozen=True)
class Outcome:
    kind: str  # "decoded", the CodecError subclass's name, or "crash: <exception type>"
    stage: str  # how far the case got (see `stage_of`)
    seconds: float
    failures: tuple[str, ...]  # subset of FAILURES
    detail: str = ""  # error message or traceback


def stage_of(exc: BaseException | None) -> str:
    """Which check stopped a case (for the report: do the mutations get past the CRC?)."""
    if exc is None:
        return "decoded"
    msg = str(exc)
    if isinstance(exc, UnsupportedVersionError):
        return "version"
    if isinstance(exc, ModelMismatchError):
        return "model id"
    if isinstance(exc, DecoderDesyncError):
        return "symbol check"
    if isinstance(exc, ImageTooLargeError) or "corrupt header" in msg or "quality" in msg or "runs past" in msg:
        return "header"
    if "magic" in msg:
        return "magic"
    if "shorter than any" in msg:
        return "length"
    if "CRC" in msg:
        return "crc"
    if "entropy" in msg or "unused bytes" in msg:
        return "entropy decoder"
    return "other"


def run_case(codec: Codec, data: bytes, time_limit: float, must_decode: bool = False) -> Outcome:
    """Decode `data`; classify the result (see the module docstring)."""
    start = time.perf_counter()
    exc, image = None, None
    try:
        image = codec.decompress(data)
    except CodecError as e:
        exc = e
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: B036 -- a crash is any non-CodecError, Rust panics (BaseException) included
        seconds = time.perf_counter() - start
        failures = ("crash", "hang") if seconds > time_limit else ("crash",)
        return Outcome(f"crash: {type(e).__name__}", "crash", seconds, failures, traceback.format_exc())
    seconds = time.perf_counter() - start
    failures = []
    if exc is None:
        header = codec.read_header(data)
        if not isinstance(image, Image.Image) or image.mode != "RGB" or image.size != (header.width, header.height):
            failures.append("bad-image")
        detail = f"{getattr(image, 'mode', type(image).__name__)} {getattr(image, 'size', '')}"
    else:
        detail = f"{type(exc).__name__}: {exc}"
        if must_decode:
            failures.append("not-decoded")
    if seconds > time_limit:
        failures.append("hang")
    kind = "decoded" if exc is None else type(exc).__name__
    return Outcome(kind, stage_of(exc), seconds, tuple(failures), detail)


def peak_rss_mb(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


@dataclass
class Summary:
    cases: int = 0
    outcomes: Counter = field(default_factory=Counter)  # kind -> cases
    stages: Counter = field(default_factory=Counter)  # stage -> cases
    by_mutator: dict = field(default_factory=dict)  # mutator -> Counter(kind)
    failure_counts: Counter = field(default_factory=Counter)
    failures: list = field(default_factory=list)  # dicts, see `add`
    max_seconds: float = 0.0
    max_case: dict = field(default_factory=dict)
    case_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    rss_after_load_mb: float = 0.0
    case_peak: dict = field(default_factory=dict)  # the case with the highest peak RSS during it

    def add(
        self,
        case: Case,
        outcome: Outcome,
        case_peak_mb: float | None = None,
    ):
        self.cases += 1
        self.outcomes[outcome.kind] += 1
        self.stages[outcome.stage] += 1
        self.by_mutator.setdefault(case.mutator, Counter())[outcome.kind] += 1
        self.case_seconds += outcome.seconds
        if outcome.seconds > self.max_seconds:
            self.max_seconds = outcome.seconds
            self.max_case = {
                "index": case.index,
                "mutator": case.mutator,
                "kind": outcome.kind,
                "bytes": len(case.data),
            }
        if case_peak_mb is not None and case_peak_mb > self.case_peak.get("mb", 0.0):
            self.case_peak = {"index": case.index, "mutator": case.mutator, "mb": round(case_peak_mb, 1)}
        for failure in outcome.failures:
            self.failure_counts[failure] += 1
        if outcome.failures:
            self.failures.append(failure_record(case, outcome))

    def merge(self, other: Summary) -> None:
        self.cases += other.cases
        self.outcomes.update(other.outcomes)
        self.stages.update(other.stages)
        for name, counts in other.by_mutator.items():
            self.by_mutator.setdefault(name, Counter()).update(counts)
        self.failure_counts.update(other.failure_counts)
        self.failures.extend(other.failures)
        self.case_seconds += other.case_seconds
        if other.max_seconds > self.max_seconds:
            self.max_seconds, self.max_case = other.max_seconds, other.max_case
        if other.case_peak.get("mb", 0.0) > self.case_peak.get("mb", 0.0):
            self.case_peak = other.case_peak
        self.peak_rss_mb = max(self.peak_rss_mb, other.peak_rss_mb)
        self.rss_after_load_mb = max(self.rss_after_load_mb, other.rss_after_load_mb)

    @property
    def crashes(self) -> int:
        return self.failure_counts["crash"]

    @property
    def hangs(self) -> int:
        return self.failure_counts["hang"]

    @property
    def failed(self) -> bool:
        return any(self.failure_counts[f] for f in FAILURES)


def run_cases(codec: Codec, maker: CaseMaker, seed: int, indexes, time_limit: float, progress=None) -> Summary:
    """Run cases in this process (what the test suite and --workers 1 use)."""
    summary = Summary()
    for index in indexes:
        case = maker.case(seed, index)
        with CasePeak() as peak:
            outcome = run_case(codec, case.data, time_limit, case.must_decode)
        summary.add(case, outcome, peak.mb)
        if progress is not None:
            progress.update(1)
    summary.peak_rss_mb = peak_rss_mb()
    return summary


def load_codec(max_pixels: int) -> Codec:
    """One thread per process: with several processes on few cores, torch's intra-op threads only wait on each other."""
    import torch

    from codec import Codec

    torch.set_num_threads(1)
    return Codec.load(max_pixels=max_pixels)


def warm_up(codec: Codec, seeds: list[SeedFile]) -> None:
    """Build every entropy model once, so no case pays for it."""
    for tables in (codec.entropy.z_tables, codec.entropy.y_tables):
        for t in range(tables.num_tables):
            tables.model(t)
    for s in seeds:
        codec.decompress(s.data)


# -- multi-process runs ---------------------------------------------------------------------------------
def _worker(wid, seed_blobs, args, tasks, results, current, started, chunk_lo, chunk_hi):
    codec = load_codec(args.max_pixels)
    from scripts.fuzz_mutators import CaseMaker
    from scripts.fuzz_seeds import seed_from_bytes

    seeds = [seed_from_bytes(codec, name, data) for name, data in seed_blobs]
    maker = CaseMaker(codec, seeds)
    warm_up(codec, seeds)
    results.put(("ready", wid, peak_rss_mb()))
    while (task := tasks.get()) is not None:
        lo, hi = task
        chunk_lo[wid], chunk_hi[wid] = lo, hi
        summary = Summary()
        for index in range(lo, hi):
            started[wid] = time.time()
            current[wid] = index
            case = maker.case(args.seed, index)
            with CasePeak() as peak:
                outcome = run_case(codec, case.data, args.time_limit, case.must_decode)
            summary.add(case, outcome, peak.mb)
        current[wid] = -1
        summary.peak_rss_mb = peak_rss_mb()
        results.put(("chunk", wid, summary))
    results.put(("done", wid, peak_rss_mb()))


def run_parallel(args, codec: Codec, maker: CaseMaker, seeds: list[SeedFile], progress) -> Summary:
    ctx = mp.get_context("spawn")  # each worker loads its own Codec; no torch state crosses a fork
    tasks, results = ctx.Queue(), ctx.Queue()
    n = args.workers
    current, started = ctx.RawArray("q", [-1] * n), ctx.RawArray("d", [0.0] * n)
    chunk_lo, chunk_hi = ctx.RawArray("q", n), ctx.RawArray("q", n)
    blobs = [(s.name, s.data) for s in seeds]
    procs = [None] * n

    def start(wid):
        current[wid] = -1
        procs[wid] = ctx.Process(
            target=_worker,
            args=(wid, blobs, args, tasks, results, current, started, chunk_lo, chunk_hi),
            daemon=True,
        )
        procs[wid].start()

    for lo in range(0, args.cases, CHUNK):
        tasks.put((lo, min(lo + CHUNK, args.cases)))
    if args.cases <= 0:
        for _ in range(n):
            tasks.put(None)
    for wid in range(n):
        start(wid)
    total = Summary()
    done = 0
    finished = set()
    while len(finished) < n:
        try:
            msg = results.get(timeout=0.5)
        except queue.Empty:
            msg = None
        if msg and msg[0] == "ready":
            total.rss_after_load_mb = max(total.rss_after_load_mb, msg[2])
        elif msg and msg[0] == "chunk":
            total.merge(msg[2])
            done += msg[2].cases
            progress.update(msg[2].cases)
            progress.set_postfix(crashes=total.crashes, hangs=total.hangs, refresh=False)
            if done >= args.cases:
                for _ in range(n):
                    tasks.put(None)
        elif msg and msg[0] == "done":
            finished.add(msg[1])
            total.peak_rss_mb = max(total.peak_rss_mb, msg[2])
        for wid, proc in enumerate(procs):
            if wid in finished:
                continue
            index = current[wid]
            killed = index >= 0 and time.time() - started[wid] > args.kill_after
            if (proc.is_alive() and not killed) or proc.exitcode == 0:
                continue  # running, or finished with its "done" message on the way
            if killed:
                proc.kill()
            proc.join()
            if index < 0:  # died between cases: nothing to blame, just restart
                start(wid)
                continue
            # The case that was running is a failure; the rest of its chunk is run again.
            case = maker.case(args.seed, index)
            failure = ("hang",) if killed else ("crash",)
            kind = "hang: killed" if killed else f"crash: worker exit code {proc.exitcode}"
            seconds = time.time() - started[wid]
            one = Summary()
            one.add(case, Outcome(kind, "crash", seconds, failure, kind))
            total.merge(one)
            done += 1
            progress.update(1)
            for lo, hi in ((chunk_lo[wid], index), (index + 1, chunk_hi[wid])):
                if lo < hi:
                    tasks.put((lo, hi))
            if done >= args.cases:
                for _ in range(n):
                    tasks.put(None)
            start(wid)
    for proc in procs:
        proc.join(timeout=10)
    return total


# -- report ------------------------------------------------------------------------------------------------
def report(summary: Summary, args, wall: float) -> dict:
    return {
        "command": "python -m scripts.fuzz " + " ".join(sys.argv[1:]),
        "cases": summary.cases,
        "seed": args.seed,
        "workers": args.workers,
        "time_limit_s": args.time_limit,
        "max_pixels": args.max_pixels,
        "outcomes": dict(summary.outcomes.most_common()),
        "stages": dict(summary.stages.most_common()),
        "by_mutator": {k: dict(v.most_common()) for k, v in sorted(summary.by_mutator.items())},
        "crashes": summary.crashes,
        "hangs": summary.hangs,
        "bad_images": summary.failure_counts["bad-image"],
        "not_decoded": summary.failure_counts["not-decoded"],
        "max_case_s": round(summary.max_seconds, 4),
        "max_case": summary.max_case,
        "mean_case_ms": round(1000 * summary.case_seconds / max(summary.cases, 1), 3),
        "peak_rss_mb": round(summary.peak_rss_mb, 1),
        "rss_after_load_mb": round(summary.rss_after_load_mb, 1),
        "max_case_peak_rss": summary.case_peak,
        "wall_s": round(wall, 1),
        "cases_per_s": round(summary.cases / wall, 1) if wall else None,
        "failures": summary.failures,
    }


def print_summary(r: dict) -> None:
    past_crc = sum(v for k, v in r["stages"].items() if k not in ("magic", "version", "length", "crc"))
    rows = [
        ("cases", f"{r['cases']} (seed {r['seed']}, {r['workers']} worker(s), limit {r['time_limit_s']} s/case, "
         f"max pixels {r['max_pixels']})"),
        ("outcomes", " | ".join(f"{k} {v}" for k, v in r["outcomes"].items())),
        ("stopped at", " | ".join(f"{k} {v}" for k, v in r["stages"].items())),
        ("past the CRC", f"{past_crc} ({100 * past_crc / max(r['cases'], 1):.1f}%)"),
        ("crashes", r["crashes"]),
        ("hangs", r["hangs"]),
        ("bad images", r["bad_images"]),
        ("valid, not decoded", r["not_decoded"]),
        ("max case time", f"{r['max_case_s']:.3f} s {r['max_case']} (mean {r['mean_case_ms']:.2f} ms)"),
        ("peak RSS", f"{r['peak_rss_mb']:.0f} MB per process ({r['rss_after_load_mb']:.0f} MB after loading "
         f"the weights and decoding the seeds)"),
        ("per-case peak RSS", f"at most {r['max_case_peak_rss'].get('mb', 'unmeasured')} MB {r['max_case_peak_rss']}"),
        ("wall time", f"{r['wall_s']:.1f} s ({r['cases_per_s']} cases/s)"),
    ]  # fmt: skip
    for name, value in rows:
        print(f"{name:>20}  {value}")


def replay(paths: list[Path], args) -> int:
    codec = load_codec(args.max_pixels)
    bad = 0
    for path in paths:
        outcome = run_case(codec, path.read_bytes(), args.time_limit)
        bad += bool(outcome.failures)
        print(f"{path}: {outcome.kind} in {outcome.seconds:.3f} s {list(outcome.failures) or ''}\n{outcome.detail}")
    return 1 if bad else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--target", choices=("dpc", "images"), default="dpc", help="decode .dpc files, or read images (fuzz_images.py)"
    )
    p.add_argument("--cases", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0, help="case i is a function of (seed, i)")
    p.add_argument("--time-limit", type=float, default=2.0, help="seconds per case; slower is a hang")
    p.add_argument("--kill-after", type=float, default=60.0, help="seconds after which a running case is killed")
    p.add_argument("--workers", type=int, default=2, help="processes (1: run in this process)")
    p.add_argument(
        "--max-pixels", type=int, help=f"pixel limit (default {FUZZ_MAX_PIXELS} for .dpc files, 2**26 for images)"
    )
    p.add_argument("--json", type=Path, help="write the summary (and failing cases, base64) here")
    p.add_argument("--save-failures", type=Path, metavar="DIR", help="default out/fuzz-failures (images: -images-)")
    p.add_argument("--replay", type=Path, nargs="+", metavar="FILE", help="decode saved cases instead of fuzzing")
    args = p.parse_args(argv)
    if args.target == "images":
        from scripts import fuzz_images

        return fuzz_images.main(args)
    args.max_pixels = FUZZ_MAX_PIXELS if args.max_pixels is None else args.max_pixels
    args.save_failures = args.save_failures or Path("out/fuzz-failures")
    if args.replay:
        return replay(args.replay, args)
    t0 = time.perf_counter()
    codec = load_codec(args.max_pixels)
    from scripts.fuzz_mutators import CaseMaker
    from scripts.fuzz_seeds import make_seeds

    seeds = make_seeds(codec)
    maker = CaseMaker(codec, seeds)
    print(f"{len(seeds)} seed files: " + ", ".join(f"{s.name} ({len(s.data)} B)" for s in seeds), file=sys.stderr)
    with tqdm(total=args.cases, unit="case", smoothing=0.02) as progress:
        if args.workers <= 1:
            warm_up(codec, seeds)
            rss = peak_rss_mb()
            summary = run_cases(codec, maker, args.seed, range(args.cases), args.time_limit, progress)
            summary.rss_after_load_mb = rss
        else:
            summary = run_parallel(args, codec, maker, seeds, progress)
    # CasePeak resets the kernel's high-water mark before each case, so ru_maxrss after the cases knows
    # only the latest ones: a process's peak is the larger of its RSS after warming up and its cases' peaks
    cases_peak = summary.case_peak.get("mb", 0.0)
    summary.peak_rss_mb = max(summary.rss_after_load_mb, cases_peak, peak_rss_mb())
    summary.failures.sort(key=lambda f: f["index"])
    r = report(summary, args, time.perf_counter() - t0)
    print_summary(r)
    write_outputs(r, args.json, summary.failures, args.save_failures, ".dpc", text_end="\n")
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
