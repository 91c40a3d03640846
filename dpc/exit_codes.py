"""What each exit code of `dpc` means: the table in `dpc --help` and in docs/cli.md.

Refusals are CodecError subclasses, each with its own code: the library's (codec/errors.py)
and the application's own (dpc/errors.py); the others are the CLI's (usage, a bug, a signal).
In folder mode the run's code is the first failing file's (input order).
tests/test_exit_codes.py provokes every row.
"""

from codec.errors import (
    BitstreamError,
    CodecError,
    DecoderDesyncError,
    ImageReadError,
    ImageTooLargeError,
    InvalidOptionError,
    ModelFileError,
    ModelMismatchError,
    NoInputsError,
    OutputWriteError,
    UnsupportedVersionError,
)

from .errors import ClusterError, OutputExistsError, UnsafeOutputError

INTERNAL_ERROR, INTERRUPTED, TERMINATED = 70, 130, 143

EXIT_CODES: tuple[tuple[int, str], ...] = (
    (0, "success (folder mode: every file written or skipped)"),
    (CodecError.exit_code, "any other refusal (dpc bench: every configuration failed)"),
    (
        InvalidOptionError.exit_code,
        "usage: unknown option, or a value out of range (-q 9, -q nan, -q 3.01, --bpp 0, --steps 101)",
    ),
    (ImageReadError.exit_code, "unreadable image: missing, empty, not an image, cut short or damaged, NaN pixels"),
    (ImageTooLargeError.exit_code, "too large: over --max-pixels (images and .dpc headers)"),
    (BitstreamError.exit_code, "not a .dpc file: empty, truncated or corrupted"),
    (UnsupportedVersionError.exit_code, "unsupported .dpc format version"),
    (ModelMismatchError.exit_code, ".dpc file made with other model weights"),
    (DecoderDesyncError.exit_code, "decoder desync: the decoded symbols fail their check"),
    (OutputExistsError.exit_code, "output exists (use --force) or is a folder"),
    (ModelFileError.exit_code, "unusable weight file"),
    (OutputWriteError.exit_code, "cannot write: output folder missing or unwritable, disk full"),
    (NoInputsError.exit_code, "nothing to do: no images (or .dpc files) in the input folder"),
    (UnsafeOutputError.exit_code, "refused even with --force: output is an input, shared by two, a FIFO, a device"),
    (ClusterError.exit_code, "--ray: the cluster cannot be reached or cannot place the workers"),
    (INTERNAL_ERROR, "internal error, a bug (DPC_DEBUG=1 shows its traceback)"),
    (INTERRUPTED, "interrupted (Ctrl-C, SIGINT)"),
    (TERMINATED, "terminated (SIGTERM)"),
)
