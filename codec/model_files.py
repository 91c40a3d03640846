"""Weight files: safetensors (never pickle) with the model config in its metadata.

A weight file holds the autoencoder and the compressor side by side
(`autoencoder.*`, `compressor.*`), learned parameters in float16, and the
entropy coder's integer CDF tables exactly as computed from those float16
values. Its model id, written into every `.dpc` file, is derived from a hash
of the file's bytes, so a file made with other weights is recognised.

Beside each weight file `NAME.safetensors` lies `NAME.safetensors.sha256`, its
full SHA-256 (written by `save_model`). When that record exists the file must
match it, so a tampered or damaged weight file is refused instead of quietly
producing other numbers; the shipped weights must always have it.
"""

import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes

from .entropy.compressor import CompressorConfig, HyperpriorCompressor
from .errors import ModelFileError
from .models.autoencoder import AutoencoderConfig, LatentAutoencoder
from .models.latent_refiner import LatentRefiner, RefinerConfig
from .models.perceptual_decoder import PerceptualDecoder, PerceptualDecoderConfig
from .models.prior import RETIRED_TENSORS, LatentPrior, PriorBundle, PriorConfig
from .models.taef2 import Taef2, Taef2Config, Taef2Decoder
from .shipped import DEFAULT_WEIGHTS, SHIPPED_MODELS, model_id_from_sha256
from .weight_bytes import read_weights, safetensors_header, write_weights

if TYPE_CHECKING:  # importing it imports CompressAI, which decoding never needs
    from .entropy.training import TrainableCompressor

# Older codec weights that still ship so that the files they wrote keep decoding, to the same
# pixels (Codec picks them by the file's model id: codec/pipeline.py). All of them: codec/shipped.py.
LEGACY_WEIGHTS = (SHIPPED_MODELS["dpc-v1"],)
DEFAULT_PRIOR_WEIGHTS = Path(__file__).parent / "weights" / "dpc-prior-v1.safetensors"
DEFAULT_DECODER_WEIGHTS = Path(__file__).parent / "weights" / "dpc-decoder-v4.safetensors"
FORMAT_TAG = "dpcodec-weights-1"
PRIOR_FORMAT_TAG = "dpcodec-prior-1"
DECODER_FORMAT_TAG = "dpcodec-decoder-1"
DEFAULT_TAEF2_WEIGHTS = Path(__file__).parent / "weights" / "taef2.safetensors"
TAEF2_FORMAT_TAG = "dpcodec-taef2-1"
TAEF2_KIND = "taef2"  # a codec file's autoencoder entry for TAEF2's latent space
# Buffers whose shape is only known once the tables are computed.
_TABLE_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")


@dataclass
class ModelBundle:
    autoencoder: "LatentAutoencoder | Taef2"
    compressor: HyperpriorCompressor
    model_id: int  # 16-bit id written into .dpc headers
    sha256: str  # of the weight file's bytes
    info: dict = field(default_factory=dict)  # free-form metadata (training run, lambdas)
    shipped: bool = False  # loaded from the package's own weights (SHIPPED_MODELS)
    refiner: "LatentRefiner | None" = None  # dpc-v3: the one-step latent refiner, if the file has one


def round_to_half(*modules: torch.nn.Module) -> None:
    """Round learned parameters to float16 precision in place (kept as float32)."""
    with torch.no_grad():
        for module in modules:
            for p in module.parameters():
                p.copy_(p.half().float())


def save_model(path: Path, autoencoder: LatentAutoencoder, compressor: "TrainableCompressor", info: dict) -> str:
    """Round to float16, compute the CDF tables, write safetensors; return its sha256.

    `compressor` is the training one (codec/entropy/training.py): the file keeps its density
    model too, so training can resume from it; `load_model` builds the coding one."""
    modules = {"autoencoder": autoencoder, "compressor": compressor}
    return _write_codec_file(path, modules, asdict(autoencoder.cfg), compressor, info)


def _write_codec_file(path: Path, modules: dict, autoencoder: dict, compressor, info: dict, extra=None) -> str:
    """`modules` by key prefix, learned parameters rounded to and stored in float16, with the CDF
    tables computed from the rounded compressor and the configs in the metadata; the sha256."""
    round_to_half(*modules.values())
    compressor.prepare_tables()
    tensors = {}
    for prefix, module in modules.items():
        params = {name for name, _ in module.named_parameters()}
        for name, tensor in module.state_dict().items():
            t = tensor.detach().cpu().contiguous()
            tensors[f"{prefix}.{name}"] = t.half() if name in params else t
    metadata = {
        "format": FORMAT_TAG,
        "autoencoder": json.dumps(autoencoder),
        "compressor": json.dumps(asdict(compressor.cfg)),
        "info": json.dumps(info),
    } | (extra or {})
    return write_weights(Path(path), tensors, metadata)


def save_model_variant(path: Path, base: Path, replaced: dict, info: dict, metadata: dict | None = None) -> str:
    """A new codec weight file: the tensors of `base` with `replaced` ({name: tensor}, learned
    parameters, written in float16) swapped in or added, and `info` recorded; its sha256.

    How a fine-tuned part (a decoder, a context model) ships without retraining the rest: the
    tensors it does not replace are `base`'s bytes exactly, so the rest decodes the same."""
    raw, digest = read_weights(Path(base), DEFAULT_WEIGHTS)
    with reading(Path(base)):
        tensors = dict(load_safetensors_bytes(raw))
        meta = _metadata(raw)
    for name, tensor in replaced.items():
        tensors[name] = tensor.detach().cpu().contiguous().half()
    meta = dict(meta) | (metadata or {})
    # the file it derives from (a base's own `base` record, if `info` copies one, is replaced)
    meta["info"] = json.dumps(info | {"base": {"file": Path(base).name, "sha256": digest}})
    return write_weights(Path(path), tensors, meta)


@contextmanager
def reading(path: Path):
    """Turn whatever a malformed file raises while being parsed into a one-line ModelFileError."""
    try:
        yield
    except (SafetensorError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFileError(f"unusable weight file {path}: {reason}") from None


def open_weights(path: Path, default: Path, tag: str, what: str) -> tuple[dict, dict, str]:
    """Read, digest-check and parse a safetensors file of format `tag`: (tensors, metadata, sha256)."""
    raw, digest = read_weights(path, default)
    with reading(path):
        tensors = load_safetensors_bytes(raw)
        metadata = _metadata(raw)
        if metadata.get("format") != tag:
            raise ValueError(f"not a dpcodec {what}")
    return tensors, metadata, digest


def _save_module(path: Path, module, tag: str, key: str, info: dict) -> str:
    """A module with a `cfg` (to_dict) -> float16 safetensors with its config under `key`; its sha256."""
    round_to_half(module)
    tensors = {name: t.detach().cpu().contiguous().half() for name, t in module.state_dict().items()}
    metadata = {"format": tag, key: json.dumps(module.cfg.to_dict()), "info": json.dumps(info)}
    return write_weights(Path(path), tensors, metadata)


def _load_module(path, default: Path, tag: str, what: str, key: str, build, skip: str | None = None) -> tuple:
    """The inverse of _save_module: (module built by `build(config dict)`, sha256, info); tensors
    whose names start with `skip` are left out (parts a file still carries but no model uses)."""
    path = Path(path) if path is not None else default
    tensors, metadata, digest = open_weights(path, default, tag, what)
    with reading(path):
        module = build(json.loads(metadata[key]))
        state = {k: v.float() for k, v in tensors.items() if not (skip and k.startswith(skip))}
        module.load_state_dict(state, strict=True)
        module.eval().requires_grad_(False)
        info = json.loads(metadata.get("info", "{}"))
    return module, digest, info


def save_prior(path: Path, prior: LatentPrior, info: dict) -> str:
    """Write the diffusion prior's parameters in float16 with its config; return the sha256."""
    return _save_module(path, prior, PRIOR_FORMAT_TAG, "prior", info)


def load_prior(path: Path | str | None = None) -> PriorBundle:
    """Load a diffusion-prior weight file; ModelFileError with a one-line reason if unusable."""
    build = lambda cfg: LatentPrior(PriorConfig.from_dict(cfg))  # noqa: E731
    what = "diffusion-prior weight file"
    found = _load_module(path, DEFAULT_PRIOR_WEIGHTS, PRIOR_FORMAT_TAG, what, "prior", build, RETIRED_TENSORS)
    return PriorBundle(*found)


@dataclass
class DecoderBundle:
    decoder: PerceptualDecoder
    sha256: str
    info: dict = field(default_factory=dict)


def save_decoder(path: Path, decoder: PerceptualDecoder, info: dict) -> str:
    """Write the perceptual decoder's parameters in float16 with its config; return the sha256."""
    return _save_module(path, decoder, DECODER_FORMAT_TAG, "decoder", info)


def load_decoder(path: Path | str | None = None) -> DecoderBundle:
    """Load a perceptual-decoder weight file; ModelFileError with a one-line reason if unusable."""
    build = lambda cfg: PerceptualDecoder(PerceptualDecoderConfig.from_dict(cfg))  # noqa: E731
    what = "perceptual-decoder weight file"
    return DecoderBundle(*_load_module(path, DEFAULT_DECODER_WEIGHTS, DECODER_FORMAT_TAG, what, "decoder", build))


@dataclass
class Taef2Bundle:
    autoencoder: Taef2
    sha256: str
    info: dict = field(default_factory=dict)


def save_taef2(path: Path, autoencoder: Taef2, info: dict) -> str:
    """Write TAEF2's encoder and decoder in float16 with its config; return the sha256."""
    return _save_module(path, autoencoder, TAEF2_FORMAT_TAG, "taef2", info)


def load_taef2(path: Path | str | None = None) -> Taef2Bundle:
    """Load a TAEF2 weight file (the shipped one by default); ModelFileError with a one-line reason if unusable."""
    build = lambda cfg: Taef2(Taef2Config.from_dict(cfg))  # noqa: E731
    what = "TAEF2 weight file"
    return Taef2Bundle(*_load_module(path, DEFAULT_TAEF2_WEIGHTS, TAEF2_FORMAT_TAG, what, "taef2", build))


def save_latent_codec(
    path: Path,
    compressor: "TrainableCompressor",
    info: dict,
    decoder: Taef2Decoder | None = None,
    refiner: LatentRefiner | None = None,
) -> str:
    """A codec weight file for TAEF2's latent (dpc-v3): the compressor's tensors (float16 parameters,
    CDF tables from them) and, instead of an autoencoder, the shipped TAEF2 file's SHA-256, which
    the model id thereby covers; with `decoder`, a TAEF2 decoder fine-tuned on the compressor's
    latents (`decoder.*`, the default decode's; TAEF2's own stays the fidelity decode); with
    `refiner`, the one-step latent refiner the default decode runs first (`refiner.*`, its config
    in the metadata). Returns the file's sha256."""
    modules = {"compressor": compressor} | ({"decoder": decoder} if decoder is not None else {})
    modules |= {"refiner": refiner} if refiner is not None else {}
    autoencoder = {"kind": TAEF2_KIND, "sha256": load_taef2().sha256}
    extra = {"refiner": json.dumps(refiner.cfg.to_dict())} if refiner is not None else {}
    return _write_codec_file(path, modules, autoencoder, compressor, info, extra)


def _shipped_taef2(ae_cfg: dict, path: Path) -> Taef2:
    """The shipped TAEF2, if it is the one a codec file names (else ValueError)."""
    taef2 = load_taef2()
    if ae_cfg.get("sha256") != taef2.sha256:
        raise ValueError(f"it was trained for other TAEF2 weights than {DEFAULT_TAEF2_WEIGHTS.name}")
    return taef2.autoencoder


def load_model(path: Path | str | None = None) -> ModelBundle:
    """Load a weight file, or a shipped one by name (SHIPPED_MODELS); ModelFileError with a one-line
    reason if it is unusable."""
    path = SHIPPED_MODELS.get(str(path), Path(path)) if path is not None else DEFAULT_WEIGHTS
    tensors, metadata, digest = open_weights(path, DEFAULT_WEIGHTS, FORMAT_TAG, "weight file")
    with reading(path):
        ae_cfg = json.loads(metadata["autoencoder"])
        compressor = HyperpriorCompressor(CompressorConfig(**json.loads(metadata["compressor"])))
        parts, refiner = [("compressor", compressor)], None
        if ae_cfg.get("kind") == TAEF2_KIND:
            autoencoder = _shipped_taef2(ae_cfg, path)
            if any(k.startswith("decoder.") for k in tensors):
                autoencoder.tuned = Taef2Decoder()
                parts.append(("decoder", autoencoder.tuned))
            if "refiner" in metadata:
                refiner = LatentRefiner(RefinerConfig.from_dict(json.loads(metadata["refiner"])))
                parts.append(("refiner", refiner))
        else:
            ae_cfg["widths"] = tuple(ae_cfg["widths"])
            autoencoder = LatentAutoencoder(AutoencoderConfig(**ae_cfg))
            parts.append(("autoencoder", autoencoder))
        for prefix, module in parts:
            state = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
            # The file also holds what only training uses (z's density model): coding loads the rest.
            state = {k: v for k, v in state.items() if k in module.state_dict()}
            _resize_table_buffers(module, state)
            state = {k: v.float() if v.dtype == torch.float16 else v for k, v in state.items()}
            module.load_state_dict(state, strict=True)
            module.eval().requires_grad_(False)
        info = json.loads(metadata.get("info", "{}"))
    shipped = path in SHIPPED_MODELS.values()
    return ModelBundle(autoencoder, compressor, model_id_from_sha256(digest), digest, info, shipped, refiner)


def _metadata(raw: bytes) -> dict:
    return json.loads(safetensors_header(raw)).get("__metadata__", {})


def _resize_table_buffers(module: torch.nn.Module, state: dict) -> None:
    for name, tensor in state.items():
        owner, _, attr = name.rpartition(".")
        if attr in _TABLE_BUFFERS:
            module.get_submodule(owner).register_buffer(attr, torch.empty_like(tensor))


def read_prior_config(path: Path | str | None = None) -> PriorConfig:
    """The config of a prior weight file, from its metadata alone (no network is built)."""
    path = Path(path) if path is not None else DEFAULT_PRIOR_WEIGHTS
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 0 < n <= 1 << 24:
                raise ValueError("bad safetensors header")
            metadata = json.loads(f.read(n)).get("__metadata__", {})
        if metadata.get("format") != PRIOR_FORMAT_TAG:
            raise ValueError("not a dpcodec diffusion-prior weight file")
        return PriorConfig.from_dict(json.loads(metadata["prior"]))
    except OSError as exc:
        raise ModelFileError(f"cannot read weight file {path}: {exc.strerror or exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"unusable weight file {path}: {str(exc).splitlines()[0]}") from None
