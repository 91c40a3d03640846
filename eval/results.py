"""The per-image results table: one CSV row per image x codec x setting, appended
as each finishes, so an interrupted `dpc eval` resumes where it stopped."""

import csv
from dataclasses import dataclass, field
from pathlib import Path

PER_IMAGE_METRICS = ("psnr", "msssim", "lpips", "dists", "spectral_gap")
COLUMNS = (
    "image",
    "codec",
    "setting",  # ours: "q3"; a baseline: "match-q3" (matched to our q3 file on that image)
    "param",  # ours: quality level; a baseline: its own quality parameter
    "target_bpp",
    "bytes",  # size of the file on disk
    "bpp",  # bytes * 8 / pixels
    *PER_IMAGE_METRICS,
    "encode_s",
    "decode_s",
    "device",
)


@dataclass
class ResultsTable:
    """CSV-backed rows; `done` holds the (image, codec, setting) keys already measured."""

    path: Path
    rows: list[dict] = field(default_factory=list)

    def __post_init__(self):
        if self.path.exists():
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                if tuple(reader.fieldnames or ()) == COLUMNS:
                    self.rows = [_parse(r) for r in reader]
                else:  # written by another version: start over rather than mix columns
                    self.path.rename(self.path.with_suffix(".old.csv"))
        if not self.path.exists():
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(COLUMNS)

    @property
    def done(self) -> set[tuple[str, str, str]]:
        return {(r["image"], r["codec"], r["setting"]) for r in self.rows}

    def add(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, COLUMNS).writerow({k: _fmt(row.get(k)) for k in COLUMNS})
            f.flush()
        self.rows.append({k: row.get(k) for k in COLUMNS})

    def find(self, image: str, codec: str, setting: str) -> dict | None:
        for r in self.rows:
            if (r["image"], r["codec"], r["setting"]) == (image, codec, setting):
                return r
        return None


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _parse(row: dict) -> dict:
    out = {}
    for k, v in row.items():
        if k in ("image", "codec", "setting", "device"):
            out[k] = v
        elif v == "":
            out[k] = None
        else:
            out[k] = float(v)
    return out
