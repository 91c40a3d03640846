"""How the decoding models run under a Codec's RunOptions (codec/options.py).

Runner(module, options)     the module in the options' dtype and layout; fp32 in and out
Runners                     each decoding model built once, INT8-quantized when asked
"""

from collections.abc import Callable
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from .errors import CodecError
from .options import RunOptions

THREAD_INVARIANT = ("prior",)  # the models run with thread-count-independent kernels (see Runner)


class Runner(nn.Module):
    """Runs `module` in the options' dtype and memory layout; inputs and outputs stay fp32.

    Keeps the sampling loop and the tiler free of precision concerns: they hand in fp32
    tensors and get fp32 back whatever the module computes in.
    """

    def __init__(self, module: nn.Module, options: RunOptions, thread_invariant: bool = False):
        """`thread_invariant`: run without oneDNN, whose convolutions sum in an order that depends
        on the thread count (the diffusion prior's convolutions gave other last bits with 1 and 2
        threads on an AMD EPYC; PyTorch's own kernels gave the same)."""
        super().__init__()
        self.module = module
        self.dtype = options.torch_dtype
        self.channels_last = options.channels_last
        self.thread_invariant = thread_invariant
        self._call = torch.compile(module, dynamic=False) if options.compile else module

    def forward(self, *args: Tensor) -> Tensor:
        args = tuple(self._cast(a) for a in args)
        if self.thread_invariant and args[0].device.type == "cpu":
            with without_onednn():
                out = self._call(*args)
        else:
            out = self._call(*args)
        return out.float() if out.dtype != torch.float32 else out

    def _cast(self, x):
        if not isinstance(x, Tensor) or not x.is_floating_point():
            return x
        x = x.to(self.dtype)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x


class Runners:
    """Each decoding model ("prior", "perceptual", "plain") as it runs under the options, built once.

    With int8, a model is quantized with the calibration table, which is tied to the weight
    files' SHA-256 (`digests()`: what the Codec has loaded).
    """

    def __init__(self, options: RunOptions, int8_table=None, digests: Callable[[], dict] | None = None):
        self.options, self.int8_table, self.digests = options, int8_table, digests
        self._built: dict[str, Runner] = {}

    def get(self, name: str, build: Callable[[], nn.Module]) -> "Runner":
        if name not in self._built:
            module = build()
            if self.options.int8:
                try:
                    from .quantization import load_table, quantize
                except ImportError as exc:  # torch.ao.quantization is deprecated upstream
                    raise CodecError(f"INT8 decoding needs torch.ao.quantization, missing here: {exc}") from None

                module = quantize(name, module, load_table(self.int8_table, self.digests()))
            # The prior runs in a loop whose steps feed each other, and costs little beside the
            # pixel decode (where oneDNN's kernels are 2.3x faster and sum in a fixed order here).
            invariant = name in THREAD_INVARIANT
            self._built[name] = Runner(prepare(module, self.options), self.options, invariant)
        return self._built[name]

    @contextmanager
    def replaced(self, modules: dict[str, nn.Module]):
        """Run these modules as they are (fp32) instead, within the `with` block (INT8 calibration)."""
        saved, self._built = self._built, {name: Runner(m, RunOptions()) for name, m in modules.items()}
        try:
            yield
        finally:
            self._built = saved


@contextmanager
def without_onednn():
    """PyTorch's own CPU kernels instead of oneDNN's within the block (a public switch, restored after)."""
    saved = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = saved


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
