"""dpcodec: a neural image codec with a latent hyperprior and a few-step diffusion prior.

from codec import Codec
c = Codec.load()
data = c.compress(image, quality=3)          # records the level's default refinement
image = c.decompress(data)                   # refines as recorded; steps=0 for the plain decoder
image = c.decompress(data, steps=8, sampler="dpmpp", guidance=2.0, seed=1)
"""

from bitstream import RefineSettings

from .api import DEFAULT_QUALITY, Codec
from .errors import (
    BitstreamError,
    CodecError,
    DecoderDesyncError,
    ImageReadError,
    ImageTooLargeError,
    ModelFileError,
    ModelMismatchError,
    OutputExistsError,
    UnsupportedVersionError,
)
from .images import load_image

__all__ = [
    "DEFAULT_QUALITY",
    "BitstreamError",
    "Codec",
    "CodecError",
    "DecoderDesyncError",
    "ImageReadError",
    "ImageTooLargeError",
    "ModelFileError",
    "ModelMismatchError",
    "OutputExistsError",
    "RefineSettings",
    "UnsupportedVersionError",
    "load_image",
]
