"""What both fuzzers write about a run (scripts/fuzz.py: .dpc files; scripts/fuzz_images.py: image
files): a record per failing case, the JSON summary (--json) and the failing cases as files.

Light on purpose (no torch, no codec): the image fuzzer's worker processes import it.
"""

import base64
import json
import sys
from pathlib import Path


def failure_record(case, outcome, **labels) -> dict:
    """A failing case for the report: its index and mutator, `labels` (in order), the outcome's
    failures, kind, seconds and detail, and the case's bytes (base64)."""
    return {
        "index": case.index,
        "mutator": case.mutator,
        **labels,
        "failures": list(outcome.failures),
        "kind": outcome.kind,
        "seconds": round(outcome.seconds, 4),
        "detail": outcome.detail,
        "data_base64": base64.b64encode(case.data).decode(),
    }


def write_outputs(
    report: dict, json_path: Path | None, failures: list[dict], folder: Path, suffix: str, text_end: str = ""
) -> None:
    """The report as JSON at `json_path` (if given); each failing case in `folder` as
    case-INDEX-FAILURES`suffix` (its bytes, for --replay) and .txt (its record, then `text_end`)."""
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=1) + "\n")
    if not failures:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for f in failures:
        stem = folder / f"case-{f['index']:07d}-{'-'.join(f['failures'])}"
        stem.with_suffix(suffix).write_bytes(base64.b64decode(f["data_base64"]))
        info = {k: v for k, v in f.items() if k != "data_base64"}
        stem.with_suffix(".txt").write_text(json.dumps(info, indent=1) + text_end)
    print(f"{len(failures)} failing case(s) saved in {folder}/", file=sys.stderr)


class CasePeak:
    """The peak RSS of this process during one case (MB, weights and torch included): Linux resets
    the high-water mark (VmHWM) when "5" is written to /proc/self/clear_refs. None elsewhere."""

    def __enter__(self):
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.mb = 0.0
        except OSError:
            self.mb = None
        return self

    def __exit__(self, *exc):
        if self.mb is not None:
            try:
                with open("/proc/self/status") as f:
                    line = next(line for line in f if line.startswith("VmHWM:"))
                self.mb = int(line.split()[1]) / 1024
            except (OSError, StopIteration, ValueError):
                self.mb = None
        return False
