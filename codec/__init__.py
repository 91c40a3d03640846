"""dpcodec: a neural image codec with a latent hyperprior and a few-step diffusion prior.

from codec import Codec
c = Codec.load()
data = c.compress(image, quality=3)          # records the level's default refinement
image = c.decompress(data)                   # perceptual decoder, refined as recorded; fidelity=True: MSE decoder
image = c.decompress(data, steps=8, sampler="dpmpp", guidance=2.0, seed=1)

The names below are imported on first use (PEP 562), so `import codec` and the
`dpc` entry point (dpc/cli.py) cost nothing until torch is really needed: the
CLI sets its Ctrl-C / SIGTERM handling before the slow imports start.
"""

import importlib
import os

# MKL's GEMM (PyTorch's own CPU convolutions and linear layers) splits its sums by thread
# count on Intel CPUs with AVX-512 / AMX, so a decode gave other last bits with 1 and 2
# threads (issue #30). MKL's strict conditional-numerical-reproducibility mode makes them
# thread-count independent. MKL reads it at its first call, so this must come before any
# matrix work; a user's own MKL_CBWR wins. The pixel decoders run on oneDNN and do not pay for it.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

_SOURCES = {  # public name -> the module that defines it
    "DEFAULT_QUALITY": "codec.pipeline",
    "Codec": "codec.pipeline",
    "RefineSettings": "bitstream",
    "RatePoint": "bitstream",
    "Symbols": "codec.pipeline",
    "load_image": "codec.images",
    **dict.fromkeys(
        (
            "BitstreamError",
            "CodecError",
            "DecoderDesyncError",
            "ImageReadError",
            "ImageTooLargeError",
            "InvalidOptionError",
            "ModelFileError",
            "ModelMismatchError",
            "NoInputsError",
            "OutputWriteError",
            "UnsupportedVersionError",
        ),
        "codec.errors",
    ),
}

__all__ = sorted(_SOURCES)


def __getattr__(name: str):
    if name not in _SOURCES:
        raise AttributeError(f"module 'codec' has no attribute {name!r}")
    value = getattr(importlib.import_module(_SOURCES[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SOURCES))
