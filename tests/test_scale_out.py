"""Folder runs on a real local Ray cluster (dpc/scale_out.py): the same guarantees as local folder mode,
and a worker killed for real mid-job loses nothing."""

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import psnr
from PIL import Image

from codec.errors import InvalidOptionError

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    """One local cluster for the module (2 CPUs, as on CI); the CLI joins it instead of starting its own."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """A dozen small images and one file that only claims to be a PNG."""
    src = tmp_path_factory.mktemp("pictures")
    for i in range(12):
        _photo(64 + 8 * (i % 3), 48, seed=i).save(src / f"im{i:02d}.png")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"cut short")
    return src


def _photo(width: int, height: int, seed: int) -> Image.Image:
    """A crop of scikit-image's astronaut at a seeded offset: real texture, different per file."""
    from skimage import data

    a = data.astronaut()
    rng = np.random.default_rng(seed)
    top, left = (int(rng.integers(0, n - m)) for n, m in ((a.shape[0], height), (a.shape[1], width)))
    return Image.fromarray(a[top : top + height, left : left + width])


def _pngs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.png"))


def test_compress_decompress_a_folder_on_the_cluster_as_locally(cluster, dpc, pictures, tmp_path):
    out, dec, local = tmp_path / "out", tmp_path / "dec", tmp_path / "local"
    r = dpc("compress", pictures, "-o", out, "--ray", "-q", "1")
    assert r.code == 3  # the corrupt file's exit code (ImageReadError), as local folder mode
    assert sorted(p.name for p in out.iterdir()) == [f"im{i:02d}.dpc" for i in range(12)]
    assert "broken.png" in r.err and "12 ok, 0 skipped, 1 failed" in r.err
    assert dpc("compress", pictures, "-o", tmp_path / "here", "-q", "1").code == 3
    for f in out.iterdir():  # workers run 1 torch thread, this process 2: the bytes do not depend on it
        assert f.read_bytes() == (tmp_path / "here" / f.name).read_bytes()

    assert dpc("decompress", out, "-o", dec, "--ray").code == 0
    assert dpc("decompress", out, "-o", local).code == 0
    assert _pngs(dec) == _pngs(local) and len(_pngs(dec)) == 12
    for name in _pngs(dec):
        original = Image.open(pictures / name)
        a, b = Image.open(dec / name), Image.open(local / name)
        assert abs(psnr(original, a) - psnr(original, b)) <= 0.05, name
    rerun = dpc("decompress", out, "-o", dec, "--ray")
    assert rerun.code == 0 and "0 ok, 12 skipped, 0 failed" in rerun.err


def _worker_pids() -> list[int]:
    """Processes of live CodecWorker actors (Ray titles them ray::CodecWorker...)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"ray::CodecWorker" in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


@pytest.mark.skipif(not Path("/proc").exists(), reason="finds the worker's process in /proc")
def test_a_worker_killed_mid_job_has_its_files_retried_and_nothing_is_lost(cluster, dpc, tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for i in range(16):
        _photo(256, 192, seed=100 + i).save(src / f"p{i:02d}.png")
    result = {}
    job = threading.Thread(target=lambda: result.update(r=dpc("compress", src, "-o", out, "--ray", "-q", "1")))
    job.start()
    deadline = time.monotonic() + 120
    while not (out.exists() and any(out.glob("*.dpc"))) and time.monotonic() < deadline:
        time.sleep(0.05)
    victims = _worker_pids()
    written_before = len(list(out.glob("*.dpc")))
    assert victims and written_before < 16, (victims, written_before)
    os.kill(victims[0], signal.SIGKILL)
    job.join(300)
    assert not job.is_alive()
    assert result["r"].code == 0, result["r"].err
    assert "16 ok, 0 skipped, 0 failed" in result["r"].err
    assert sorted(p.name for p in out.iterdir()) == [f"p{i:02d}.dpc" for i in range(16)]  # no temp file left
    assert not Path(f"/proc/{victims[0]}").exists()  # it really died; Ray started another
    from codec import Codec

    codec = Codec.load()
    for f in out.iterdir():  # every file whole and decodable
        assert np.asarray(codec.decompress(f.read_bytes())).shape == (192, 256, 3)


def test_a_bad_quality_found_by_the_workers_leaves_no_output_folder(cluster, dpc, pictures, tmp_path):
    """The driver loads no weights, so the workers find -q 9 out of range; the folder this run made goes again."""
    r = dpc("compress", pictures, "-o", tmp_path / "packed", "--ray", "-q", "9")
    assert r.code == InvalidOptionError.exit_code and "quality must be between" in r.err, r.err
    assert not (tmp_path / "packed").exists()
    (tmp_path / "mine").mkdir()  # a folder that was there before the run stays
    assert dpc("compress", pictures, "-o", tmp_path / "mine", "--ray", "-q", "9").code == InvalidOptionError.exit_code
    assert (tmp_path / "mine").is_dir()


def test_an_unreachable_cluster_fails_in_one_line(dpc, pictures, tmp_path):
    r = dpc("compress", pictures, "-o", tmp_path / "o", "--ray", "127.0.0.1:9")
    assert r.code == 14 and r.err.count("\n") == 1 and "cannot reach the Ray cluster" in r.err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_gpus_per_worker_need_a_cuda_device(dpc, pictures, tmp_path):
    r = dpc("compress", pictures, "-o", tmp_path / "o", "--ray", "--ray-gpus", "0.5")
    assert r.code == 2 and "--device cuda" in r.err


def test_the_python_function_does_the_same_job(cluster, pictures, tmp_path, capsys):
    from dpc.scale_out import run_folder

    assert run_folder("compress", pictures, tmp_path / "out", quality=1, workers=2) == 3
    assert len(list((tmp_path / "out").glob("*.dpc"))) == 12
    assert run_folder("decompress", tmp_path / "out", tmp_path / "dec") == 0
    assert len(_pngs(tmp_path / "dec")) == 12
    assert "12 ok, 0 skipped, 0 failed" in capsys.readouterr().err
