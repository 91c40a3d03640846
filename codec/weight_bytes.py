"""The bytes of weight files on disk: written atomically with a SHA-256 record beside them, read
back only if they match it, and rebuilt from a derivation record where a file ships as one.

    write_weights(path, tensors, metadata) -> sha256     (path + path.sha256)
    read_weights(path, default) -> (bytes, sha256)         (checked; derived files rebuilt)
    write_derivation(path, base) -> record path            (NAME.safetensors.derived.json)
"""

import hashlib
import json
from pathlib import Path

from safetensors.torch import save_file

from .errors import ModelFileError
from .shipped import DEFAULT_WEIGHTS, SHIPPED_MODELS, digest_record


def write_weights(path: Path, tensors: dict, metadata: dict) -> str:
    """Write safetensors atomically plus its `.sha256` record; return the digest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    digest_record(path).write_text(digest + "\n")
    return digest


def read_weights(path: Path, default: Path) -> tuple[bytes, str]:
    """Bytes and SHA-256 of a weight file, checked against its record (required for `default`, the
    legacy files and a file rebuilt from its derivation record)."""
    rebuilt = not path.exists() and derivation_record(path).exists()
    try:
        raw = rebuild(path) if rebuilt else path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"cannot read weight file {path}: {exc.strerror or exc}") from None
    digest = hashlib.sha256(raw).hexdigest()
    check_digest(path, digest, required=rebuilt or path == default or path in SHIPPED_MODELS.values())
    return raw, digest


# -- derived weight files ----------------------------------------------------------------------
# A weight file whose every tensor is, byte for byte, in another shipped file (dpc-v1 is dpc-v2
# without the context) need not ship its 9 MB: NAME.safetensors.derived.json records its
# safetensors header verbatim and the base file's name, and reading NAME.safetensors rebuilds
# its exact bytes from the base's tensors. The rebuilt bytes must match NAME's .sha256 record,
# so the model id and everything decoded with it are those of the original file.


def write_derivation(path: Path, base: Path) -> Path:
    """Record how to rebuild weight file `path` from the tensors of `base` (same folder); the
    record's path. ModelFileError unless the rebuild gives `path`'s bytes exactly; `path` itself
    may then be deleted."""
    path, base = Path(path), Path(base)
    raw = path.read_bytes()
    if base.parent.resolve() != path.parent.resolve():
        raise ModelFileError(f"{base} must lie beside {path}")
    record = derivation_record(path)
    text = json.dumps({"base": base.name, "header": safetensors_header(raw).decode()}, indent=1)
    tmp = record.with_name(record.name + ".tmp")
    tmp.write_text(text + "\n")
    try:
        if rebuild(path, tmp) != raw:
            raise ModelFileError(f"{path} cannot be rebuilt from {base}")
    except ModelFileError:
        tmp.unlink()
        raise
    tmp.replace(record)
    return record


def derivation_record(path: Path) -> Path:
    return path.with_name(path.name + ".derived.json")


def _tensor_entries(header: bytes) -> dict:
    """A safetensors header's {name: {dtype, shape, data_offsets}} (offsets from the data's start)."""
    entries = json.loads(header)
    entries.pop("__metadata__", None)
    return entries


def rebuild(path: Path, record: Path | None = None) -> bytes:
    """The bytes of derived weight file `path`: its recorded header, then its tensors' bytes taken
    from the base file (itself checked against its own SHA-256 record), in the header's order."""
    record = record or derivation_record(path)
    try:
        spec = json.loads(record.read_text())
        base, header = path.with_name(spec["base"]), spec["header"].encode()
        entries = _tensor_entries(header)
        if not base.is_file():  # a base is a real file: no chains, so no cycles
            raise ValueError(f"its base {base.name} is missing")
        base_raw, _ = read_weights(base, DEFAULT_WEIGHTS)
        base_header = safetensors_header(base_raw)
        base_entries, base_start = _tensor_entries(base_header), 8 + len(base_header)
        data = bytearray()
        for name, entry in sorted(entries.items(), key=lambda item: item[1]["data_offsets"][0]):
            start, end = entry["data_offsets"]
            found = base_entries.get(name)
            if found is None or (found["dtype"], found["shape"]) != (entry["dtype"], entry["shape"]):
                raise ValueError(f"tensor {name} is not in {base.name} as recorded")
            if start != len(data):
                raise ValueError("the recorded header's tensors do not follow each other")
            data += base_raw[base_start + found["data_offsets"][0] : base_start + found["data_offsets"][1]]
            if len(data) != end:
                raise ValueError(f"tensor {name} has another size in {base.name}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelFileError(f"cannot rebuild weight file {path} from {record.name}: {exc}") from None
    return len(header).to_bytes(8, "little") + header + bytes(data)


def check_digest(path: Path, digest: str, required: bool) -> None:
    record = digest_record(path)
    try:
        expected = record.read_text().split()[0].lower()
    except FileNotFoundError:
        if required:
            raise ModelFileError(f"weight file {path} has no SHA-256 record {record.name}") from None
        return
    except (OSError, IndexError):
        raise ModelFileError(f"unreadable SHA-256 record {record}") from None
    if expected != digest:
        raise ModelFileError(
            f"weight file {path} does not match its recorded SHA-256 (tampered or damaged); refusing to load it"
        )


def safetensors_header(raw: bytes) -> bytes:
    """A safetensors file's JSON header: after its 8-byte little-endian length, before the data."""
    return raw[8 : 8 + int.from_bytes(raw[:8], "little")]
