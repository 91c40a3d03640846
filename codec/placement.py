"""Where a model sits while a stage runs: with offload (RunOptions.offload), on the device for
that stage only, on the CPU otherwise (so a small GPU holds one stage's weights at a time)."""

from contextlib import contextmanager

import torch
from torch import nn

from .options import RunOptions


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
