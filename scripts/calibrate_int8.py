"""Calibrate INT8 decoding: activation scales of the decoding models from training photos.

    python -m scripts.calibrate_int8 ../shared/data/train --images 24 --crop 256

Random crops of the photos are compressed at every quality and decoded (refined as each
file records, and with the plain decoder) through observing copies of the diffusion
prior and both pixel decoders; the calibrated (scale, zero point) of every quantized
layer's input and output go into a small safetensors table tied to the weights' SHA-256
(codec/quantization.py). `Codec.load(int8=True)` / `dpc decompress --int8` use it.
"""

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch
from PIL import Image, ImageOps
from tqdm import tqdm

from codec import Codec
from codec.quantization import DEFAULT_INT8_TABLE, activation_table, observing, save_table
from eval.bench import cpu_name
from scripts.common import find_images


def calibrate(codec, images, qualities=None, progress=None) -> dict[str, torch.Tensor]:
    """Decode `images` at every quality (as the files record, refined, and fidelity) with
    observing copies of the decoding models; return their activation table.

    `codec`: a fp32 Codec (its weights are the ones the table will be tied to).
    """
    observed = {
        "prior": observing("prior", codec.refiner.prior),
        "perceptual": observing("perceptual", codec.pixels.perceptual),
        "plain": observing("plain", codec.autoencoder.decoder),
    }
    with codec.runners.replaced(observed):
        for image in images:
            for quality in qualities or codec.qualities:
                data = codec.compress(image, quality)
                codec.decompress(data)  # as the file records
                if not codec.read_header(data).refine.steps:
                    codec.decompress(data, steps=8)  # the prior, for decodes that ask for refinement
                codec.decompress(data, fidelity=True)
            if progress is not None:
                progress()
    table = {}
    for name, module in observed.items():
        table.update(activation_table(name, module))
    return table


def crops(root: Path, count: int, size: int, seed: int) -> list[Image.Image]:
    """`count` random size x size crops of distinct photos under `root` (short side scaled to 2 x size)."""
    paths = find_images(root)
    if not paths:
        raise SystemExit(f"no photos under {root}")
    rng = random.Random(seed)
    out = []
    for path in rng.sample(paths, min(count, len(paths))):
        im = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        scale = 2 * size / min(im.size)
        if scale < 1:
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
        if min(im.size) < size:
            continue
        x, y = rng.randrange(im.width - size + 1), rng.randrange(im.height - size + 1)
        out.append(im.crop((x, y, x + size, y + size)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photos", type=Path, help="folder of training photos (searched recursively)")
    ap.add_argument("--images", type=int, default=24, help="number of photos (one crop each)")
    ap.add_argument("--crop", type=int, default=256, help="crop side in px")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--weights", type=Path, help="codec weights (default: the shipped ones)")
    ap.add_argument("--prior-weights", type=Path, help="prior weights (default: the shipped ones)")
    ap.add_argument("--out", type=Path, default=DEFAULT_INT8_TABLE)
    args = ap.parse_args()

    images = crops(args.photos, args.images, args.crop, args.seed)
    codec = Codec.load(args.weights, prior_weights=args.prior_weights)
    t0 = time.perf_counter()
    with tqdm(total=len(images), desc="calibrating", unit="photo") as bar:
        table = calibrate(codec, images, progress=bar.update)
    seconds = time.perf_counter() - t0
    info = {
        "photos": str(args.photos),
        "images": len(images),
        "crop": args.crop,
        "seed": args.seed,
        "qualities": list(codec.qualities),
        "seconds": round(seconds, 1),
        "device": cpu_name(),
        "command": "python " + " ".join(sys.argv),
    }
    digest = save_table(args.out, table, codec.weights_sha256(), info)
    print(f"{len(table) // 2} layers from {len(images)} crops in {seconds:.0f} s -> {args.out} (sha256 {digest[:16]})")
    print(json.dumps(info))


if __name__ == "__main__":
    main()
