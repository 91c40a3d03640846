"""The arguments of `dpc compress`, `decompress` and `info` (`dpc eval` and `dpc bench` add theirs:
eval/cli.py, eval/bench.py), and `dpc --help` with the exit-code table (dpc/exit_codes.py).

Only light modules here (no numpy, torch or PIL): `dpc --help` and a usage error answer at once.
Usage errors end in one line and exit code 2, like every other refusal.
"""

import argparse
from collections.abc import Callable
from pathlib import Path

from codec.errors import InvalidOptionError
from codec.options import DEFAULT_TILE, EFFORTS

from .exit_codes import EXIT_CODES


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other refusal (exit code 2)."""

    def error(self, message: str):
        self.exit(2, f"dpc: error: {self.prog}: {message} (see {self.prog} --help)\n")


def parser(compress: Callable, decompress: Callable, info: Callable) -> argparse.ArgumentParser:
    """`dpc`'s parser; each command's arguments name its function as `run` (dpc/cli.py's commands)."""
    ap = _Parser(
        prog="dpc",
        description="dpcodec: neural image compression to .dpc files",
        epilog=_exit_code_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("compress", help="image(s) -> .dpc")
    c.add_argument("input", type=Path, help="image file or folder of images")
    c.add_argument("-o", "--output", help="output file (or folder when IN is a folder)")
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
    c.add_argument(
        "--effort",
        type=int,
        choices=EFFORTS,
        default=0,
        metavar="N",
        help="encoder effort 0..9: per image, search the latent for a better rate-distortion point "
        "(slower, smaller at the same PSNR under --fidelity decoding; it costs LPIPS under the default "
        "decode: docs/effort.md); 0 = one pass (default)",
    )
    _common(c)
    _refine_options(c, "decoder settings to record in the file (default: the level's measured default)")
    _run_options(c, decode=False)
    c.set_defaults(run=compress)

    d = sub.add_parser("decompress", help=".dpc -> PNG")
    d.add_argument("input", type=Path, help=".dpc file or folder of .dpc files")
    d.add_argument("-o", "--output", help="output PNG (or folder when IN is a folder)")
    _common(d)
    _refine_options(d, "refinement (default: what the file's header records)")
    d.add_argument(
        "--realism",
        type=_unit_float,
        metavar="R",
        help="0..1: lowest distortion (0) to most realistic texture (1); dpc-v3 weights whose refiner "
        "has a realism input only (default: the weights' own)",
    )
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
    d.set_defaults(run=decompress)

    i = sub.add_parser("info", help="print a .dpc file's header, size and bpp")
    i.add_argument("input", type=Path, help=".dpc file")
    i.set_defaults(run=info)

    from eval.bench import add_bench_parser
    from eval.cli import add_eval_parser

    add_eval_parser(sub)
    add_bench_parser(sub)
    return ap


def _run_options(p: argparse.ArgumentParser, decode: bool = True) -> None:
    """The deployment options; without `decode` (compress), those that only change decoding are refused."""
    from codec.options import ATTENTION, DTYPES

    g = p.add_argument_group("deployment", "how the models run (docs/performance.md: what to pick on which machine)")
    g.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, cuda:1, mps")
    g.add_argument(
        "--offload", action="store_true", help="keep models on the CPU; each visits the device for its stage"
    )
    decoding = [
        ("--dtype", dict(choices=list(DTYPES), default="fp32", help="decoding precision (default fp32)")),
        ("--int8", dict(action="store_true", help="INT8 prior and pixel decoders (CPU; calibrated, shipped)")),
        ("--compile", dict(action="store_true", help="torch.compile the decoding models (slow first call)")),
        ("--channels-last", dict(action="store_true", help="NHWC memory layout for the convolutions")),
        ("--attention", dict(choices=ATTENTION, default="sdpa", help="the prior's attention kernel (default sdpa)")),
    ]
    for flag, kwargs in decoding:
        if decode:
            g.add_argument(flag, **kwargs)
        else:  # accepted, they would do nothing to the file: a user who asks for them is told so
            nargs = 0 if kwargs.get("action") == "store_true" else None
            p.add_argument(flag, action=_DecodeOnly, nargs=nargs, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


class _DecodeOnly(argparse.Action):
    """A deployment option that only changes decoding, given to compress: a usage error (exit 2)."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} applies to decoding only (dpc decompress); compress does not take it")


def run_option_values(args) -> dict:
    from dataclasses import fields

    from codec.options import RunOptions

    return {f.name: getattr(args, f.name) for f in fields(RunOptions) if hasattr(args, f.name)}


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
        "-j",
        "--jobs",
        type=_positive,
        default=None,
        metavar="N",
        help="folder mode: N worker processes (default 1; with --ray: N Ray workers, default one per CPU)",
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run on a Ray cluster: HOST:PORT of its head (default RAY_ADDRESS, else a local cluster); "
        "-j N = N workers (default one per CPU); SRC and DST on a filesystem every node sees (docs/scale-out.md)",
    )
    p.add_argument(
        "--ray-gpus",
        type=float,
        default=0.0,
        metavar="G",
        help="with --ray and --device cuda: GPUs per worker (0.5 = two per GPU)",
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


def refine_overrides(args) -> dict:
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


def _unit_float(text: str) -> float:
    """argparse type: a float in 0..1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be 0..1, got {text}")
    return value


def _positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not (0 < value < 64):
        raise argparse.ArgumentTypeError(f"must be between 0 and 64 (exclusive), got {text}")
    return value
