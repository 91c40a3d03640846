"""Cache TAEF2 latents of random training crops, once: the frozen encoder's output for the
latent compressor's training (`python -m scripts.train_latent_codec`).

    python -m scripts.cache_taef2_latents ../shared/data/train .data/taef2_cache.npz --crops 2

Every training photo (the BSDS500 `val` split is left out: it is for choosing) is scaled so that
its short side is a random size between --crop and 2 x --crop (never up), then --crops random
crops of --crop px (half of them mirrored) go through the TAEF2 encoder. The cache holds the
crops (N, crop, crop, 3) uint8 and their latents (N, 32, crop/8, crop/8) fp16, aligned.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from codec.model_files import load_taef2
from scripts.common import find_images, random_box, validation_names


def training_photos(train_dir: Path) -> list[Path]:
    held_out = validation_names(train_dir)
    return [p for p in find_images(train_dir) if p.name not in held_out]


def random_crops(photo: Image.Image, crop: int, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    short = min(photo.size)
    target = rng.uniform(crop, min(2 * crop, short)) if short > crop else short
    scale = target / short
    if scale < 1:
        photo = photo.resize(
            (max(crop, round(photo.width * scale)), max(crop, round(photo.height * scale))), Image.LANCZOS
        )
    arr = np.asarray(photo)
    out = []
    for i in range(count):
        top, left = random_box(rng, arr.shape[0], arr.shape[1], crop)
        c = arr[top : top + crop, left : left + crop]
        out.append(np.ascontiguousarray(c[:, ::-1] if i % 2 else c))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("train_dir", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--crop", type=int, default=256, help="crop side in px (a multiple of 64)")
    ap.add_argument("--crops", type=int, default=2, help="crops per photo")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    encoder = load_taef2().autoencoder.encoder
    photos = training_photos(args.train_dir)
    images, latents, t0 = [], [], time.time()
    for i, path in enumerate(photos):
        photo = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        if min(photo.size) < args.crop:
            continue
        crops = random_crops(photo, args.crop, args.crops, rng)
        x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255
        with torch.inference_mode():
            latents.append(encoder(x).half().numpy())
        images.append(np.stack(crops))
        if i % 50 == 0:
            print(f"{i}/{len(photos)} photos, {time.time() - t0:.0f} s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp.npz")
    np.savez(tmp, images=np.concatenate(images), latents=np.concatenate(latents))
    tmp.replace(args.out)
    print(f"{sum(len(x) for x in images)} crops from {len(images)} photos -> {args.out} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
