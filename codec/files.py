"""Writing outputs safely: all or nothing, never clobbering without being asked."""

import os
import tempfile
from pathlib import Path

from .errors import CodecError, OutputExistsError


def write_atomic(path: Path, data: bytes, force: bool = False) -> None:
    """Write `data` to `path` via a temporary file in the same folder.

    Readers never see a half-written file and a failure (disk full, Ctrl-C)
    leaves nothing behind. Without `force` an existing file is never replaced,
    even one that appears while we write (the final step is a hard link,
    which fails if the name is taken).
    """
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path} exists (use --force to overwrite)")
    if path.is_dir():
        raise OutputExistsError(f"{path} is a folder")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are ordinary files
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise OutputExistsError(f"{path} exists (use --force to overwrite)") from None
            except OSError:  # file systems without hard links: check-then-rename
                if path.exists():
                    raise OutputExistsError(f"{path} exists (use --force to overwrite)") from None
                os.replace(tmp, path)
    except OSError as exc:
        raise CodecError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
