"""The shipped codec weight files, by name and by model id, read without torch.

    SHIPPED_MODELS          name -> path ("dpc-v1", "dpc-v2" the default)
    shipped_weights(id)     the shipped file whose model id (first 16 bits of its SHA-256) this is
    coding_config(path)     what checking a header needs of it: trained levels, two-pass y

A file's model id is read from its `.sha256` record, and its config from the JSON header of the
safetensors file (or of its derivation record, for a file rebuilt from another), so `dpc info`
can refuse what `dpc decompress` would refuse without importing torch. A shipped file that is not
on disk (no record) is skipped.
"""

import json
from dataclasses import dataclass
from pathlib import Path

WEIGHTS = Path(__file__).parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS / "dpc-v2.safetensors"
# Every shipped codec file, by the name a user may load it by (Codec.load("dpc-v1"),
# `dpc ... --weights dpc-v1`). Whichever is loaded decodes the files of all of them, by the file's
# model id (codec/api.py). A codec on TAEF2's latent joins them once it beats the default on the
# validation split (docs/latent-codec.md); until then its preview weights live in rd/latent-codec/.
SHIPPED_MODELS = {
    "dpc-v1": WEIGHTS / "dpc-v1.safetensors",
    "dpc-v2": DEFAULT_WEIGHTS,
}
MAX_HEADER = 1 << 24  # bytes of a safetensors JSON header we are prepared to read


@dataclass(frozen=True)
class CodingConfig:
    levels: int  # trained rate levels
    two_pass: bool  # y in two checkerboard passes (format version 4)


def digest_record(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def model_id_from_sha256(digest: str) -> int:
    return int(digest[:4], 16)


def shipped_weights(model_id: int) -> Path | None:
    """The shipped codec weight file whose model id this is, if any."""
    for path in SHIPPED_MODELS.values():
        try:
            digest = digest_record(path).read_text().split()[0]
        except (OSError, IndexError):
            continue
        if model_id_from_sha256(digest) == model_id:
            return path
    return None


def coding_config(path: Path) -> CodingConfig:
    """Levels and passes of a codec weight file, from its metadata alone (ValueError, OSError if unreadable)."""
    derived = path.with_name(path.name + ".derived.json")
    if not path.exists() and derived.exists():
        header = json.loads(derived.read_text())["header"]
    else:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 0 < size <= MAX_HEADER:
                raise ValueError(f"{path.name}: bad safetensors header")
            header = f.read(size).decode()
    compressor = json.loads(json.loads(header)["__metadata__"]["compressor"])
    return CodingConfig(levels=int(compressor["levels"]), two_pass=int(compressor.get("context_features", 0)) > 0)
