"""Outputs never cost the user a file (dpc/files.py, dpc/batch.py): --force never writes over an
input of the same run, nor over anything but a regular file or a symlink, and an output folder that
cannot be written fails the run before any encoding. Folder mode says what it skipped, and why."""

import os
import stat

import pytest
from helpers import make_smooth, tree

import codec.pipeline as api_module
import dpc.files as files_module
from codec import BitstreamError, NoInputsError, OutputWriteError
from dpc.errors import UnsafeOutputError


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    make_smooth(24, 16).save(path)
    return path


@pytest.fixture
def no_encoding(monkeypatch):
    """Fails the test if any image gets encoded (the refusal must come first)."""

    def refuse(*args, **kwargs):
        raise AssertionError("an image was encoded")

    monkeypatch.setattr(api_module.Codec, "compress", refuse)
    monkeypatch.setattr(api_module.Codec, "compress_to_bpp", refuse)


def _one_line(r) -> str:
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dpc: error: "), r.err
    assert "Traceback" not in r.err
    return lines[0]


@pytest.mark.parametrize("force", [[], ["--force"]], ids=["without force", "with force"])
def test_an_output_equal_to_the_input_leaves_the_input_byte_identical(dpc, photo, no_encoding, force):
    before = photo.read_bytes()
    r = dpc("compress", photo, "-o", photo, *force)
    assert r.code == UnsafeOutputError.exit_code == 13
    assert "is an input of this run" in _one_line(r)
    assert photo.read_bytes() == before
    assert tree(photo.parent) == {"photo.png"}


@pytest.mark.parametrize("link", ["symlink", "hard link", "other spelling"])
def test_force_refuses_an_output_that_is_the_input_under_another_name(dpc, photo, no_encoding, link):
    out = photo.parent / "out.dpc"
    if link == "symlink":
        out.symlink_to(photo)
    elif link == "hard link":
        os.link(photo, out)
    else:
        out = photo.parent / "." / ".." / photo.parent.name / photo.name
    before = photo.read_bytes()
    r = dpc("compress", photo, "-o", out, "--force")
    assert r.code == UnsafeOutputError.exit_code
    _one_line(r)
    assert photo.read_bytes() == before


def test_decompress_onto_its_own_input_is_refused_too(dpc, tmp_path, small_dpc):
    (tmp_path / "x.dpc").write_bytes(small_dpc)
    r = dpc("decompress", tmp_path / "x.dpc", "-o", tmp_path / "x.dpc", "--force")
    assert r.code == UnsafeOutputError.exit_code
    assert (tmp_path / "x.dpc").read_bytes() == small_dpc


def test_force_onto_a_fifo_leaves_it_in_place_with_a_one_line_refusal(dpc, photo, no_encoding):
    fifo = photo.parent / "out.dpc"
    os.mkfifo(fifo)
    r = dpc("compress", photo, "-o", fifo, "--force")
    assert r.code == UnsafeOutputError.exit_code
    assert "FIFO" in _one_line(r)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert tree(photo.parent) == {"photo.png", "out.dpc"}  # no temp file either


def test_force_onto_a_device_node_leaves_it_in_place(dpc, photo, no_encoding):
    """A character device made in the test's own folder (the numbers of /dev/null): never renamed over."""
    node = photo.parent / "device.dpc"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, OSError):
        pytest.skip("mknod is not allowed here")
    r = dpc("compress", photo, "-o", node, "--force")
    assert r.code == UnsafeOutputError.exit_code
    assert "character device" in _one_line(r)
    assert stat.S_ISCHR(os.lstat(node).st_mode)


def test_a_device_that_appears_while_encoding_is_not_renamed_over(photo, monkeypatch):
    """write_atomic looks again right before its rename (here the device is simulated with lstat)."""
    target = photo.parent / "out.dpc"
    target.write_bytes(b"regular, for now")
    real_lstat = os.lstat

    def lstat(path, *args, **kwargs):
        st = real_lstat(path, *args, **kwargs)
        if os.fspath(path) != os.fspath(target) or not any(p.name.endswith(".part") for p in photo.parent.iterdir()):
            return st
        return os.stat_result((stat.S_IFCHR | 0o666, *st[1:]))  # once the temp file exists: a device

    monkeypatch.setattr(files_module.os, "lstat", lstat)
    with pytest.raises(UnsafeOutputError, match="character device"):
        files_module.write_atomic(target, b"new", force=True)
    assert target.read_bytes() == b"regular, for now"
    assert tree(photo.parent) == {"photo.png", "out.dpc"}


def test_force_replaces_a_symlink_as_a_link_and_leaves_its_target_alone(dpc, photo, tmp_path):
    target = tmp_path / "elsewhere.bin"
    target.write_bytes(b"not mine to touch")
    link = photo.parent / "out.dpc"
    link.symlink_to(target)
    r = dpc("compress", photo, "-o", link, "--force")
    assert r.code == 0, r.err
    assert not link.is_symlink() and link.read_bytes()[:2] == b"DP"
    assert target.read_bytes() == b"not mine to touch"


def test_a_missing_output_folder_fails_before_any_encoding(dpc, photo, no_encoding):
    out = photo.parent / "no" / "such" / "folder" / "x.dpc"
    r = dpc("compress", photo, "-o", out)
    assert r.code == OutputWriteError.exit_code == 11
    assert _one_line(r) == f"dpc: error: cannot write {out}: folder {out.parent} does not exist"


def test_an_unwritable_output_folder_fails_a_folder_run_before_any_encoding(dpc, tmp_path, monkeypatch, no_encoding):
    pics = tmp_path / "pics"
    pics.mkdir()
    for name in ("a", "b"):
        make_smooth(16, 16).save(pics / f"{name}.png")

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(files_module.tempfile, "mkstemp", read_only)
    r = dpc("compress", pics, "-o", tmp_path / "out")
    assert r.code == OutputWriteError.exit_code
    assert r.err.strip().splitlines()[-1] == "dpc: compress: 0 ok, 0 skipped, 2 failed"


def test_a_folder_run_with_force_fails_only_the_file_whose_output_is_a_fifo(dpc, tmp_path):
    pics = tmp_path / "pics"
    pics.mkdir()
    for name in ("a", "b"):
        make_smooth(16, 16).save(pics / f"{name}.png")
    (tmp_path / "out").mkdir()
    os.mkfifo(tmp_path / "out" / "a.dpc")
    r = dpc("compress", pics, "-o", tmp_path / "out", "--force")
    assert r.code == UnsafeOutputError.exit_code
    lines = [line for line in r.err.replace("\r", "\n").splitlines() if line.startswith("dpc: ")]
    assert lines[0].startswith("dpc: error: a.png: ") and "FIFO" in lines[0]
    assert lines[-1] == "dpc: compress: 1 ok, 0 skipped, 1 failed"
    assert stat.S_ISFIFO(os.lstat(tmp_path / "out" / "a.dpc").st_mode)
    assert (tmp_path / "out" / "b.dpc").read_bytes()[:2] == b"DP"


def test_folder_mode_says_what_it_skipped_and_why(dpc, tmp_path):
    pics = tmp_path / "pics"
    pics.mkdir()
    make_smooth(16, 16).save(pics / "a.png")
    for name in ("notes.txt", "data.csv", "b.dpc"):
        (pics / name).write_text("not an image")
    (pics / "raw").mkdir()

    r = dpc("compress", pics, "-q", "1")

    assert r.code == 0, r.err
    lines = [line for line in r.err.replace("\r", "\n").splitlines() if line.startswith("dpc: ")]
    assert lines == [
        "dpc: compress: 3 files skipped: not images (b.dpc, data.csv, notes.txt)",
        "dpc: compress: 1 folder skipped: subfolders are not searched (raw)",
        "dpc: compress: 1 ok, 0 skipped, 0 failed",
    ]
    r = dpc("compress", pics, "-q", "1")  # a rerun does not count its own output, a.dpc, as skipped
    assert "3 files skipped: not images" in r.err and "a.dpc" not in r.err


def test_a_folder_with_nothing_to_do_says_what_it_holds(dpc, tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("hello")
    r = dpc("compress", tmp_path / "docs")
    assert r.code == NoInputsError.exit_code == 12
    assert _one_line(r).endswith("; 1 file skipped: not images (readme.txt)")


def test_an_empty_dpc_file_is_called_empty_not_bad_magic(dpc, tmp_path):
    (tmp_path / "x.dpc").write_bytes(b"")
    r = dpc("decompress", tmp_path / "x.dpc")
    assert r.code == BitstreamError.exit_code
    line = _one_line(r)
    assert "empty (0 bytes)" in line and "magic" not in line
    assert "empty" in dpc("info", tmp_path / "x.dpc").err


@pytest.fixture
def umask():
    """Set the process umask for one test, restored after."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize("mask", [0o077, 0o027, 0o002], ids=["077", "027", "002"])
def test_outputs_get_the_permissions_the_umask_allows(dpc, photo, umask, mask):
    umask(mask)
    assert dpc("compress", photo, "-q", "1").code == 0
    assert dpc("decompress", photo.with_suffix(".dpc"), "-o", photo.parent / "back.png").code == 0
    for out in (photo.with_suffix(".dpc"), photo.parent / "back.png"):
        assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask, out


def test_force_never_makes_a_private_file_readable_by_others(dpc, photo, umask):
    out = photo.with_suffix(".dpc")
    out.write_bytes(b"private")
    out.chmod(0o600)
    assert dpc("compress", photo, "-q", "1", "--force").code == 0
    assert out.read_bytes()[:2] == b"DP"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_force_over_a_file_keeps_the_umask_when_that_is_the_narrower(dpc, photo, umask):
    out = photo.with_suffix(".dpc")
    out.write_bytes(b"old")
    out.chmod(0o664)
    umask(0o077)
    assert dpc("compress", photo, "-q", "1", "--force").code == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
