"""The refusals only the `dpc` application makes: about its outputs and its Ray cluster.

They are CodecErrors (codec/errors.py) like the library's, each with its own exit code
(dpc/exit_codes.py has the table); the library never raises them. The refusals that the
library or `eval` raise too (an unreadable image, an unwritable output, no inputs) stay in
codec/errors.py.
"""

from codec.errors import CodecError

__all__ = ["ClusterError", "OutputExistsError", "UnsafeOutputError"]


class OutputExistsError(CodecError):
    """The output path exists and overwriting was not asked for (`--force`)."""

    exit_code = 9


class UnsafeOutputError(CodecError):
    """Writing the output would destroy something even --force must not replace: an input of the
    same run, another input's output, or a file that is not a regular file or a symlink (a FIFO,
    a device, a socket)."""

    exit_code = 13


class ClusterError(CodecError):
    """`--ray`: the cluster cannot be reached or cannot place the workers asked for."""

    exit_code = 14
