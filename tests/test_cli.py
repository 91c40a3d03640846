"""The `dpc` command line end to end (dpc/cli.py): compress -> decompress -> info, default
output names, --force, folder mode, and atomic writes."""

import errno
import os
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import make_smooth, make_textured, psnr, tree
from PIL import Image

from codec import (
    ImageReadError,
    InvalidOptionError,
    NoInputsError,
    OutputWriteError,
)
from dpc.errors import OutputExistsError


@pytest.fixture
def photo(tmp_path):
    """A small JPEG photo in its own folder."""
    path = tmp_path / "photo.jpg"
    make_textured(80, 56).save(path, quality=92)
    return path


def test_compress_decompress_info_end_to_end_with_default_outputs_beside_the_input(dpc, photo):
    folder = photo.parent
    r = dpc("compress", photo, "--quality", "5")
    assert r.code == 0, r.err
    assert tree(folder) == {"photo.jpg", "photo.dpc"}

    r = dpc("decompress", folder / "photo.dpc")
    assert r.code == 0, r.err
    assert tree(folder) == {"photo.jpg", "photo.dpc", "photo.png"}
    decoded = Image.open(folder / "photo.png")
    assert decoded.format == "PNG" and decoded.mode == "RGB" and decoded.size == (80, 56)
    assert psnr(decoded, Image.open(photo)) > 16  # the perceptual decoder: the content, not every pixel
    assert dpc("decompress", folder / "photo.dpc", "-o", folder / "f.png", "--fidelity").code == 0
    assert psnr(Image.open(folder / "f.png"), Image.open(photo)) > 20
    (folder / "f.png").unlink()

    r = dpc("info", folder / "photo.dpc")
    assert r.code == 0, r.err
    assert re.search(r"^quality:\s+5$", r.out, re.M), r.out
    assert re.search(r"^size:\s+80x56$", r.out, re.M), r.out
    nbytes = (folder / "photo.dpc").stat().st_size
    bpp = re.search(r"^bpp:\s+([0-9.]+)$", r.out, re.M).group(1)
    assert bpp == f"{nbytes * 8 / (80 * 56):.4f}"
    assert re.search(rf"^bytes:\s+{nbytes}\b", r.out, re.M), r.out


def test_the_cli_writes_the_same_bytes_as_the_api(dpc, codec, photo):
    from codec import load_image

    assert dpc("compress", photo, "-q", "2").code == 0
    assert photo.with_suffix(".dpc").read_bytes() == codec.compress(load_image(photo), 2)


def test_default_quality_is_3(dpc, photo):
    assert dpc("compress", photo).code == 0
    assert re.search(r"^quality:\s+3$", dpc("info", photo.with_suffix(".dpc")).out, re.M)


def test_an_explicit_output_path_is_used(dpc, photo, tmp_path):
    out = tmp_path / "elsewhere" / "named.dpc"
    out.parent.mkdir()
    assert dpc("compress", photo, "-o", out).code == 0
    assert out.is_file() and not photo.with_suffix(".dpc").exists()
    assert dpc("decompress", out, "-o", tmp_path / "back.png").code == 0
    assert Image.open(tmp_path / "back.png").size == (80, 56)


def test_an_existing_output_is_not_overwritten_without_force(dpc, photo):
    target = photo.with_suffix(".dpc")
    target.write_bytes(b"precious")
    r = dpc("compress", photo)
    assert r.code == OutputExistsError.exit_code == 9
    assert r.err.startswith("dpc: error: ") and "--force" in r.err and r.err.count("\n") == 1
    assert target.read_bytes() == b"precious"
    assert tree(photo.parent) == {"photo.jpg", "photo.dpc"}  # no stray temp file either


def test_force_overwrites_an_existing_output(dpc, photo):
    target = photo.with_suffix(".dpc")
    target.write_bytes(b"old")
    r = dpc("compress", photo, "--force", "-q", "1")
    assert r.code == 0, r.err
    assert target.read_bytes()[:2] == b"DP"
    low = target.read_bytes()
    assert dpc("compress", photo, "-f", "-q", "6").code == 0
    assert len(target.read_bytes()) > len(low)
    assert tree(photo.parent) == {"photo.jpg", "photo.dpc"}


def test_decompress_refuses_to_overwrite_without_force_and_overwrites_with_it(dpc, photo):
    assert dpc("compress", photo).code == 0
    png = photo.with_suffix(".png")
    png.write_bytes(b"keep me")
    r = dpc("decompress", photo.with_suffix(".dpc"))
    assert r.code == OutputExistsError.exit_code
    assert png.read_bytes() == b"keep me"
    assert dpc("decompress", photo.with_suffix(".dpc"), "--force").code == 0
    assert Image.open(png).size == (80, 56)


def test_an_output_path_that_is_a_folder_is_refused_even_with_force(dpc, photo, tmp_path):
    target = tmp_path / "a_folder"
    target.mkdir()
    for extra in ([], ["--force"]):
        r = dpc("compress", photo, "-o", target, *extra)
        assert r.code == OutputExistsError.exit_code, r.err
        assert tree(target) == set()


def _three_images(folder):
    folder.mkdir()
    sizes = {"a": (40, 24), "b": (17, 31), "c": (64, 64)}
    make_smooth(*sizes["a"]).save(folder / "a.png")
    make_textured(*sizes["b"]).save(folder / "b.jpg", quality=90)
    make_smooth(*sizes["c"], seed=3).convert("L").save(folder / "c.webp", lossless=True)
    (folder / "notes.txt").write_text("not an image, and not an image suffix: ignored")
    return sizes


def test_folder_mode_compresses_and_decompresses_every_image_keeping_stems(dpc, tmp_path):
    sizes = _three_images(tmp_path / "pics")

    r = dpc("compress", tmp_path / "pics", "-o", tmp_path / "packed")
    assert r.code == 0, r.err
    assert tree(tmp_path / "packed") == {"a.dpc", "b.dpc", "c.dpc"}
    assert "3 ok, 0 skipped, 0 failed" in r.err

    r = dpc("decompress", tmp_path / "packed", "-o", tmp_path / "unpacked")
    assert r.code == 0, r.err
    assert tree(tmp_path / "unpacked") == {"a.png", "b.png", "c.png"}
    for stem, size in sizes.items():
        im = Image.open(tmp_path / "unpacked" / f"{stem}.png")
        assert im.size == size and im.mode == "RGB"


def test_folder_mode_without_o_writes_beside_the_inputs(dpc, tmp_path):
    _three_images(tmp_path / "pics")
    assert dpc("compress", tmp_path / "pics", "-q", "1").code == 0
    assert {"a.dpc", "b.dpc", "c.dpc"} <= tree(tmp_path / "pics")


def test_folder_mode_writes_the_good_files_and_reports_the_bad_one(dpc, tmp_path):
    _three_images(tmp_path / "pics")
    (tmp_path / "pics" / "broken.png").write_text("I am not a PNG")

    r = dpc("compress", tmp_path / "pics", "-o", tmp_path / "packed")

    assert r.code == ImageReadError.exit_code
    assert tree(tmp_path / "packed") == {"a.dpc", "b.dpc", "c.dpc"}
    assert "broken.png" in r.err
    assert r.err.strip().splitlines()[-1] == "dpc: compress: 3 ok, 0 skipped, 1 failed"
    assert "Traceback" not in r.err


def test_folder_mode_with_nothing_to_do_is_an_error(dpc, tmp_path):
    (tmp_path / "empty").mkdir()
    r = dpc("decompress", tmp_path / "empty", "-o", tmp_path / "out")
    assert r.code == NoInputsError.exit_code and r.err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_folder_mode_refuses_an_output_that_is_a_file(dpc, tmp_path):
    _three_images(tmp_path / "pics")
    (tmp_path / "out.dpc").write_bytes(b"x")
    r = dpc("compress", tmp_path / "pics", "-o", tmp_path / "out.dpc")
    assert r.code == InvalidOptionError.exit_code
    assert (tmp_path / "out.dpc").read_bytes() == b"x"


@pytest.mark.parametrize(
    "failure, exit_code",
    [(OSError(errno.ENOSPC, "No space left on device"), OutputWriteError.exit_code), (KeyboardInterrupt(), 130)],
    ids=["disk full", "ctrl-c"],
)
def test_a_write_that_fails_midway_leaves_no_file_and_no_temp_file(dpc, photo, monkeypatch, failure, exit_code):
    """Outputs are written to a hidden temp file and renamed: a failure leaves nothing behind."""

    def fail(fd):
        raise failure

    monkeypatch.setattr(os, "fsync", fail)
    r = dpc("compress", photo)
    assert r.code == exit_code
    assert r.err.count("\n") == 1 and r.err.startswith("dpc: ")
    assert tree(photo.parent) == {"photo.jpg"}


def test_decompressed_png_pixels_match_the_api(dpc, codec, photo):
    assert dpc("compress", photo).code == 0
    data = photo.with_suffix(".dpc").read_bytes()
    assert dpc("decompress", photo.with_suffix(".dpc")).code == 0
    assert np.array_equal(np.asarray(Image.open(photo.with_suffix(".png"))), np.asarray(codec.decompress(data)))


def test_an_unusable_weights_option_is_a_model_file_error(dpc, photo, tmp_path):
    from codec import ModelFileError

    r = dpc("compress", photo, "--weights", tmp_path / "missing.safetensors")
    assert r.code == ModelFileError.exit_code == 10
    assert r.err.startswith("dpc: error: ") and r.err.count("\n") == 1
    assert tree(photo.parent) == {"photo.jpg"}


def test_folder_inputs_sharing_a_stem_never_silently_replace_each_others_output(dpc, tmp_path):
    """a.jpg and a.png both map to OUT/a.dpc. Whatever the policy (refuse, or rename), a run must
    not report both as compressed while only one output survives, not even with --force."""
    (tmp_path / "pics").mkdir()
    make_smooth(32, 32, seed=1).save(tmp_path / "pics" / "a.jpg")
    make_smooth(32, 32, seed=2).save(tmp_path / "pics" / "a.png")

    r = dpc("compress", tmp_path / "pics", "-o", tmp_path / "packed", "--force")

    outputs = tree(tmp_path / "packed")
    assert r.code != 0 or len(outputs) == 2, (r.code, outputs, r.err.strip().splitlines()[-1])


def test_refinement_options_are_recorded_by_compress_overridden_by_decompress_and_shown_by_info(dpc, photo):
    folder = photo.parent
    r = dpc("compress", photo, "-q", "1", "--steps", "3", "--sampler", "unipc", "--guidance", "2", "--seed", "9")
    assert r.code == 0, r.err
    r = dpc("info", folder / "photo.dpc")
    assert re.search(r"^format version:\s+5$", r.out, re.M), r.out
    assert re.search(r"^canvas:\s+128x128, the image at \(24, 32\)$", r.out, re.M), r.out  # 80x56 centred
    assert re.search(r"^refinement:\s+3 steps, unipc, guidance 2, seed 9$", r.out, re.M), r.out

    r = dpc("decompress", folder / "photo.dpc", "-o", folder / "a.png")
    assert r.code == 0, r.err
    r = dpc(
        "decompress",
        folder / "photo.dpc",
        "-o",
        folder / "b.png",
        "--steps",
        "3",
        "--sampler",
        "unipc",
        "--guidance",
        "2",
        "--seed",
        "9",
        "--tile",
        "0",
    )
    assert r.code == 0, r.err
    a, b = np.asarray(Image.open(folder / "a.png")), np.asarray(Image.open(folder / "b.png"))
    assert np.array_equal(a, b)  # no options = exactly what the header records
    r = dpc("decompress", folder / "photo.dpc", "-o", folder / "c.png", "--steps", "0")
    assert r.code == 0, r.err
    assert not np.array_equal(a, np.asarray(Image.open(folder / "c.png")))


def test_compress_with_steps_0_records_no_refinement(dpc, photo):
    assert dpc("compress", photo, "--steps", "0").code == 0
    r = dpc("info", photo.with_suffix(".dpc"))
    assert re.search(r"^refinement:\s+none \(the decoder draws the coarse latent\)$", r.out, re.M), r.out


def test_an_unknown_sampler_is_a_usage_error(dpc, photo, capsys):
    with pytest.raises(SystemExit) as exc:
        dpc("decompress", photo, "--sampler", "euler")
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_a_single_file_on_a_terminal_shows_its_stages_and_quiet_turns_them_off(dpc, photo, monkeypatch):
    import sys

    assert dpc("compress", photo, "-q", "1").code == 0
    src = photo.with_suffix(".dpc")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # pytest's capture stands in for a terminal
    shown = dpc("decompress", src, "--tile", "128", "--steps", "2", "--force")
    assert shown.code == 0
    # one line rewritten in place (\r), through every stage, the tiles counted, and cleared at the end
    assert "\r" in shown.err and "\n" not in shown.err
    for stage in ("entropy", "refine 2/2 steps", "pixels"):
        assert f"decompress {src.name}: {stage}" in shown.err, shown.err
    assert re.search(r"pixels \d+/\d+ tiles", shown.err)
    assert shown.err.endswith("\r")
    quiet = dpc("decompress", src, "--quiet", "--force")
    assert quiet.code == 0 and quiet.err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert dpc("decompress", src, "--force").err == ""  # a log file or a pipe gets no progress


_TORCH_IMPORT_SPY = """
import os, sys

class Spy:  # records the OpenMP wait policy at the moment torch is first imported, then stops the run
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            print("POLICY", os.environ.get("OMP_WAIT_POLICY"), flush=True)
            os._exit(0)

sys.meta_path.insert(0, Spy())
sys.argv = ["dpc", "compress", "photo.png"]  # a sound image: the models load
from dpc.entry import main
main()
print("POLICY never imported torch", flush=True)
"""


@pytest.mark.parametrize("user, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")], ids=["unset", "user-set"])
def test_the_cli_sets_a_passive_openmp_wait_policy_before_torch_loads_unless_the_user_chose_one(
    tmp_path, user, expected
):
    """Spinning OpenMP threads make every run 3-10x slower on a busy CPU (issue #30); OpenMP reads
    the policy once, when torch loads it, so it must be in the environment before that import."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if user is not None:
        env["OMP_WAIT_POLICY"] = user
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    make_smooth(16, 16).save(tmp_path / "photo.png")
    done = subprocess.run(
        [sys.executable, "-c", _TORCH_IMPORT_SPY], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert f"POLICY {expected}\n" in done.stdout, (done.stdout, done.stderr)


def test_a_quality_off_the_1_32_grid_is_a_one_line_usage_error_and_writes_nothing(dpc, tmp_path):
    make_smooth(16, 16).save(tmp_path / "a.png")
    r = dpc("compress", tmp_path / "a.png", "-q", "3.01")
    assert r.code == InvalidOptionError.exit_code == 2
    assert r.err == "dpc: error: quality must be a multiple of 1/32, got 3.01 (the nearest are 3 and 3.03125)\n"
    assert tree(tmp_path) == {"a.png"}
    assert dpc("compress", tmp_path / "a.png", "-q", "-2.5").code == 0


@pytest.mark.parametrize(
    "option",
    [["--int8"], ["--dtype", "bf16"], ["--compile"], ["--channels-last"], ["--attention", "eager"]],
    ids=["int8", "dtype", "compile", "channels-last", "attention"],
)
def test_compress_refuses_a_decoder_only_option_as_a_usage_error(dpc, tmp_path, capsys, option):
    """They change only how a file decodes, never its bytes: accepting them would suggest they did."""
    make_smooth(16, 16).save(tmp_path / "a.png")
    with pytest.raises(SystemExit) as exc:
        dpc("compress", tmp_path / "a.png", *option)
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err == (
        f"dpc: error: dpc compress: {option[0]} applies to decoding only (dpc decompress); "
        "compress does not take it (see dpc compress --help)\n"
    )
    assert tree(tmp_path) == {"a.png"}


@pytest.mark.parametrize("verb", ["compress", "decompress"])
def test_an_output_ending_in_a_slash_for_one_file_is_refused_never_written_as_a_file(dpc, tmp_path, small_dpc, verb):
    """-o newdir/ names a folder: for one input file it used to write a file called newdir, exit 0."""
    make_smooth(16, 16).save(tmp_path / "a.png")
    (tmp_path / "a.dpc").write_bytes(small_dpc)
    src = tmp_path / ("a.png" if verb == "compress" else "a.dpc")
    r = dpc(verb, src, "-o", f"{tmp_path / 'newdir'}/")
    assert r.code == InvalidOptionError.exit_code == 2
    assert r.err.startswith(f"dpc: error: -o {tmp_path / 'newdir'}/ names a folder") and r.err.count("\n") == 1
    assert tree(tmp_path) == {"a.png", "a.dpc"}


def test_a_folder_input_with_an_output_ending_in_a_slash_creates_that_folder(dpc, tmp_path):
    (tmp_path / "pics").mkdir()
    make_smooth(16, 16).save(tmp_path / "pics" / "a.png")
    r = dpc("compress", tmp_path / "pics", "-o", f"{tmp_path / 'newdir'}/", "-q", "1")
    assert r.code == 0, r.err
    assert tree(tmp_path / "newdir") == {"a.dpc"}


@pytest.mark.parametrize("name", ["out.jpg", "out.webp", "out.dpc"])
def test_decompress_refuses_an_output_name_that_is_not_a_png(dpc, tmp_path, small_dpc, name):
    """Decoded images are PNGs: PNG bytes under a .jpg name would mislead every program that opens it."""
    (tmp_path / "a.dpc").write_bytes(small_dpc)
    r = dpc("decompress", tmp_path / "a.dpc", "-o", tmp_path / name)
    assert r.code == InvalidOptionError.exit_code == 2
    assert r.err == f"dpc: error: decompress writes PNG files only: -o must end in .png, got {tmp_path / name}\n"
    assert tree(tmp_path) == {"a.dpc"}
    assert dpc("decompress", tmp_path / "a.dpc", "-o", tmp_path / "out.PNG").code == 0


def test_quiet_also_silences_the_progress_bar_of_a_folder_run(dpc, tmp_path):
    (tmp_path / "pics").mkdir()
    make_smooth(16, 16).save(tmp_path / "pics" / "a.png")
    r = dpc("compress", tmp_path / "pics", "-o", tmp_path / "out", "-q", "1", "--quiet")
    assert r.code == 0
    assert r.err == "dpc: compress: 1 ok, 0 skipped, 0 failed\n"
    r = dpc("decompress", tmp_path / "out", "-o", tmp_path / "back", "--quiet")
    assert r.code == 0
    assert r.err == "dpc: decompress: 1 ok, 0 skipped, 0 failed\n"


def test_decompress_next_to_the_original_is_refused_with_advice_that_keeps_the_original(dpc, tmp_path):
    """compress photo.png, then decompress photo.dpc: photo.png is the original, and "use --force"
    would have replaced it with its lossy decode."""
    make_smooth(16, 16).save(tmp_path / "photo.png")
    original = (tmp_path / "photo.png").read_bytes()
    assert dpc("compress", tmp_path / "photo.png", "-q", "1").code == 0
    r = dpc("decompress", tmp_path / "photo.dpc")
    assert r.code == OutputExistsError.exit_code
    assert r.err == (
        f"dpc: error: {tmp_path / 'photo.png'} exists (it may be the original image: "
        "write the decoded one elsewhere with -o OTHER.png)\n"
    )
    assert "--force" not in r.err
    assert (tmp_path / "photo.png").read_bytes() == original
    assert tree(tmp_path) == {"photo.png", "photo.dpc"}


def _within(seconds: float, run, fifo):
    """run() in a thread; fails the test if it is still waiting for a FIFO's writer after `seconds`
    (then becomes that writer for an instant, so that the thread ends)."""
    import threading

    result = {}
    thread = threading.Thread(target=lambda: result.update(r=run()), daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(30)
        pytest.fail(f"still waiting for a writer on {fifo} after {seconds} s")
    return result["r"]


@pytest.mark.parametrize("verb", ["info", "decompress"])
def test_a_fifo_without_a_writer_is_refused_in_one_line_instead_of_waited_on_for_ever(dpc, tmp_path, verb):
    fifo = tmp_path / "x.dpc"
    os.mkfifo(fifo)
    r = _within(10, lambda: dpc(verb, fifo), fifo)
    assert r.code == 5  # not a .dpc file
    assert r.err == f"dpc: error: {fifo} is a FIFO with no writer (nothing to read): not a .dpc file\n"
    assert tree(tmp_path) == {"x.dpc"}


def test_a_fifo_with_a_writer_is_read_to_its_end(dpc, tmp_path, small_dpc):
    import threading

    fifo = tmp_path / "x.dpc"
    os.mkfifo(fifo)

    def write():
        with open(fifo, "wb") as f:  # waits for dpc to open its end, as a shell's `> x.dpc` does
            f.write(small_dpc[:10])
            f.flush()
            f.write(small_dpc[10:])

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    r = _within(10, lambda: dpc("info", fifo), fifo)
    writer.join(10)
    assert r.code == 0, r.err
    assert re.search(rf"^bytes:\s+{len(small_dpc)}\b", r.out, re.M), r.out


def test_info_into_a_closed_pipe_is_quiet_and_exits_0(tmp_path, small_dpc):
    """`dpc info x.dpc | head -1`: the reader has what it wanted; no "internal error", exit 0 (issue #30: 70)."""
    import subprocess
    import sys

    path = tmp_path / "x.dpc"
    path.write_bytes(small_dpc)
    read_end, write_end = os.pipe()
    os.close(read_end)  # closed before dpc writes: its first write meets a broken pipe
    try:
        done = subprocess.run(
            [sys.executable, "-m", "dpc.entry", "info", str(path)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (0, "")
