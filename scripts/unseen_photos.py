"""Write scikit-image's bundled colour photos as PNG files: photos that neither our training set
(BSDS500 and the rest of ../shared/data/train) nor Kodak contains, to check on what a choice was
made on the validation split (`python -m scripts.codec_validation --folder DIR`).

    python -m scripts.unseen_photos .data/unseen
"""

import argparse
from pathlib import Path

from PIL import Image
from skimage import data

PHOTOS = {  # name -> the scikit-image loader (RGB, 8-bit)
    "astronaut": data.astronaut,
    "chelsea": data.chelsea,
    "coffee": data.coffee,
    "rocket": data.rocket,
    "motorcycle": lambda: data.stereo_motorcycle()[0],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, load in PHOTOS.items():
        image = Image.fromarray(load())
        image.save(args.out / f"{name}.png")
        print(f"{args.out / name}.png: {image.width} x {image.height}")


if __name__ == "__main__":
    main()
