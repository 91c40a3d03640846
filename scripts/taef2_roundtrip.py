"""TAEF2 round trip of a folder of images (no coding): the ceiling of any codec on its latent.

    python -m scripts.taef2_roundtrip ../shared/data/kodak --json rd/taef2_roundtrip_kodak.json

Each image (edges replicated to a multiple of 8) -> TAEF2 encoder -> decoder -> clamp, 8-bit,
cropped; PSNR, MS-SSIM, LPIPS-Alex and DISTS against the original, and the means.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from codec.image_tensors import image_to_tensor, tensor_to_image
from codec.model_files import load_taef2
from codec.tiling import pad_to_multiple
from eval.metrics import msssim, psnr
from eval.perceptual import DISTSMetric, LPIPSMetric


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--metric-weights", type=Path, default=Path("../shared/data/weights"))
    args = ap.parse_args()
    taef2 = load_taef2().autoencoder
    lpips, dists = LPIPSMetric.load(args.metric_weights), DISTSMetric.load(args.metric_weights)
    rows = []
    for path in sorted(args.folder.glob("*.png")):
        original = Image.open(path).convert("RGB")
        x = pad_to_multiple(image_to_tensor(original), 8)
        with torch.inference_mode():
            y = taef2.decoder(taef2.encoder(x))[..., : original.height, : original.width]
        decoded = tensor_to_image(y)
        row = dict(image=path.name, psnr=psnr(original, decoded), msssim=msssim(original, decoded))
        row.update(lpips=lpips(original, decoded), dists=dists(original, decoded))
        rows.append(row)
        print(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else v for k, v in row.items()), flush=True)
    means = {k: float(np.mean([r[k] for r in rows])) for k in ("psnr", "msssim", "lpips", "dists")}
    print(f"mean of {len(rows)}: " + " ".join(f"{k} {v:.4f}" for k, v in means.items()))
    if args.json:
        args.json.write_text(json.dumps({"images": rows, "mean": means}, indent=1) + "\n")


if __name__ == "__main__":
    main()
