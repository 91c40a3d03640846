"""The README's Kodak table: per quality level, mean bpp (file bytes), PSNR and
MS-SSIM, beside JPEG (Pillow) at the same bpp per image.

    python -m scripts.kodak_table ../shared/data/kodak --json out/kodak_table.json [--fidelity]

Files are decoded as `dpc decompress` does (the perceptual decoder, refined as each file
records); --steps N refines with N steps instead; --fidelity decodes with the
autoencoder's MSE decoder and no refinement (what `--steps 0` meant before the
perceptual decoder: the codec's fidelity end).

JPEG is matched per image by interpolating between the two Pillow qualities
whose file sizes bracket our file size. Where JPEG cannot go that low (its
quality-1 file is larger), that image has no JPEG point, and the table says
on how many images the comparison stands; "ours" is then shown on the same
images too, so the two columns compare like with like.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from codec import Codec, load_image
from codec.image_tensors import image_to_tensor, tensor_to_image
from codec.options import PAD_MULTIPLE
from eval.jpeg import jpeg_at_bpp
from eval.metrics import bits_per_pixel, msssim, psnr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--weights", type=Path)
    ap.add_argument("--json", type=Path, help="write per-image results here")
    ap.add_argument("--steps", type=int, help="refinement steps to decode with (default: what each file records)")
    ap.add_argument("--fidelity", action="store_true", help="decode with the MSE decoder, no refinement")
    ap.add_argument(
        "--qualities", type=float, nargs="+", help="qualities to code at (default the trained 1..6; -3..8 allowed)"
    )
    args = ap.parse_args()

    codec = Codec.load(args.weights)
    files = sorted(p for p in args.dataset.iterdir() if p.suffix.lower() == ".png")
    rows, ceiling = [], []
    for path in tqdm(files, desc="kodak", unit="image"):
        image = load_image(path)
        ceiling.append(autoencoder_only(codec, image))
        for q in args.qualities or codec.qualities:
            q = int(q) if float(q).is_integer() else q
            data = codec.compress(image, q)
            decoded = (
                codec.decompress(data, fidelity=True) if args.fidelity else codec.decompress(data, steps=args.steps)
            )
            bpp = bits_per_pixel(len(data), image)
            jpeg = jpeg_at_bpp(image, bpp)
            rows.append(
                {
                    "image": path.name,
                    "quality": q,
                    "bytes": len(data),
                    "bpp": bpp,
                    "psnr": psnr(image, decoded),
                    "msssim": msssim(image, decoded),
                    "jpeg_psnr": jpeg.psnr if jpeg else None,
                    "jpeg_msssim": jpeg.msssim if jpeg else None,
                }
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model_id": f"{codec.model_id:04x}", "rows": rows}, indent=1))
    print(markdown_table(rows, len(files)))
    print(
        f"\nAutoencoder alone (latent not quantised), the ceiling of every level: "
        f"PSNR {np.mean([p for p, _ in ceiling]):.2f} dB, MS-SSIM {np.mean([m for _, m in ceiling]):.4f}."
    )


def autoencoder_only(codec: Codec, image) -> tuple[float, float]:
    """PSNR/MS-SSIM of D(E(x)) with no compression: what caps every quality level."""
    x = image_to_tensor(image)
    h, w = x.shape[-2:]
    x = F.pad(x, (0, -w % PAD_MULTIPLE, 0, -h % PAD_MULTIPLE), mode="replicate")
    with torch.inference_mode():
        decoded = tensor_to_image(codec.autoencoder.decode(codec.autoencoder.encode(x))[..., :h, :w])
    return psnr(image, decoded), msssim(image, decoded)


def markdown_table(rows: list[dict], n_images: int) -> str:
    lines = [
        "| quality | bpp | PSNR (dB) | MS-SSIM | JPEG reaches "
        "| ours on those: PSNR / MS-SSIM | JPEG same bpp: PSNR / MS-SSIM |",
        "|---|---|---|---|---|---|---|",
    ]
    for q in sorted({r["quality"] for r in rows}):
        level = [r for r in rows if r["quality"] == q]
        matched = [r for r in level if r["jpeg_psnr"] is not None]
        mean = lambda key, rs: float(np.mean([r[key] for r in rs]))  # noqa: E731
        if matched:
            ours = f"{mean('psnr', matched):.2f} / {mean('msssim', matched):.4f}"
            jpeg = f"{mean('jpeg_psnr', matched):.2f} / {mean('jpeg_msssim', matched):.4f}"
        else:
            ours = jpeg = "–"
        lines.append(
            f"| {q} | {mean('bpp', level):.4f} | {mean('psnr', level):.2f} | {mean('msssim', level):.4f} "
            f"| {len(matched)}/{n_images} | {ours} | {jpeg} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
