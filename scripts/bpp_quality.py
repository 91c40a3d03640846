"""Quality at a rate target: `Codec.compress_to_bpp` per image, then the default decode's metrics.

    python -m scripts.bpp_quality ../shared/data/kodak --images kodim03 kodim05 kodim07 kodim14 \\
        kodim15 kodim19 kodim21 kodim23 --targets 0.01 0.03 --weights FILE --json rd/bpp_quality.json

What the latent-codec issue's rate-target bars ask (`dpc compress --bpp T`, then `dpc decompress`):
per target the mean rate (file bytes x 8 / pixels, header included), its miss from the target,
and the mean PSNR, LPIPS-Alex and DISTS of the default decode.
"""

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from codec import Codec
from eval.metrics import bits_per_pixel, psnr
from eval.perceptual import DISTSMetric, LPIPSMetric
from scripts.common import folder_photos


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--images", nargs="*", help="file stems to use (default: all)")
    ap.add_argument("--targets", type=float, nargs="+", default=[0.01, 0.03])
    ap.add_argument("--weights", help="codec weights (default: the shipped)")
    ap.add_argument("--metric-weights", type=Path, default=Path("../shared/data/weights"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    codec = Codec.load(args.weights)
    lpips, dists = LPIPSMetric.load(args.metric_weights), DISTSMetric.load(args.metric_weights)
    paths = [p for p in folder_photos(args.dataset) if not args.images or p.stem in args.images]
    if args.images and len(paths) != len(args.images):
        raise SystemExit(f"found {len(paths)} of the {len(args.images)} images asked for in {args.dataset}")
    result = {"weights": args.weights or "shipped", "images": [p.stem for p in paths], "targets": {}}
    for target in args.targets:
        rows = []
        for path in paths:
            original = Image.open(path).convert("RGB")
            data, quality = codec.compress_to_bpp(original, target)
            decoded = codec.decompress(data)
            rows.append(
                dict(
                    image=path.stem,
                    quality=quality,
                    bpp=bits_per_pixel(len(data), original),
                    psnr=psnr(original, decoded),
                    lpips=lpips(original, decoded),
                    dists=dists(original, decoded),
                )
            )
        mean = {k: float(np.mean([r[k] for r in rows])) for k in ("bpp", "psnr", "lpips", "dists")}
        mean["miss"] = mean["bpp"] / target - 1
        result["targets"][str(target)] = {"mean": mean, "rows": rows}
        print(
            f"--bpp {target}: mean {mean['bpp']:.4f} bpp ({mean['miss']:+.1%}), PSNR {mean['psnr']:.2f}, "
            f"LPIPS {mean['lpips']:.4f}, DISTS {mean['dists']:.4f} on {len(rows)} images",
            flush=True,
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
