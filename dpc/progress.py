"""Stage progress of one long job on a terminal: one line, rewritten in place, gone at the end.

    decompress big.dpc: entropy 1/1 | pixels 37/256 tiles, 41 s

Folder runs show a tqdm bar per file instead (dpc/report.py); nothing is printed where stderr
is not a terminal or with --quiet.
"""

import sys
import time

UNITS = {"refine": "steps", "pixels": "tiles", "effort": "steps"}


class StageLine:
    """A `progress(stage, done, total)` hook for Codec.decompress that draws on stderr."""

    def __init__(self, label: str, stream=None, every: float = 0.2):
        self.label, self.stream, self.every = label, stream or sys.stderr, every
        self.t0 = time.monotonic()
        self.last = 0.0
        self.width = 0

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done not in (0, total) and now - self.last < self.every:
            return  # at most 5 redraws a second
        self.last = now
        unit = f" {UNITS[stage]}" if stage in UNITS else ""
        self._draw(f"{self.label}: {stage} {done}/{total}{unit}, {now - self.t0:.0f} s")

    def close(self) -> None:
        if self.width:
            self._draw("")
            self.stream.write("\r")
            self.stream.flush()

    def _draw(self, text: str) -> None:
        self.stream.write("\r" + text.ljust(self.width))
        self.stream.flush()
        self.width = len(text)
