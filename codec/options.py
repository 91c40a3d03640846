"""Deployment options of a Codec: device, precision, INT8, offload, compile, memory layout.

    RunOptions(device="cpu")                          the default: fp32, works everywhere
    RunOptions(device="cpu", int8=True)               CPU: INT8 decoder and prior (codec/quantization.py)
    RunOptions(device="cuda", dtype="fp16")           GPU: half precision
    RunOptions(device="cuda", offload=True)           each model on the GPU only while its stage runs

Usability over performance: the defaults work on every machine; each speed-up is a
named option, measured by `dpc bench` (docs/performance.md says which to pick where).

The options touch only decoding-side compute (diffusion prior, pixel decoders). The
encoder's analysis and the entropy parameters always run in fp32 / float64, so a
file's bytes never depend on them, and every option decodes every file. This module
imports torch only to check a device, so the command line can list the choices at once;
codec/runners.py runs the models under them (codec/placement.py: where they sit).
"""

from dataclasses import dataclass
from numbers import Integral

from .errors import InvalidOptionError

DTYPES = ("fp32", "fp16", "bf16")
ATTENTION = ("sdpa", "eager")
PAD_MULTIPLE = 64  # images are coded padded to this: autoencoder 8 x compressor 2 x hyperprior 4
DEFAULT_TILE = 512  # pixel-decoding tile side (px); 0 = no tiling anywhere
EFFORTS = range(10)  # encoder effort levels (codec/effort.py); 0 = one pass


def check_effort(effort) -> int:
    """Encoder effort 0..9 as an int; InvalidOptionError otherwise."""
    if isinstance(effort, bool) or not isinstance(effort, Integral) or int(effort) not in EFFORTS:
        raise InvalidOptionError(f"effort must be an integer from 0 to {EFFORTS.stop - 1}, got {effort!r}")
    return int(effort)


def check_tile(tile: int) -> int:
    """Tile side in px: 0 (no tiling) or a multiple of 64 from 128; InvalidOptionError otherwise."""
    if (
        isinstance(tile, bool)
        or not isinstance(tile, Integral)
        or not (tile == 0 or (tile >= 128 and tile % PAD_MULTIPLE == 0))
    ):
        raise InvalidOptionError(f"tile must be 0 (off) or a multiple of {PAD_MULTIPLE} of at least 128, got {tile!r}")
    return int(tile)


def check_fidelity(fidelity: bool, overrides: dict) -> None:
    """A fidelity decode does not refine: refinement overrides (those not None) are an InvalidOptionError."""
    given = [k for k, v in overrides.items() if v is not None]
    if fidelity and given:
        raise InvalidOptionError(f"fidelity decoding (--fidelity) does not refine; drop {', '.join(given)}")


def with_overrides(settings, overrides: dict):
    """A file's RefineSettings with the given overrides (None: keep); InvalidOptionError if out of range."""
    try:
        return settings.with_overrides(**overrides)
    except ValueError as exc:
        raise InvalidOptionError(str(exc)) from None


@dataclass(frozen=True)
class RunOptions:
    """Deployment options of a Codec (see the module docstring)."""

    device: str = "cpu"
    dtype: str = "fp32"  # compute precision of the prior and the pixel decoders (with int8: of their float parts)
    int8: bool = False  # static INT8 (per-channel weights, calibrated activations); CPU only
    offload: bool = False  # models live on the CPU and visit `device` for their stage
    compile: bool = False  # torch.compile the prior and the pixel decoders
    channels_last: bool = False  # NHWC memory layout for the convolutions
    attention: str = "sdpa"  # the prior's attention: torch SDPA kernels or the eager matmul-softmax

    def __post_init__(self):
        import torch

        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError):
            raise InvalidOptionError(f"unknown device {self.device!r}") from None
        if self.dtype not in DTYPES:
            raise InvalidOptionError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.attention not in ATTENTION:
            raise InvalidOptionError(f"attention must be one of {', '.join(ATTENTION)}, got {self.attention!r}")
        if self.int8 and device.type != "cpu":
            raise InvalidOptionError(
                "INT8 decoding runs on the CPU only (torch's quantized kernels); use --dtype on a GPU"
            )
        if device.type == "cuda" and not torch.cuda.is_available():
            raise InvalidOptionError("device cuda requested but no CUDA GPU is available")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise InvalidOptionError("device mps requested but MPS is not available")

    @property
    def torch_dtype(self):
        import torch

        return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[self.dtype]

    @property
    def home(self):
        """Where the decoding models are kept between stages (a torch.device)."""
        import torch

        return torch.device("cpu") if self.offload else torch.device(self.device)
