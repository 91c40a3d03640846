"""How the decoding models run: device, precision, INT8, offload, compile, memory layout.

    RunOptions(device="cpu")                          the default: fp32, works everywhere
    RunOptions(device="cpu", int8=True)               CPU: INT8 decoder and prior (codec/quantization.py)
    RunOptions(device="cuda", dtype="fp16")           GPU: half precision
    RunOptions(device="cuda", offload=True)           each model on the GPU only while its stage runs

Usability over performance: the defaults work on every machine; each speed-up is a
named option, measured by `dpc bench` (docs/performance.md says which to pick where).

The options touch only decoding-side compute (diffusion prior, pixel decoders). The
encoder's analysis and the entropy parameters always run in fp32 / float64, so a
file's bytes never depend on them, and every option decodes every file.
"""

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .errors import InvalidOptionError

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
ATTENTION = ("sdpa", "eager")


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
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def home(self) -> torch.device:
        """Where the decoding models are kept between stages."""
        return torch.device("cpu") if self.offload else torch.device(self.device)

    def describe(self) -> str:
        parts = [self.device, f"int8 + {self.dtype}" if self.int8 else self.dtype]
        parts += [name for name in ("offload", "compile", "channels_last") if getattr(self, name)]
        if self.attention != "sdpa":
            parts.append(f"attention {self.attention}")
        return ", ".join(parts)


class Runner(nn.Module):
    """Runs `module` in the options' dtype and memory layout; inputs and outputs stay fp32.

    Keeps the sampling loop and the tiler free of precision concerns: they hand in fp32
    tensors and get fp32 back whatever the module computes in.
    """

    def __init__(self, module: nn.Module, options: RunOptions):
        super().__init__()
        self.module = module
        self.dtype = options.torch_dtype
        self.channels_last = options.channels_last
        self._call = torch.compile(module, dynamic=False) if options.compile else module

    def forward(self, *args: Tensor) -> Tensor:
        args = tuple(self._cast(a) for a in args)
        out = self._call(*args)
        return out.float() if out.dtype != torch.float32 else out

    def _cast(self, x):
        if not isinstance(x, Tensor) or not x.is_floating_point():
            return x
        x = x.to(self.dtype)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x


def prepare(module: nn.Module, options: RunOptions) -> nn.Module:
    """Cast a float module to the options' dtype and layout and put it at its home device."""
    module = module.to(options.home, dtype=options.torch_dtype)
    if options.channels_last:
        module = module.to(memory_format=torch.channels_last)
    return module.eval()


def set_attention(prior_unet: nn.Module, kind: str) -> None:
    """Select the diffusers UNet's attention implementation (SDPA kernels or eager math)."""
    from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0

    for m in prior_unet.modules():
        if isinstance(m, Attention):
            m.set_processor(AttnProcessor2_0() if kind == "sdpa" else AttnProcessor())


@contextmanager
def on_device(module: nn.Module, options: RunOptions):
    """With offload: move `module` to the device for the `with` block, then back to the CPU."""
    if not options.offload:
        yield module
        return
    module.to(options.device)
    try:
        yield module
    finally:
        module.to(options.home)
        if torch.device(options.device).type == "cuda":
            torch.cuda.empty_cache()  # give the stage's activations back for the next stage
