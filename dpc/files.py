"""Writing outputs safely: all or nothing, never clobbering without being asked.

Even with --force an output never replaces an input of the same run, nor anything but a
regular file or a symlink (a FIFO or a device stays in place); `check_output` and
`check_writable` let a run refuse before it spends any work.
"""

import errno
import glob
import os
import secrets
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from codec.errors import OutputWriteError

from .errors import OutputExistsError, UnsafeOutputError

_TEMP_SUFFIX = ".part"
_KINDS = {stat.S_IFIFO: "FIFO", stat.S_IFCHR: "character device", stat.S_IFBLK: "block device", stat.S_IFSOCK: "socket"}


class InputSet:
    """The files a run reads, by resolved path and by (device, inode): membership in O(1)."""

    def __init__(self, paths: Iterable[Path]):
        self.paths, self.inodes = set(), set()
        for p in paths:
            self.paths.add(os.path.realpath(p))
            try:
                st = os.stat(p)
            except OSError:
                continue
            self.inodes.add((st.st_dev, st.st_ino))

    def __contains__(self, path) -> bool:
        if os.path.realpath(path) in self.paths:
            return True
        try:
            st = os.stat(path)  # follows a symlink: one that points at an input is refused too
        except OSError:
            return False
        return (st.st_dev, st.st_ino) in self.inodes


def check_output(
    path: Path, inputs: Iterable[Path] | InputSet = (), force: bool = False, advice: str = "use --force to overwrite"
) -> None:
    """Refuse an output that writing would destroy, before the work that makes it.

    UnsafeOutputError, with or without `force`: `path` is one of `inputs` (the same resolved
    path, or the same file by device and inode: a hard link or a symlink to it), or it is
    something other than a regular file, a symlink or a folder (FIFO, device, socket).
    OutputExistsError: it is a folder, or it exists and `force` is off (the message ends in
    `advice`). A symlink is replaced as a link; the file it points to is left alone.
    """
    path = Path(path)
    if path in (inputs if isinstance(inputs, InputSet) else InputSet(inputs)):
        raise UnsafeOutputError(f"{path} is an input of this run; refusing to write over it")
    st = _lstat(path)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        raise OutputExistsError(f"{path} is a folder")
    _check_replaceable(path, st)
    if not force:
        raise OutputExistsError(f"{path} exists ({advice})")


def check_writable(path: Path) -> None:
    """OutputWriteError unless a file can be created beside `path` (its folder exists, is writable)."""
    reason = unwritable_reason(Path(path).parent)
    if reason is not None:
        raise OutputWriteError(f"cannot write {path}: {reason}")


def unwritable_reason(folder: Path) -> str | None:
    """Why no file can be created in `folder` (None if one can): tried for real, as root ignores modes."""
    folder = Path(folder)
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".dpc-probe.", suffix=_TEMP_SUFFIX)
    except OSError as exc:
        if not folder.exists():
            return f"folder {folder} does not exist"
        if not folder.is_dir():
            return f"{folder} is not a folder"
        return exc.strerror or str(exc)
    os.close(fd)
    os.unlink(probe)
    return None


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _check_replaceable(path: Path, st: os.stat_result) -> None:
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "special file")
        raise UnsafeOutputError(f"{path} is a {kind}, not a regular file; refusing to replace it")


def write_atomic(path: Path, data: bytes, force: bool = False, inputs: Iterable[Path] | InputSet = ()) -> None:
    """Write `data` to `path` via a temporary file in the same folder.

    Readers never see a half-written file and a failure (disk full, Ctrl-C)
    leaves nothing behind. Without `force` an existing file is never replaced,
    even one that appears while we write (the final step is a hard link,
    which fails if the name is taken). With it, `check_output`'s rules hold,
    checked again right before the rename.
    """
    path = Path(path)
    check_output(path, inputs, force)
    tmp = None
    try:
        fd, tmp = _create_temp(path)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if force:
            st = _lstat(path)
            if st is not None:  # what is there now, not what was there when we started
                if stat.S_ISDIR(st.st_mode):
                    raise OutputExistsError(f"{path} is a folder")
                _check_replaceable(path, st)
                if stat.S_ISREG(st.st_mode):  # a private file stays private: never wider than what it replaces
                    os.chmod(tmp, stat.S_IMODE(os.stat(tmp).st_mode) & stat.S_IMODE(st.st_mode))
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
        raise OutputWriteError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _create_temp(path: Path) -> tuple[int, str]:
    """A new, empty temp file beside `path`: (fd, name), named `.NAME.XXXXXXXX.part`.

    Created with mode 0666 for the kernel to apply the umask (and a folder's default ACL) as for
    any file the user makes: mkstemp's fixed 0600, widened by a chmod, ignored them (issue #30)."""
    for _ in range(100):
        tmp = os.path.join(path.parent, f".{path.name}.{secrets.token_hex(4)}{_TEMP_SUFFIX}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free temporary name beside {path}")


def remove_temp_files(path: Path) -> None:
    """Remove temp files write_atomic(path) may have left when it was killed or interrupted mid-way.

    They are named `.NAME.XXXXXXXX.part` (8 random characters, see `_create_temp`) beside `path`.
    """
    path = Path(path)
    for tmp in glob.glob(
        os.path.join(glob.escape(str(path.parent)), f".{glob.escape(path.name)}.{'?' * 8}{_TEMP_SUFFIX}")
    ):
        try:
            os.unlink(tmp)
        except OSError:
            pass
