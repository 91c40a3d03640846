"""`dpc`: the command line.

    dpc compress IN [-o OUT] [--quality Q | --bpp TARGET] [--force] [--jobs N] [--max-pixels N]
                 [--steps N --sampler S --guidance G --seed K]   (recorded for the decoder)
    dpc decompress IN.dpc [-o OUT.png] [--force] [--jobs N] [--max-pixels N]
                 [--steps N --sampler S --guidance G --seed K --tile T]   (override the file's)
                 [--fidelity]   (the MSE decoder, no refinement: highest PSNR; default: perceptual)
    dpc info IN.dpc
    dpc eval DATASET --out RESULTS       (eval/cli.py)
    dpc bench [IMAGES...] [--sizes ...] [--configs ...] [--json FILE]   (eval/bench.py)

compress and decompress also take the deployment options of codec/runtime.py:
    --device D --dtype {fp32,fp16,bf16} --int8 --offload --compile --channels-last --attention {sdpa,eager}

IN may be a folder: then -o names an output folder (default: IN itself) and
files keep their stem (a.png -> OUT/a.dpc -> OUT2/a.png), with a progress bar,
--jobs N worker processes, and outputs that already exist skipped unless
--force, so a rerun finishes what an interrupted run left (dpc/batch.py).
Bad input ends in a one-line message on stderr and a non-zero exit code
(CodecError.exit_code; codec/exit_codes.py has the table `dpc --help` prints).
Folder mode says what it left out ("3 files skipped: not images"); outputs are
checked (an input of the run, a FIFO or a device, an unwritable folder) before
any image is encoded (dpc/files.py).
"""

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from codec.errors import (
    BitstreamError,
    CodecError,
    ImageReadError,
    InvalidOptionError,
    NoInputsError,
    OutputWriteError,
    UnsafeOutputError,
)
from codec.exit_codes import EXIT_CODES
from codec.options import DEFAULT_TILE, check_tile

# Only light modules here (no numpy, torch or PIL): `dpc` (dpc/entry.py, or main() here) sets
# its signal handling before anything slow is imported, so Ctrl-C in the first seconds ends as later.
from .batch import Task, read_bytes, run
from .entry import Terminated
from .entry import on_sigterm as _on_sigterm


def main(argv: list[str] | None = None) -> int:
    """Run `dpc ARGS`; returns the exit code (codec/exit_codes.py). Ctrl-C and SIGTERM end in one
    line and 130 / 143 at any moment: the handlers are in place before the slow imports."""
    in_main_thread = threading.current_thread() is threading.main_thread()
    old_sigterm = signal.signal(signal.SIGTERM, _on_sigterm) if in_main_thread else None
    pillow_log = logging.getLogger("PIL")
    if not pillow_log.handlers:  # what Pillow logs about a damaged image, our one line says
        pillow_log.addHandler(logging.NullHandler())
    try:
        try:
            args = _parser().parse_args(argv)  # imports what the command needs (torch among it)
            return args.run(args)
        except CodecError as exc:
            print(f"dpc: error: {exc}", file=sys.stderr)
            return exc.exit_code
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        print(f"dpc: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
    except Exception as exc:  # a bug, not bad input: still one line unless asked
        if os.environ.get("DPC_DEBUG"):
            raise
        print(f"dpc: internal error: {type(exc).__name__}: {exc} (set DPC_DEBUG=1 for a traceback)", file=sys.stderr)
        return 70
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, old_sigterm)


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other refusal (exit code 2)."""

    def error(self, message: str):
        self.exit(2, f"dpc: error: {self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    ap = _Parser(
        prog="dpc",
        description="dpcodec: neural image compression to .dpc files",
        epilog=_exit_code_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("compress", help="image(s) -> .dpc")
    c.add_argument("input", type=Path, help="image file or folder of images")
    c.add_argument("-o", "--output", type=Path, help="output file (or folder when IN is a folder)")
    rate = c.add_mutually_exclusive_group()
    rate.add_argument(
        "-q",
        "--quality",
        type=float,
        default=None,
        help="quality level: 1..6 trained (default 3), or -3..8 in steps of 1/32 between and beyond them",
    )
    rate.add_argument(
        "--bpp",
        type=_positive_float,
        default=None,
        metavar="TARGET",
        help="per image, the quality whose file is nearest TARGET bits per pixel (file bytes)",
    )
    _common(c)
    _refine_options(c, "decoder settings to record in the file (default: the level's measured default)")
    _run_options(c)
    c.set_defaults(run=_compress)

    d = sub.add_parser("decompress", help=".dpc -> PNG")
    d.add_argument("input", type=Path, help=".dpc file or folder of .dpc files")
    d.add_argument("-o", "--output", type=Path, help="output PNG (or folder when IN is a folder)")
    _common(d)
    _refine_options(d, "refinement (default: what the file's header records)")
    d.add_argument(
        "--tile",
        type=int,
        default=DEFAULT_TILE,
        metavar="T",
        help="decode pixels in tiles of T px (multiple of 64; 0 = off)",
    )
    d.add_argument(
        "--fidelity",
        action="store_true",
        help="the MSE decoder without refinement: highest PSNR / MS-SSIM, smooth (default: the perceptual decoder)",
    )
    d.add_argument(
        "--decoder-weights", type=Path, help="perceptual decoder weights (.safetensors); default: the shipped ones"
    )
    _run_options(d)
    d.set_defaults(run=_decompress)

    i = sub.add_parser("info", help="print a .dpc file's header, size and bpp")
    i.add_argument("input", type=Path, help=".dpc file")
    i.set_defaults(run=_info)

    from eval.bench import add_bench_parser
    from eval.cli import add_eval_parser

    add_eval_parser(sub)
    add_bench_parser(sub)
    return ap


def _run_options(p: argparse.ArgumentParser) -> None:
    from codec.options import ATTENTION, DTYPES

    g = p.add_argument_group("deployment", "how the models run (docs/performance.md: what to pick on which machine)")
    g.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, cuda:1, mps")
    g.add_argument("--dtype", choices=list(DTYPES), default="fp32", help="decoding precision (default fp32)")
    g.add_argument("--int8", action="store_true", help="INT8 prior and pixel decoders (CPU; calibrated, shipped)")
    g.add_argument(
        "--offload", action="store_true", help="keep models on the CPU; each visits the device for its stage"
    )
    g.add_argument("--compile", action="store_true", help="torch.compile the decoding models (slow first call)")
    g.add_argument("--channels-last", action="store_true", help="NHWC memory layout for the convolutions")
    g.add_argument("--attention", choices=ATTENTION, default="sdpa", help="the prior's attention kernel (default sdpa)")


def _run_option_values(args) -> dict:
    names = ("device", "dtype", "int8", "offload", "compile", "channels_last", "attention")
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


def _common(p: argparse.ArgumentParser) -> None:
    from bitstream.container import MAX_PIXELS as DEFAULT_MAX_PIXELS

    p.add_argument(
        "--quiet", action="store_true", help="no progress on the terminal (errors and summaries still print)"
    )
    p.add_argument(
        "-f", "--force", action="store_true", help="overwrite existing outputs (folder mode: else they are skipped)"
    )
    p.add_argument("--weights", type=Path, help="model weights (.safetensors); default: the shipped ones")
    p.add_argument(
        "-j", "--jobs", type=_positive, default=1, metavar="N", help="folder mode: N worker processes (default 1)"
    )
    p.add_argument(
        "--max-pixels",
        type=_positive,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"refuse images and .dpc files of more than N pixels (default {DEFAULT_MAX_PIXELS})",
    )


def _refine_options(p: argparse.ArgumentParser, title: str) -> None:
    from bitstream import SAMPLERS

    g = p.add_argument_group("diffusion refinement", title)
    g.add_argument("--steps", type=_non_negative, metavar="N", help="diffusion refinement steps, 0 = none (max 100)")
    g.add_argument("--sampler", choices=SAMPLERS, help="DDIM (eta 0), DPM-Solver++ or UniPC")
    g.add_argument("--guidance", type=float, metavar="S", help="classifier-free guidance scale (1 = off, max 25.5)")
    g.add_argument("--seed", type=_non_negative, metavar="K", help="seed of the starting noise")
    g.add_argument("--start", type=float, metavar="F", help="start at this fraction of the noise schedule (0.01..1)")
    g.add_argument("--early-exit", type=float, metavar="E", help="stop when a step changes the latent less than E")
    g.add_argument(
        "--prior-weights", type=Path, help="diffusion prior weights (.safetensors); default: the shipped ones"
    )


def _refine_overrides(args) -> dict:
    """The refinement options given on the command line (checked), by RefineSettings field."""
    from bitstream import RefineSettings

    given = {k: getattr(args, k) for k in ("steps", "sampler", "guidance", "seed", "start", "early_exit")}
    given = {k: v for k, v in given.items() if v is not None}
    try:
        RefineSettings().with_overrides(**given)
    except ValueError as exc:
        raise InvalidOptionError(str(exc)) from None
    return given


def _exit_code_table() -> str:
    rows = "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES)
    return f"exit codes (every failure is one line on stderr):\n{rows}"


def _int_at_least(minimum: int):
    """argparse type: an int >= minimum, else a usage error naming the bound."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


_non_negative, _positive = _int_at_least(0), _int_at_least(1)


def _positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not (0 < value < 64):
        raise argparse.ArgumentTypeError(f"must be between 0 and 64 (exclusive), got {text}")
    return value


# -- commands ----------------------------------------------------------------------------
def _compress(args) -> int:
    from codec.rate import DEFAULT_QUALITY

    quality = DEFAULT_QUALITY if args.quality is None else args.quality
    codec = _load_codec(args)
    refine = _refine_overrides(args)
    codec.default_refine(quality).with_overrides(**refine)  # bad options fail before any file is touched
    from codec.images import IMAGE_SUFFIXES

    jobs = _jobs(args.input, args.output, IMAGE_SUFFIXES, ".dpc")
    task = Task(
        "compress",
        quality,
        args.force,
        args.weights,
        args.max_pixels,
        refine,
        prior_weights=args.prior_weights,
        run_options=_run_option_values(args),
        bpp=args.bpp,
        quiet=args.quiet,
    )
    return run(jobs, task, codec, args.jobs, folder=args.input.is_dir())


def _decompress(args) -> int:
    codec = _load_codec(args)
    refine = _refine_overrides(args)
    if args.fidelity and refine:
        raise InvalidOptionError(
            f"--fidelity decodes without refinement; drop --{' --'.join(refine).replace('_', '-')}"
        )
    check_tile(args.tile)
    jobs = _jobs(args.input, args.output, {".dpc"}, ".png")
    task = Task(
        "decompress",
        0,
        args.force,
        args.weights,
        args.max_pixels,
        refine,
        tile=args.tile,
        prior_weights=args.prior_weights,
        run_options=_run_option_values(args),
        fidelity=args.fidelity,
        decoder_weights=args.decoder_weights,
        quiet=args.quiet,
    )
    return run(jobs, task, codec, args.jobs, folder=args.input.is_dir())


def _info(args) -> int:
    from bitstream import read_container

    data = read_bytes(args.input)
    container = read_container(data)
    h = container.header
    pixels = h.width * h.height
    print(f"file:            {args.input}")
    print(f"format version:  {h.version}")
    print(f"model id:        {h.model_id:04x}")
    print(f"size:            {h.width}x{h.height}")
    if h.rate_offset:
        print(f"quality:         {h.level + 1:g} (nearest trained level {h.quality}, offset {h.rate_offset}/32)")
    else:
        print(f"quality:         {h.quality}")
    print(f"bytes:           {len(data)} (header and trailer {container.overhead_bytes})")
    print(f"bpp:             {len(data) * 8 / pixels:.4f}")
    r = h.refine
    if r.steps:
        extra = f", start {r.start:g}, early exit {r.early_exit:g}" if r.start != 1 or r.early_exit else ""
        refine = f"{r.steps} steps, {r.sampler}, guidance {r.guidance:g}, seed {r.seed}{extra}"
    else:
        refine = "none (the decoder draws the coarse latent)"
    print(f"refinement:      {refine}")
    return 0


# -- helpers -----------------------------------------------------------------------------
def _load_codec(args):
    from codec.api import Codec

    codec = Codec.load(
        args.weights,
        max_pixels=args.max_pixels,
        prior_weights=getattr(args, "prior_weights", None),
        decoder_weights=getattr(args, "decoder_weights", None),
        **_run_option_values(args),
    )
    if codec.options.int8:
        codec.warm_up()  # a missing or mismatched INT8 table fails now, before any file is touched
    return codec


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
        raise InvalidOptionError(f"{out_dir} is a file; with a folder input, -o must name a folder")
    entries = sorted(src.iterdir())
    files = [p for p in entries if p.is_file() and p.suffix.lower() in suffixes]
    skipped = _skipped_entries(entries, files, out_dir, new_suffix)
    if not files:
        raise NoInputsError(f"no {' / '.join(sorted(suffixes))} files in {src}" + "".join(f"; {s}" for s in skipped))
    by_stem: dict[str, Path] = {}
    for f in files:
        if f.stem in by_stem:  # a.jpg and a.png would both become a.dpc: refuse rather than lose one
            raise UnsafeOutputError(
                f"{by_stem[f.stem].name} and {f.name} would both be written to {out_dir / (f.stem + new_suffix)}"
            )
        by_stem[f.stem] = f
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputWriteError(f"cannot create {out_dir}: {exc.strerror or exc}") from None
    verb = "compress" if new_suffix == ".dpc" else "decompress"
    for note in skipped:
        print(f"dpc: {verb}: {note}", file=sys.stderr)
    return [(f, out_dir / (f.stem + new_suffix)) for f in files]


def _skipped_entries(entries: list[Path], inputs: list[Path], out_dir: Path, new_suffix: str) -> list[str]:
    """What a folder run leaves out, and why: ["3 files skipped: not images (a.txt, b.csv, c.doc)", ...].

    This run's own outputs (a.dpc beside a.png) are not mentioned: a rerun would list them all.
    """
    outputs = {(out_dir / (f.stem + new_suffix)).resolve() for f in inputs}
    taken = set(inputs)
    folders = [p for p in entries if p.is_dir()]
    others = [p for p in entries if p not in taken and not p.is_dir() and p.resolve() not in outputs]
    what = "not images" if new_suffix == ".dpc" else "not .dpc files"
    notes = []
    for items, noun, why in ((others, "file", what), (folders, "folder", "subfolders are not searched")):
        if items:
            names = ", ".join(p.name for p in items[:3]) + (", ..." if len(items) > 3 else "")
            notes.append(f"{len(items)} {noun}{'s' if len(items) > 1 else ''} skipped: {why} ({names})")
    return notes


if __name__ == "__main__":
    sys.exit(main())
