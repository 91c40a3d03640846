"""One exception family for everything the codec refuses.

The CLI maps each subclass to a one-line message and its own exit code, so a
script can tell "this is not a .dpc file" from "this file needs other weights".
The bitstream-level classes are defined in bitstream/errors.py.
"""

from bitstream.errors import (
    BitstreamError,
    CodecError,
    DecoderDesyncError,
    ImageTooLargeError,
    UnsupportedVersionError,
)

__all__ = [
    "BitstreamError",
    "CodecError",
    "DecoderDesyncError",
    "ImageReadError",
    "ImageTooLargeError",
    "ModelFileError",
    "ModelMismatchError",
    "OutputExistsError",
    "UnsupportedVersionError",
]


class ImageReadError(CodecError):
    """The input image is missing, unreadable, empty or not an image."""

    exit_code = 3


class ModelMismatchError(CodecError):
    """The .dpc file was made with other model weights than the ones loaded."""

    exit_code = 7


class OutputExistsError(CodecError):
    """The output path exists and overwriting was not asked for (`--force`)."""

    exit_code = 9


class ModelFileError(CodecError):
    """The weight file is missing, not safetensors, or does not match its config."""

    exit_code = 10
