"""Writing outputs safely: all or nothing, never clobbering without being asked."""

import glob
import os
import tempfile
from pathlib import Path

from .errors import CodecError, OutputExistsError

_TEMP_SUFFIX = ".part"


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
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TEMP_SUFFIX)
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


def remove_temp_files(path: Path) -> None:
    """Remove temp files write_atomic(path) may have left when it was killed or interrupted mid-way.

    They are named `.NAME.XXXXXXXX.part` (mkstemp's 8 random characters) beside `path`.
    """
    path = Path(path)
    for tmp in glob.glob(
        os.path.join(glob.escape(str(path.parent)), f".{glob.escape(path.name)}.{'?' * 8}{_TEMP_SUFFIX}")
    ):
        try:
            os.unlink(tmp)
        except OSError:
            pass
