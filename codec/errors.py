"""One exception family for everything the codec refuses.

The CLI maps each subclass to a one-line message and its own exit code, so a
script can tell "this is not a .dpc file" from "this file needs other weights".
The bitstream-level classes are defined in bitstream/errors.py; the refusals only the
`dpc` application makes (an existing or unsafe output, the Ray cluster) in dpc/errors.py,
the exit-code table in dpc/exit_codes.py.
"""

from bitstream.errors import (
    BitstreamError,
    CodecError,
    DecoderDesyncError,
    ImageTooLargeError,
    InvalidOptionError,
    UnsupportedVersionError,
)

__all__ = [
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
]


class ImageReadError(CodecError):
    """The input image is missing, unreadable, empty or not an image."""

    exit_code = 3


class ModelMismatchError(CodecError):
    """The .dpc file was made with other model weights than the ones loaded."""

    exit_code = 7


class ModelFileError(CodecError):
    """The weight file is missing, not safetensors, or does not match its config."""

    exit_code = 10


class OutputWriteError(CodecError):
    """An output could not be written: its folder is missing or unwritable, the disk is full, ..."""

    exit_code = 11


class NoInputsError(CodecError):
    """A folder input holds nothing to do: no images (compress) or no .dpc files (decompress)."""

    exit_code = 12
