"""Pack the training photos into one small file that can travel to a GPU machine.

Each photo is downscaled so its short side is at most --short (downscaling
also removes most JPEG noise, as is usual for learned-compression training)
and re-encoded as JPEG; the pack is one .npz with the bytes and offsets.

    python -m scripts.pack_data ../shared/data/train .data/trainpack.npz
"""

import argparse
import io
from pathlib import Path

import numpy as np

from scripts.common import find_images, load_downscaled


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="folder of training photos (searched recursively)")
    ap.add_argument("output", type=Path, help="output .npz")
    ap.add_argument("--short", type=int, default=288, help="max short side after downscaling (px)")
    ap.add_argument("--jpeg-quality", type=int, default=93)
    args = ap.parse_args()

    blobs = []
    for path in find_images(args.source):
        im = load_downscaled(path, args.short)
        if min(im.size) < 128:
            continue
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=args.jpeg_quality)
        blobs.append(buf.getvalue())
    offsets = np.cumsum([0] + [len(b) for b in blobs])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.output, blob=np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets=offsets)
    print(f"{len(blobs)} images, {offsets[-1] / 1e6:.1f} MB -> {args.output}")


if __name__ == "__main__":
    main()
