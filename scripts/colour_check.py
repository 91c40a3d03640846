"""Does a codec keep the colours? Block-mean errors and chroma spread of decodes of validation photos.

    python -m scripts.colour_check ../shared/data/train --weights FILE --qualities 1 3 5 [--images 4]

Per quality, means over the first --images validation photos (BSDS `val`, native size), in YCbCr
(BT.601, full range, values in [0, 1]):
- bpp (file bytes x 8 / pixels);
- lowpass Y / Cb / Cr: MSE of the 8 x 8 block means (shading and colour at the latent's scale);
- spread Cb / Cr: the decode's chroma standard deviation over the original's (1 = colours kept,
  under 1 = washed out);
- shift Cb / Cr: the decode's mean chroma minus the original's (a colour cast).
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from codec import Codec
from scripts.common import validation_photos

YCBCR = np.array([[0.299, 0.587, 0.114], [-0.1687, -0.3313, 0.5], [0.5, -0.4187, -0.0813]])


def ycbcr(image: Image.Image) -> np.ndarray:
    """(H, W, 3) YCbCr in [0, 1] (chroma centred on 0)."""
    return (np.asarray(image, np.float64) / 255) @ YCBCR.T


def block_means(x: np.ndarray, block: int = 8) -> np.ndarray:
    h, w = (side // block * block for side in x.shape[:2])
    return x[:h, :w].reshape(h // block, block, w // block, block, 3).mean((1, 3))


def measure(original: Image.Image, decoded: Image.Image) -> list[float]:
    a, b = ycbcr(original), ycbcr(decoded)
    lowpass = ((block_means(a) - block_means(b)) ** 2).mean((0, 1))
    spread = b[..., 1:].std((0, 1)) / a[..., 1:].std((0, 1))
    shift = b[..., 1:].mean((0, 1)) - a[..., 1:].mean((0, 1))
    return [*lowpass, *spread, *shift]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("train_dir", type=Path)
    ap.add_argument("--weights", default=None, help="a weight file (default: the shipped weights)")
    ap.add_argument("--qualities", type=float, nargs="+", default=[1, 3, 5])
    ap.add_argument("--images", type=int, default=4)
    args = ap.parse_args()
    codec = Codec.load(args.weights)
    photos = [Image.open(p).convert("RGB") for p in validation_photos(args.train_dir, args.images)]
    for q in args.qualities:
        rows = []
        for photo in photos:
            data = codec.compress(photo, quality=q)
            rows.append([len(data) * 8 / (photo.width * photo.height), *measure(photo, codec.decompress(data))])
        r = np.mean(rows, axis=0)
        print(
            f"q{q:g}: bpp {r[0]:.4f}  lowpass Y {r[1]:.5f} Cb {r[2]:.5f} Cr {r[3]:.5f}  "
            f"spread Cb {r[4]:.2f} Cr {r[5]:.2f}  shift Cb {r[6]:+.4f} Cr {r[7]:+.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
