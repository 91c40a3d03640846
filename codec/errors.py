"""One exception family for everything the codec refuses.

The CLI maps each subclass to a one-line message and its own exit code, so a
script can tell "this is not a .dpc file" from "this file needs other weights".
"""


class CodecError(Exception):
    """Base class: bad input, never a bug. `exit_code` is what `dpc` exits with."""

    exit_code = 1


class ImageReadError(CodecError):
    """The input image is missing, unreadable, empty or not an image."""

    exit_code = 3


class ImageTooLargeError(CodecError):
    """The image (or the size a header claims) exceeds the pixel limit."""

    exit_code = 4


class BitstreamError(CodecError):
    """The .dpc data is truncated, corrupted or not a .dpc file at all."""

    exit_code = 5


class UnsupportedVersionError(BitstreamError):
    """The .dpc file was written in a format version this decoder cannot read."""

    exit_code = 6


class ModelMismatchError(CodecError):
    """The .dpc file was made with other model weights than the ones loaded."""

    exit_code = 7


class DecoderDesyncError(BitstreamError):
    """The decoded symbols fail their check: the entropy decoder lost sync.

    Raised instead of returning silently wrong pixels (e.g. when the entropy
    parameters the decoder derived differ from the encoder's).
    """

    exit_code = 8


class OutputExistsError(CodecError):
    """The output path exists and overwriting was not asked for (`--force`)."""

    exit_code = 9


class ModelFileError(CodecError):
    """The weight file is missing, not safetensors, or does not match its config."""

    exit_code = 10
