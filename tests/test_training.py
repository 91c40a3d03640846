"""`python -m scripts.train`: a tiny run on synthetic photos, stopped mid-way and resumed, gives loadable weights."""

import csv
import json
import subprocess
import sys
from pathlib import Path

from helpers import make_textured
from safetensors import safe_open

from codec import Codec

REPO = Path(__file__).resolve().parents[1]


def train(*args):
    return subprocess.run(
        [sys.executable, "-m", "scripts.train", *map(str, args)], capture_output=True, text=True, cwd=REPO
    )


def test_a_stopped_run_resumes_and_ends_with_loadable_weights(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        make_textured(256, 224).rotate(15 * i).save(photos / f"{i}.png")
    out = tmp_path / "w.safetensors"
    common = ["--data", photos, "--out", out, "--compressor-seconds", 2, "--crop", 192, "--batch", 2]

    # A long budget that the first process cannot finish: it stops after 15 steps, as a
    # lent GPU window would end; the resumed run is given a short one to finish.
    first = train(*common, "--ae-seconds", 600, "--stop-after-steps", 15)
    assert first.returncode != 0 and "continue with --resume" in first.stderr
    ckpt = out.with_suffix(".ckpt.safetensors")
    with safe_open(str(ckpt), "pt") as f:
        meta = json.loads(f.metadata()["meta"])
    assert (meta["stage"], meta["step"]) == ("autoencoder", 15) and not out.exists()

    second = train(*common, "--ae-seconds", 2, "--resume", "--msssim-weight", 0.5)
    assert second.returncode == 0, second.stderr[-2000:]
    rows = list(csv.DictReader(open(out.with_suffix(".log.csv"))))
    assert rows[0]["stage"] == "autoencoder" and json.loads(rows[0]["metrics"]) == {"resumed": 1}
    assert rows[0]["step"] == "15"  # continued from the checkpoint, not from step 0
    assert out.with_suffix(".log.png").stat().st_size > 0 and not ckpt.exists()
    codec = Codec.load(out)
    image = make_textured(96, 64)
    assert codec.decompress(codec.compress(image, quality=2), steps=0).size == image.size
