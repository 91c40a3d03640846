"""The shipped codec weight files, by name and by model id, read without torch.

    SHIPPED_MODELS          name -> path ("dpc-v1", "dpc-v2" the default, "dpc-v3" on TAEF2's latent)
    shipped_weights(id)     the shipped file whose model id (first 16 bits of its SHA-256) this is
    coding_config(path)     what checking a header needs of it: trained levels, two-pass y, sizes
    refuse_early(container) what decompress would refuse of a shipped model's file, found without
                            torch or weights (the CLI asks before it loads any model)

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
# model id (codec/pipeline.py). dpc-v3, the codec on TAEF2's latent, joined them when it beat the
# default on the validation split's LPIPS and DISTS (docs/latent-codec.md); it is not yet the default
# (its --bpp tables, effort, INT8 table and benchmarks are still to do).
SHIPPED_MODELS = {
    "dpc-v1": WEIGHTS / "dpc-v1.safetensors",
    "dpc-v2": DEFAULT_WEIGHTS,
    "dpc-v3": WEIGHTS / "dpc-v3.safetensors",
}
MAX_HEADER = 1 << 24  # bytes of a safetensors JSON header we are prepared to read


# The fewest bits one symbol can cost under each shipped model's coding tables (CdfTables.min_bits,
# bitstream/entropy_coding.py), so that a file's capacity is checked before any model loads;
# tests/test_bad_input.py checks them against the loaded tables.
MIN_BITS = {  # name -> (z, y)
    "dpc-v1": (0.00015410468539770367, 6.604284954371679e-05),
    "dpc-v2": (0.00015410468539770367, 6.604284954371679e-05),
    "dpc-v3": (0.00015410468539770367, 6.604284954371679e-05),
}
Z_FACTOR = 64  # image px per z position: autoencoder 8 x compressor 2 x hyperprior 4


@dataclass(frozen=True)
class CodingConfig:
    levels: int  # trained rate levels
    two_pass: bool  # y in two checkerboard passes (format version 4, or 5 with the layout bit)
    y_channels: int = 0
    z_channels: int = 0
    # dpc-v3: the realism its one-step latent refiner decodes at unless told (None: no such refiner)
    default_realism: float | None = None


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
    metadata = json.loads(header)["__metadata__"]
    compressor = json.loads(metadata["compressor"])
    refiner = json.loads(metadata["refiner"]) if "refiner" in metadata else None
    return CodingConfig(
        levels=int(compressor["levels"]),
        two_pass=int(compressor.get("context_features", 0)) > 0,
        y_channels=int(compressor["y_channels"]),
        z_channels=int(compressor["z_channels"]),
        default_realism=None if refiner is None else float(refiner.get("default_realism", 0.0)),
    )


def shipped_coding_config(model_id: int) -> CodingConfig | None:
    """The coding config of the shipped model with this id (None: no shipped model has it, or its
    weights are unreadable). No torch."""
    path = shipped_weights(model_id)
    if path is None:
        return None
    try:
        return coding_config(path)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_coding(header, rates, two_pass: bool) -> None:
    """BitstreamError unless weights with this RateScale and pass count can decode a file with this
    header: its pass count (format version 4, or 5 with the layout bit) and its quality. FileFormat.check asks the
    same of the loaded weights; `refuse_early` of a shipped model's, without torch."""
    from .errors import BitstreamError

    if header.two_pass != two_pass:
        raise BitstreamError(
            f"corrupt header: y in {'two passes' if header.two_pass else 'one pass'} (format version "
            f"{header.version}) does not fit these weights, which code it in {'two' if two_pass else 'one'}"
        )
    rates.check(header.rate, BitstreamError)


def refuse_early(container) -> None:
    """BitstreamError for what decompress would refuse of a file a shipped model made (a quality it
    has no level for, a format version its coding does not write, sections too short for the symbols
    the header claims); nothing for other models' files (only their weights can tell). No torch."""
    from bitstream.capacity import check_sections_capacity

    from .canvas import Canvas
    from .quality_scale import RateScale

    header = container.header
    path = shipped_weights(header.model_id)
    if path is None:
        return
    try:
        config = coding_config(path)
    except (OSError, ValueError, KeyError, TypeError):
        return  # decompress explains what is wrong with the weights
    check_coding(header, RateScale(config.levels), config.two_pass)
    name = next(n for n, p in SHIPPED_MODELS.items() if p == path)
    z_side = [side // Z_FACTOR for side in Canvas.of_header(header).padded]
    z_count = config.z_channels * z_side[0] * z_side[1]
    y_count = config.y_channels * 16 * z_side[0] * z_side[1]  # y is 4x z's side
    y_data = container.y_data + (container.y_rest_data or b"")
    check_sections_capacity(container.z_data, z_count, MIN_BITS[name][0], y_data, y_count, MIN_BITS[name][1])
