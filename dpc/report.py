"""A folder run's books: what is to do, what is being written, what came out; its bar and summary.

Whatever does the files (one after the other in dpc/batch.py, the local worker processes of
dpc/pool.py, the Ray workers of dpc/scale_out.py) takes them from `todo` and tells the report
`started(index, output)` and `done(index, failure)`; dpc/batch.py makes the report and ends
the run with `summary()` and `exit_code()`.

- An output that already exists is skipped (not overwritten, not a failure) unless --force, so
  a rerun after Ctrl-C, `kill` or a crash finishes only what is missing.
- Before any encoding: an output that is an input of the run or not a regular file (a FIFO, a device),
  and a folder that cannot be written, fail their files at once (dpc/files.py: check_output).
- The end: one line per failure (input order), then "N ok, M skipped, K failed"; the exit code is
  the first failure's (input order), 0 if none.
"""

import sys
from pathlib import Path

from codec.errors import CodecError, OutputWriteError

from .files import InputSet, check_output, remove_temp_files, unwritable_reason


class BatchReport:
    """The books of a run over `jobs` ((input, output) pairs) with `task` (dpc/jobs.py's Task).

    `todo`: (job index, input, output) of the files left to do; `in_flight`: job index -> output
    being written; `ok`, `skipped`, `failures` (job index -> (message, exit code))."""

    def __init__(self, jobs, task, refuse_early=None):
        """`refuse_early(task, input)`: CodecError for an input its bytes alone refuse (dpc/jobs.py)."""
        from tqdm import tqdm

        self.jobs, self.task = jobs, task
        todo = [(i, src, dst) for i, (src, dst) in enumerate(jobs) if task.force or not _output_exists(dst)]
        self.skipped = len(jobs) - len(todo)
        self.ok = 0
        self.failures: dict[int, tuple[str, int]] = {}  # job index -> (message, exit code)
        self.todo = self._refuse_early(todo, InputSet(src for src, _ in jobs), refuse_early)
        self.in_flight: dict[int, Path] = {}  # job index -> output being written
        self.bar = tqdm(
            total=len(jobs),
            initial=self.skipped + len(self.failures),
            desc=task.verb,
            unit="file",
            file=sys.stderr,
            disable=task.quiet,  # --quiet: failures and the summary line only
        )

    def _refuse_early(self, todo: list, inputs: InputSet, refuse_input=None) -> list:
        """Fail, before any work, the jobs whose output is an input or a special file, or whose folder
        cannot be written (a missing or read-only folder fails every file in one go, not after each encode),
        and those whose input `refuse_input` refuses from its bytes."""
        reasons: dict[Path, str | None] = {}
        left = []
        for index, src, dst in todo:
            try:
                check_output(dst, inputs, force=True)  # an existing file was skipped above unless --force
                if refuse_input is not None:
                    refuse_input(self.task, src)
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

    def note(self, line: str) -> None:
        """One line about the run (e.g. -j capped), above the bar; not with --quiet."""
        if not self.task.quiet:
            self.bar.write(f"dpc: {line}", file=sys.stderr)

    def started(self, index: int, dst: Path) -> None:
        """Job `index` is being written to `dst` (its temp files are removed if the run stops)."""
        self.in_flight[index] = dst

    def done(self, index: int, failure: tuple[str, int] | None = None) -> None:
        """Job `index` is over: written, or failed with (one-line message, exit code)."""
        self.in_flight.pop(index, None)
        if failure is None:
            self.ok += 1
        else:
            self.failures[index] = failure
            self.bar.set_postfix(failed=len(self.failures), refresh=False)
        self.bar.update()

    def remove_temp_files(self) -> None:
        """The run stopped: remove what the jobs in flight may have left (dpc/files.py)."""
        for dst in self.in_flight.values():
            remove_temp_files(dst)

    def summary(self, interrupted: bool = False) -> None:
        """The bar closed, one line per failure (input order), then "N ok, M skipped, K failed"."""
        self.bar.close()
        for index, (message, _) in sorted(self.failures.items()):
            print(f"dpc: error: {self.jobs[index][0].name}: {message}", file=sys.stderr)
        line = f"{self.ok} ok, {self.skipped} skipped, {len(self.failures)} failed"
        if interrupted:
            left = len(self.jobs) - self.ok - self.skipped - len(self.failures)
            line = f"stopped with {line}, {left} not done (run again to finish them)"
        print(f"dpc: {self.task.verb}: {line}", file=sys.stderr)

    def exit_code(self) -> int:
        """The first failure's exit code (input order), 0 if none."""
        return next((code for _, (_, code) in sorted(self.failures.items())), 0)


def _output_exists(dst: Path) -> bool:
    return dst.exists() and not dst.is_dir()  # a folder in the way is a failure, reported by write_atomic
