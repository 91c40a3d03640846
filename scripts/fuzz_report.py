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
