"""The errors the bytes layer raises; the base of the codec's whole exception family.

`codec.errors` re-exports these and adds the rest, so users catch `codec.CodecError`.
They live here, at the bottom of the data flow, so that `bitstream` imports
nothing from `codec`.
"""


class CodecError(Exception):
    """Base class: bad input, never a bug. `exit_code` is what `dpc` exits with."""

    exit_code = 1


class ImageTooLargeError(CodecError):
    """The image (or the size a header claims) exceeds the pixel limit."""

    exit_code = 4


class BitstreamError(CodecError):
    """The .dpc data is truncated, corrupted or not a .dpc file at all."""

    exit_code = 5


class UnsupportedVersionError(BitstreamError):
    """The .dpc file was written in a format version this decoder cannot read."""

    exit_code = 6


class DecoderDesyncError(BitstreamError):
    """The decoded symbols fail their check: the entropy decoder lost sync.

    Raised instead of returning silently wrong pixels (e.g. when the entropy
    parameters the decoder derived differ from the encoder's).
    """

    exit_code = 8


class InvalidOptionError(CodecError):
    """An option's value is out of range (quality, target bpp, refinement settings, tile, device,
    pixel limit), or the arguments do not fit together; the CLI's usage errors share its exit code.
    Defined here because the bytes layer checks its own options too (BitstreamLimits)."""

    exit_code = 2
