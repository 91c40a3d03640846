"""dpcodec: a neural image codec with a latent hyperprior (and, next, a diffusion prior).

from codec import Codec
c = Codec.load()
data = c.compress(image, quality=3)
image = c.decompress(data)
"""

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
    "UnsupportedVersionError",
    "load_image",
]
