"""Folder runs (dpc/batch.py): --jobs N worker processes, Ctrl-C / SIGTERM and reruns that finish only
what is missing, --max-pixels, and a full disk or a read-only output folder."""

import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import make_smooth, make_textured, sigint_default, tree
from PIL import Image

import dpc.cli as cli_module
import dpc.jobs as batch_module
from bitstream import read_container
from codec import ImageReadError, ImageTooLargeError, OutputWriteError

SUMMARY = "dpc: {verb}: {ok} ok, {skipped} skipped, {failed} failed"


def _images(folder, n, width=40, height=24):
    folder.mkdir(exist_ok=True)
    for i in range(n):
        make_smooth(width + 8 * (i % 4), height + 4 * (i % 3), seed=i).save(folder / f"img{i:02d}.png")
    return folder


def _lines(err: str) -> list[str]:
    """stderr without the progress bar (tqdm redraws it with carriage returns)."""
    return [line for line in err.replace("\r", "\n").splitlines() if line.startswith("dpc: ")]


def _assert_all_decode(folder, codec):
    for name in tree(folder):
        assert name.endswith(".dpc") and not name.startswith("."), name
        codec.decompress((folder / name).read_bytes())  # raises if incomplete or corrupt


def _process(*args, cwd, **popen_args):
    env = {k: v for k, v in os.environ.items() if k != "DPC_DEBUG"}  # as a user runs it: no tracebacks asked for
    cmd = [sys.executable, "-m", "dpc.cli", *map(str, args)]
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_default,
        **popen_args,
    )


def _child_programs(pid: int) -> list[str]:
    """The command lines of the processes whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
    return found


@pytest.fixture
def dpc_real(capsys):
    """`dpc ARGS...` in-process with the CLI's own model loading (so --max-pixels reaches the Codec)."""

    def run(*args):
        capsys.readouterr()
        code = cli_module.main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.err

    return run


# -- parallel runs ----------------------------------------------------------------------------
def test_jobs_2_writes_the_same_bytes_as_jobs_1_both_ways(dpc, tmp_path):
    pics = _images(tmp_path / "pics", 6)

    one = dpc("compress", pics, "-o", tmp_path / "one", "--jobs", "1")
    two = dpc("compress", pics, "-o", tmp_path / "two", "--jobs", "2")

    assert one.code == two.code == 0, (one.err, two.err)
    assert _lines(two.err) == [SUMMARY.format(verb="compress", ok=6, skipped=0, failed=0)]
    assert tree(tmp_path / "one") == tree(tmp_path / "two") == {f"img{i:02d}.dpc" for i in range(6)}
    for name in tree(tmp_path / "one"):
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name

    # The plain decoder gives the same bytes whatever the thread count of the worker.
    assert dpc("decompress", tmp_path / "one", "-o", tmp_path / "png1", "--steps", "0").code == 0
    r = dpc("decompress", tmp_path / "one", "-o", tmp_path / "png2", "-j", "2", "--steps", "0")
    assert r.code == 0, r.err
    assert tree(tmp_path / "png2") == {f"img{i:02d}.png" for i in range(6)}
    for name in tree(tmp_path / "png1"):
        assert (tmp_path / "png2" / name).read_bytes() == (tmp_path / "png1" / name).read_bytes(), name

    # With refinement, workers (1 thread each here) and the parent (2 threads) reduce the
    # UNet's GroupNorm/attention sums in different orders (~1e-6 apart): a rare pixel may
    # round one level differently, nothing more.
    assert dpc("decompress", tmp_path / "one", "-o", tmp_path / "ref1").code == 0
    assert dpc("decompress", tmp_path / "one", "-o", tmp_path / "ref2", "-j", "2").code == 0
    for name in tree(tmp_path / "ref1"):
        a = np.asarray(Image.open(tmp_path / "ref1" / name), dtype=int)
        b = np.asarray(Image.open(tmp_path / "ref2" / name), dtype=int)
        assert np.abs(a - b).max() <= 1 and (a != b).mean() < 1e-3, name


def test_jobs_2_reports_each_bad_file_in_input_order_and_writes_the_rest(dpc, tmp_path):
    pics = _images(tmp_path / "pics", 4)
    (pics / "bad.png").write_text("I am not a PNG")
    make_smooth(64, 64).save(pics / "zbig.png")  # over --max-pixels 4000; the small ones are under

    r = dpc("compress", pics, "-o", tmp_path / "out", "--jobs", "2", "--max-pixels", "4000")

    assert r.code == ImageReadError.exit_code  # the first failure in input order: bad.png before zbig.png
    assert tree(tmp_path / "out") == {f"img{i:02d}.dpc" for i in range(4)}  # and no temp file
    lines = _lines(r.err)
    assert lines[0].startswith("dpc: error: bad.png: ") and "not an image" in lines[0]
    assert lines[1].startswith("dpc: error: zbig.png: ") and "over the limit of 4000 pixels" in lines[1]
    assert lines[2:] == [SUMMARY.format(verb="compress", ok=4, skipped=0, failed=2)]
    assert "Traceback" not in r.err


def test_a_folder_rerun_skips_existing_outputs_and_force_redoes_them(dpc, tmp_path):
    pics = _images(tmp_path / "pics", 3)
    out = tmp_path / "out"
    assert dpc("compress", pics, "-o", out).code == 0
    (out / "img00.dpc").unlink()
    (out / "img01.dpc").write_bytes(b"someone else's file")

    r = dpc("compress", pics, "-o", out)

    assert r.code == 0, r.err
    assert _lines(r.err) == [SUMMARY.format(verb="compress", ok=1, skipped=2, failed=0)]
    assert (out / "img00.dpc").read_bytes()[:2] == b"DP"
    assert (out / "img01.dpc").read_bytes() == b"someone else's file"  # skipped, not overwritten

    r = dpc("compress", pics, "-o", out, "--force", "-j", "2")
    assert r.code == 0, r.err
    assert _lines(r.err) == [SUMMARY.format(verb="compress", ok=3, skipped=0, failed=0)]
    assert (out / "img01.dpc").read_bytes()[:2] == b"DP"


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_an_interrupted_parallel_run_leaves_only_complete_outputs_and_a_rerun_finishes_it(dpc, codec, tmp_path, how):
    pics = _images(tmp_path / "pics", 20, 256, 192)
    out = tmp_path / "out"
    proc = _process("compress", pics, "-o", out, "--jobs", "2", cwd=tmp_path, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not (out.is_dir() and any(p.suffix == ".dpc" for p in out.iterdir())):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no output appeared"
            time.sleep(0.02)
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the whole process group
        else:
            proc.send_signal(signal.SIGTERM)  # as `kill PID` does
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    assert proc.returncode == (130 if how == "ctrl-c" else 143), err
    assert "Traceback" not in err
    assert _lines(err)[-1] == ("dpc: interrupted" if how == "ctrl-c" else "dpc: terminated")
    done = tree(out)
    assert len(done) < 20
    _assert_all_decode(out, codec)  # no .part file, nothing half-written

    r = dpc("compress", pics, "-o", out, "--jobs", "2")

    assert r.code == 0, r.err
    assert _lines(r.err) == [SUMMARY.format(verb="compress", ok=20 - len(done), skipped=len(done), failed=0)]
    assert tree(out) == {f"img{i:02d}.dpc" for i in range(20)}
    for i in range(20):  # complete (length fields and CRC check out) and of the right image
        header = read_container((out / f"img{i:02d}.dpc").read_bytes()).header
        assert (header.width, header.height) == Image.open(pics / f"img{i:02d}.png").size


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker server in /proc")
def test_ctrl_c_while_the_worker_server_imports_torch_ends_in_one_line(codec, tmp_path):
    """Issue #30: a Ctrl-C in the first seconds of a -j 2 run, while the forkserver that the workers
    fork from imports torch, printed that server's KeyboardInterrupt traceback after "dpc: interrupted"."""
    files = tmp_path / "files"
    files.mkdir()
    for i in range(2):
        (files / f"f{i}.dpc").write_bytes(codec.compress(np.asarray(make_smooth(40, 24, seed=i)), quality=1))
    proc = _process("decompress", files, "-o", tmp_path / "out", "--jobs", "2", cwd=tmp_path, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not any("forkserver" in cmd for cmd in _child_programs(proc.pid)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no worker server started"
            time.sleep(0.01)
        time.sleep(0.3)  # past the interpreter's start, into the imports (torch alone takes over a second)
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the whole process group
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert _lines(err)[-1] == "dpc: interrupted"
    assert not (tmp_path / "out").exists() or tree(tmp_path / "out") == set()


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_an_interrupted_folder_run_removes_even_a_temp_file_write_atomic_could_not(dpc, tmp_path, monkeypatch, how):
    """In-process, one file at a time: the interruption lands after the temp file exists and before
    write_atomic could clean up (as a kill can); the run removes it, reports and exits 130 / 143."""
    pics = _images(tmp_path / "pics", 3)
    out = tmp_path / "out"
    real_write = batch_module.write_atomic

    def write(path, data, force=False):
        if path.name != "img01.dpc":
            return real_write(path, data, force)
        tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        if how == "ctrl-c":
            raise KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGTERM)  # the CLI's handler raises at once
        raise AssertionError("SIGTERM did not interrupt")

    monkeypatch.setattr(batch_module, "write_atomic", write)
    r = dpc("compress", pics, "-o", out)

    assert r.code == (130 if how == "ctrl-c" else 143)
    assert tree(out) == {"img00.dpc"}
    assert _lines(r.err) == [
        "dpc: compress: stopped with 1 ok, 0 skipped, 0 failed, 2 not done (run again to finish them)",
        "dpc: interrupted" if how == "ctrl-c" else "dpc: terminated",
    ]


# -- limits -----------------------------------------------------------------------------------
def test_max_pixels_refuses_a_larger_image_in_one_line(dpc_real, tmp_path):
    make_smooth(50, 40).save(tmp_path / "x.png")

    code, err = dpc_real("compress", tmp_path / "x.png", "--max-pixels", 1999)

    assert code == ImageTooLargeError.exit_code == 4
    assert err.startswith("dpc: error: ") and err.count("\n") == 1 and "2000 pixels" in err, err
    assert tree(tmp_path) == {"x.png"}
    assert dpc_real("compress", tmp_path / "x.png", "--max-pixels", 2000)[0] == 0  # the limit itself is allowed


def test_max_pixels_refuses_a_dpc_file_whose_header_is_larger_in_one_line(dpc_real, tmp_path, small_dpc):
    (tmp_path / "x.dpc").write_bytes(small_dpc)  # 24x16 = 384 pixels

    code, err = dpc_real("decompress", tmp_path / "x.dpc", "--max-pixels", 383)

    assert code == ImageTooLargeError.exit_code
    assert err.startswith("dpc: error: ") and err.count("\n") == 1 and "383 pixels" in err, err
    assert tree(tmp_path) == {"x.dpc"}
    assert dpc_real("decompress", tmp_path / "x.dpc", "--max-pixels", 384)[0] == 0


@pytest.mark.parametrize("option", [["--jobs", "0"], ["--max-pixels", "0"], ["-j", "two"]])
def test_a_non_positive_jobs_or_max_pixels_is_a_usage_error(dpc, tmp_path, capsys, option):
    make_smooth(16, 16).save(tmp_path / "x.png")
    with pytest.raises(SystemExit) as exc:
        dpc("compress", tmp_path / "x.png", *option)
    assert exc.value.code == 2
    assert "Traceback" not in capsys.readouterr().err
    assert tree(tmp_path) == {"x.png"}


# -- faults -----------------------------------------------------------------------------------
def _small_file_size_limit():
    """preexec_fn: writes beyond 200 bytes fail with EFBIG, as on a full disk (instead of killing by SIGXFSZ)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))


def test_a_full_disk_gives_one_line_per_file_and_leaves_nothing(tmp_path):
    pics = tmp_path / "pics"
    pics.mkdir()
    make_textured(96, 64).save(pics / "a.png")  # each .dpc is well over 200 bytes at -q 6
    make_textured(64, 96).save(pics / "b.png")
    (tmp_path / "out").mkdir()
    runs = [["compress", "pics/a.png", "-o", "out/a.dpc", "-q", "6"], ["compress", "pics", "-o", "out", "-q", "6"]]
    driver = (  # both runs in one process (one torch import), exit codes on stdout, stderr split by "--"
        "import json, sys\nfrom dpc.cli import main\n"
        "for argv in json.loads(sys.argv[1]):\n"
        "    print(main(argv), flush=True)\n"
        "    print('--', file=sys.stderr, flush=True)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DPC_DEBUG"}
    proc = subprocess.run(
        [sys.executable, "-c", driver, json.dumps(runs)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_small_file_size_limit,
    )
    assert proc.returncode == 0, proc.stderr
    codes = [int(c) for c in proc.stdout.split()]
    single_err, folder_err, _ = proc.stderr.split("--\n")

    assert codes == [OutputWriteError.exit_code, OutputWriteError.exit_code]
    assert single_err.startswith("dpc: error: cannot write out/a.dpc: ") and single_err.count("\n") == 1, single_err
    lines = _lines(folder_err)
    assert [line.split(": cannot write ")[0] for line in lines[:2]] == ["dpc: error: a.png", "dpc: error: b.png"]
    assert lines[2:] == [SUMMARY.format(verb="compress", ok=0, skipped=0, failed=2)]
    assert "Traceback" not in proc.stderr
    assert tree(tmp_path / "out") == set()  # no output, no .part file


@pytest.mark.parametrize("folder_mode", [False, True], ids=["file", "folder"])
def test_a_read_only_output_folder_gives_one_line_errors_and_leaves_nothing(dpc, tmp_path, monkeypatch, folder_mode):
    """Root ignores file modes, so the file system's refusal is simulated where write_atomic creates its temp file."""
    pics = _images(tmp_path / "pics", 2)
    (tmp_path / "out").mkdir()

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    if folder_mode:
        r = dpc("compress", pics, "-o", tmp_path / "out")
        lines = _lines(r.err)
        assert [line.split(": cannot write ")[1] for line in lines[:2]] == [
            f"{tmp_path / 'out' / 'img00.dpc'}: Read-only file system",
            f"{tmp_path / 'out' / 'img01.dpc'}: Read-only file system",
        ]
        assert lines[2:] == [SUMMARY.format(verb="compress", ok=0, skipped=0, failed=2)]
    else:
        r = dpc("compress", pics / "img00.png", "-o", tmp_path / "out" / "x.dpc")
        assert r.err == f"dpc: error: cannot write {tmp_path / 'out' / 'x.dpc'}: Read-only file system\n"
    assert r.code == OutputWriteError.exit_code
    assert tree(tmp_path / "out") == set()


def _can_bind_mount_read_only(folder) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder} && ! touch {folder}/probe"
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", probe], capture_output=True)
    return done.returncode == 0 and not (folder / "probe").exists()


def test_a_really_read_only_output_folder_under_jobs_2(tmp_path):
    """The same with a real read-only bind mount, seen only by the dpc process (a private mount namespace)."""
    pics = _images(tmp_path / "pics", 2)
    out = tmp_path / "out"
    out.mkdir()
    if not _can_bind_mount_read_only(out):
        pytest.skip("needs `unshare --mount` and bind mounts (root with CAP_SYS_ADMIN)")
    script = (
        f'mount --bind "{out}" "{out}" && mount -o remount,bind,ro "{out}" && '
        f'exec "{sys.executable}" -m dpc.cli compress "{pics}" -o "{out}" --jobs 2'
    )
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == OutputWriteError.exit_code, proc.stderr
    lines = _lines(proc.stderr)
    assert [line.endswith(": Read-only file system") for line in lines[:2]] == [True, True], lines
    assert lines[2:] == [SUMMARY.format(verb="compress", ok=0, skipped=0, failed=2)]
    assert "Traceback" not in proc.stderr
    assert tree(out) == set()


def test_jobs_are_capped_by_cores_with_a_line_saying_so(dpc, tmp_path, monkeypatch):
    """Each worker loads the models (about 550 MB): -j beyond the cores or the memory only thrashes (issue #30)."""
    import dpc.pool as pool_module

    pics = tmp_path / "pics"
    pics.mkdir()
    for i in range(2):
        make_smooth(32, 32).save(pics / f"{i}.png")
    monkeypatch.setattr(pool_module, "_cpu_count", lambda: 1)
    r = dpc("compress", pics, "-o", tmp_path / "out", "-j", "2")
    assert r.code == 0
    assert "dpc: -j 2 capped to 1 (1 core, " in r.err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.dpc", "1.dpc"]


def test_jobs_are_capped_by_the_memory_available(monkeypatch):
    import dpc.pool as pool_module

    monkeypatch.setattr(pool_module, "_cpu_count", lambda: 16)
    monkeypatch.setattr(pool_module, "_available_memory", lambda: 3 * pool_module.WORKER_MEMORY + 1)
    assert pool_module.worker_limit(8)[0] == 3
    assert "8 capped to 3 (16 cores, " in pool_module.worker_limit(8)[1]
    assert pool_module.worker_limit(2) == (2, None)


def test_the_worker_server_starts_from_a_thread_too():
    """Signal handlers can only be set in the main thread: a folder run started from another
    thread (the CLI in-process) starts its worker server without touching them."""
    from dpc.signals import children_ignore_sigint

    errors = []

    def start():
        try:
            with children_ignore_sigint():
                pass
        except Exception as exc:  # ValueError: signal only works in main thread
            errors.append(exc)

    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    assert errors == []
