"""`dpc`: the command line.

    dpc compress IN [-o OUT] [--quality Q] [--force]
    dpc decompress IN.dpc [-o OUT.png] [--force]
    dpc info IN.dpc
    dpc eval DATASET --out RESULTS       (eval/cli.py)

IN may be a folder: then -o names an output folder (default: IN itself) and
files keep their stem (a.png -> OUT/a.dpc -> OUT2/a.png), with a progress bar.
Bad input ends in a one-line message on stderr and a non-zero exit code
(CodecError.exit_code; 2 for usage errors, 130 for Ctrl-C).
"""

import argparse
import io
import os
import sys
from pathlib import Path

from .errors import BitstreamError, CodecError, ImageReadError
from .files import write_atomic

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif"}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except CodecError as exc:
        print(f"dpc: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("dpc: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: still one line unless asked
        if os.environ.get("DPC_DEBUG"):
            raise
        print(f"dpc: internal error: {type(exc).__name__}: {exc} (set DPC_DEBUG=1 for a traceback)", file=sys.stderr)
        return 70


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="dpc", description="dpcodec: neural image compression to .dpc files")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("compress", help="image(s) -> .dpc")
    c.add_argument("input", type=Path, help="image file or folder of images")
    c.add_argument("-o", "--output", type=Path, help="output file (or folder when IN is a folder)")
    c.add_argument("-q", "--quality", type=int, default=None, help="quality level, 1 = lowest rate (default 3)")
    _common(c)
    c.set_defaults(run=_compress)

    d = sub.add_parser("decompress", help=".dpc -> PNG")
    d.add_argument("input", type=Path, help=".dpc file or folder of .dpc files")
    d.add_argument("-o", "--output", type=Path, help="output PNG (or folder when IN is a folder)")
    _common(d)
    d.set_defaults(run=_decompress)

    i = sub.add_parser("info", help="print a .dpc file's header, size and bpp")
    i.add_argument("input", type=Path, help=".dpc file")
    i.set_defaults(run=_info)

    from eval.cli import add_eval_parser

    add_eval_parser(sub)
    return ap


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--weights", type=Path, help="model weights (.safetensors); default: the shipped ones")


# -- commands ----------------------------------------------------------------------------
def _compress(args) -> int:
    from .api import DEFAULT_QUALITY
    from .images import load_image

    quality = DEFAULT_QUALITY if args.quality is None else args.quality
    codec = _load_codec(args)
    codec._level(quality)  # reject a bad --quality before touching any file
    jobs = _jobs(args.input, args.output, IMAGE_SUFFIXES, ".dpc")

    def one(src: Path, dst: Path) -> None:
        _refuse_existing(dst, args.force)
        write_atomic(dst, codec.compress(load_image(src, codec.limits.max_pixels), quality), args.force)

    return _run_jobs(jobs, one, "compress")


def _decompress(args) -> int:
    codec = _load_codec(args)
    jobs = _jobs(args.input, args.output, {".dpc"}, ".png")

    def one(src: Path, dst: Path) -> None:
        _refuse_existing(dst, args.force)
        image = codec.decompress(_read_bytes(src))
        buf = io.BytesIO()
        image.save(buf, "PNG")
        write_atomic(dst, buf.getvalue(), args.force)

    return _run_jobs(jobs, one, "decompress")


def _info(args) -> int:
    from bitstream import read_container

    data = _read_bytes(args.input)
    container = read_container(data)
    h = container.header
    pixels = h.width * h.height
    print(f"file:            {args.input}")
    print(f"format version:  {h.version}")
    print(f"model id:        {h.model_id:04x}")
    print(f"size:            {h.width}x{h.height}")
    print(f"quality:         {h.quality}")
    print(f"bytes:           {len(data)} (header and trailer {container.overhead_bytes})")
    print(f"bpp:             {len(data) * 8 / pixels:.4f}")
    print(f"decoder hints:   {h.hints.hex() or 'none'}")
    return 0


# -- helpers -----------------------------------------------------------------------------
def _load_codec(args):
    from .api import Codec

    return Codec.load(args.weights)


def _read_bytes(path: Path) -> bytes:
    try:
        if path.is_dir():
            raise BitstreamError(f"{path} is a folder, not a .dpc file")
        return path.read_bytes()
    except OSError as exc:
        raise BitstreamError(f"cannot read {path}: {exc.strerror or exc}") from None


def _refuse_existing(dst: Path, force: bool) -> None:
    from .errors import OutputExistsError

    if dst.exists() and not force:  # checked early so no work is wasted; write_atomic re-checks
        raise OutputExistsError(f"{dst} exists (use --force to overwrite)")


def _jobs(src: Path, out: Path | None, suffixes: set[str], new_suffix: str) -> list[tuple[Path, Path]]:
    """(input, output) pairs for a file or a folder."""
    if not src.exists():
        raise (
            ImageReadError(f"{src} does not exist") if new_suffix == ".dpc" else BitstreamError(f"{src} does not exist")
        )
    if not src.is_dir():
        return [(src, out if out is not None else src.with_suffix(new_suffix))]
    out_dir = out if out is not None else src
    if out_dir.exists() and not out_dir.is_dir():
        raise CodecError(f"{out_dir} is a file; with a folder input, -o must name a folder")
    files = sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise CodecError(f"no {' / '.join(sorted(suffixes))} files in {src}")
    by_stem: dict[str, Path] = {}
    for f in files:
        if f.stem in by_stem:  # a.jpg and a.png would both become a.dpc: refuse rather than lose one
            raise CodecError(
                f"{by_stem[f.stem].name} and {f.name} would both be written to {out_dir / (f.stem + new_suffix)}"
            )
        by_stem[f.stem] = f
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CodecError(f"cannot create {out_dir}: {exc.strerror or exc}") from None
    return [(f, out_dir / (f.stem + new_suffix)) for f in files]


def _run_jobs(jobs, one, verb: str) -> int:
    if len(jobs) == 1:
        one(*jobs[0])
        return 0
    from tqdm import tqdm

    failures = []
    for src, dst in tqdm(jobs, desc=verb, unit="file", file=sys.stderr):
        try:
            one(src, dst)
        except CodecError as exc:
            failures.append((src, exc))
            tqdm.write(f"dpc: error: {src.name}: {exc}", file=sys.stderr)
    print(f"dpc: {verb}: {len(jobs) - len(failures)} ok, {len(failures)} failed", file=sys.stderr)
    return max((exc.exit_code for _, exc in failures), default=0)


if __name__ == "__main__":
    sys.exit(main())
