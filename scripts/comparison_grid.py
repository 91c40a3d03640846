"""Side-by-side pictures: original | ours (default) | ours --fidelity | AVIF | JPEG, at the same bytes.

    python -m scripts.comparison_grid ../shared/data/kodak --qualities 1 3 --out docs/images
    python -m scripts.comparison_grid ../shared/data/kodak --qualities 1 3 --effort 9   # grid_q1_effort9.png, ...
    python -m scripts.comparison_grid ../shared/data/kodak --bpp 0.01 0.03 --weights W --versus default
        # grid_bpp0.01.png, ...: each image's file nearest the rate target; a column for another codec's
        # default decode at the same target (`default`: the shipped codec)

One PNG per quality (`grid_q1.png`, ...). Each row is a crop of a Kodak image: a face,
foliage, fine lines and text, a smooth sky. Whole images are coded (crops are cut from
the decoded images, so every codec sees the full picture); AVIF and JPEG files are the
largest whose size is at most our file's bytes (Pillow; eval/baselines.py). Where JPEG
cannot go that low, its panel says so. Labels give each file's bytes and bpp. With
--effort N our files are encoded at that effort (the baselines then match its bytes).
"""

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

from codec import Codec
from eval.baselines import encode_at_bpp

# (kodak image, what it shows, left, top) of SIDE x SIDE crops in full-resolution pixels
CROPS = [
    ("kodim04.png", "face", 160, 250),
    ("kodim13.png", "foliage", 40, 120),
    ("kodim08.png", "lines, text", 560, 190),
    ("kodim20.png", "smooth sky", 440, 10),
]
SIDE = 192
LABEL = 30  # px of caption under each panel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kodak", type=Path)
    ap.add_argument("--qualities", type=float, nargs="+", default=[1, 3])
    ap.add_argument("--out", type=Path, default=Path("docs/images"))
    ap.add_argument("--decoder-weights", type=Path, help="perceptual decoder (default: the shipped one)")
    ap.add_argument("--effort", type=int, default=0, help="our encoder effort 0..9 (default 0)")
    ap.add_argument("--bpp", type=float, nargs="+", help="rate targets (bpp) instead of --qualities")
    ap.add_argument("--weights", type=Path, help="codec weights (default: the shipped ones)")
    ap.add_argument("--versus", help="another codec's weights (or `default`) for one more column")
    args = ap.parse_args()
    codec = Codec.load(args.weights, decoder_weights=args.decoder_weights)
    versus = None if args.versus is None else Codec.load(None if args.versus == "default" else args.versus)
    args.out.mkdir(parents=True, exist_ok=True)
    settings = [("bpp", b) for b in args.bpp] if args.bpp else [("q", q) for q in args.qualities]
    for kind, q in settings:
        rows = []
        for name, what, left, top in CROPS:
            image = Image.open(args.kodak / name).convert("RGB")
            pixels = image.width * image.height
            if kind == "bpp":
                data = codec.compress_to_bpp(image, q, effort=args.effort)[0]
            else:
                data = codec.compress(image, q, effort=args.effort)
            panels = [(image, f"original ({what})")]
            ours = f"ours{f' effort {args.effort}' if args.effort else ''}"
            panels.append((codec.decompress(data), f"{ours}: {len(data)} B, {8 * len(data) / pixels:.3f} bpp"))
            panels.append((codec.decompress(data, fidelity=True), "ours --fidelity: same file"))
            if versus is not None:
                other = versus.compress_to_bpp(image, q)[0] if kind == "bpp" else versus.compress(image, q)
                label = f"{args.versus} weights" if args.versus != "default" else "today's default (dpc-v2)"
                panels.append((versus.decompress(other), f"{label}: {len(other)} B, {8 * len(other) / pixels:.3f} bpp"))
            for baseline in ("avif", "jpeg"):
                enc = encode_at_bpp(baseline, image, 8 * len(data) / pixels, at_most=True)
                if len(enc.data) > len(data):
                    panels.append((None, f"{baseline.upper()}: cannot go below {len(enc.data)} B"))
                else:
                    label = f"{baseline.upper()}: {len(enc.data)} B, {enc.bpp:.3f} bpp"
                    panels.append((enc.decoded, label))
            rows.append(
                [(None if im is None else im.crop((left, top, left + SIDE, top + SIDE)), t) for im, t in panels]
            )
        path = args.out / (f"grid_{kind}{q:g}" + (f"_effort{args.effort}" if args.effort else "") + ".png")
        render(rows, path)
        print(f"{kind} {q:g} -> {path}")


def render(rows, path: Path) -> None:
    cols = max(len(r) for r in rows)
    sheet = Image.new("RGB", (cols * (SIDE + 4), len(rows) * (SIDE + LABEL)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        for c, (crop, text) in enumerate(row):
            x, y = c * (SIDE + 4), r * (SIDE + LABEL)
            if crop is not None:
                sheet.paste(crop, (x, y))
            else:
                draw.rectangle((x, y, x + SIDE - 1, y + SIDE - 1), fill=(225, 225, 225))
            for k, part in enumerate(_wrap(text, 32)):
                draw.text((x + 2, y + SIDE + 2 + 12 * k), part, fill="black")
    sheet.save(path, optimize=True)


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line][:2]


if __name__ == "__main__":
    main()
