"""`dpc`: the command line.

    dpc compress IN [-o OUT] [--quality Q | --bpp TARGET] [--effort N] [--force] [--jobs N] [--max-pixels N]
                 [--steps N --sampler S --guidance G --seed K]   (recorded for the decoder)
    dpc decompress IN.dpc [-o OUT.png] [--force] [--jobs N] [--max-pixels N]
                 [--steps N --sampler S --guidance G --seed K --tile T]   (override the file's)
                 [--fidelity]   (the MSE decoder, no refinement: highest PSNR; default: perceptual)
    dpc info IN.dpc
    dpc eval DATASET --out RESULTS       (eval/cli.py)
    dpc bench [IMAGES...] [--sizes ...] [--configs ...] [--json FILE]   (eval/bench.py)

compress and decompress also take the deployment options of codec/runtime.py (compress only the
first two: the others change decoding alone, and compress refuses them):
    --device D --offload --dtype {fp32,fp16,bf16} --int8 --compile --channels-last --attention {sdpa,eager}

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
    CodecError,
    InvalidOptionError,
)
from codec.exit_codes import EXIT_CODES
from codec.options import DEFAULT_TILE, EFFORTS, check_tile

# Only light modules here (no numpy, torch or PIL): `dpc` (dpc/entry.py, or main() here) sets
# its signal handling before anything slow is imported, so Ctrl-C in the first seconds ends as later.
from .batch import Task, folder_jobs, read_bytes, run
from .entry import Terminated, on_signal, received
from .files import check_output


def main(argv: list[str] | None = None) -> int:
    """Run `dpc ARGS`; returns the exit code (codec/exit_codes.py). Ctrl-C and SIGTERM end in one
    line and 130 / 143 at any moment: the handlers are in place before the slow imports."""
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        received.clear()  # dpc/entry.py has honoured any from its imports; an earlier in-process run's are gone
    old_sigterm = signal.signal(signal.SIGTERM, on_signal) if in_main_thread else None
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
        if received:  # what a signal swallowed mid-import left half-done (a module without its names)
            terminated = signal.SIGTERM in received
            print(f"dpc: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
            return 143 if terminated else 130
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
    c.set_defaults(run=_compress)

    d = sub.add_parser("decompress", help=".dpc -> PNG")
    d.add_argument("input", type=Path, help=".dpc file or folder of .dpc files")
    d.add_argument("-o", "--output", help="output PNG (or folder when IN is a folder)")
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


def _run_option_values(args) -> dict:
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
    output = _output(args, ".dpc")
    cluster = _cluster(args)
    from codec.rate import DEFAULT_QUALITY

    quality = DEFAULT_QUALITY if args.quality is None else args.quality
    # bad options fail before any file is touched; with --ray the workers load the codec and check them
    codec = None if cluster else _load_codec(args)
    refine = _refine_overrides(args)
    if codec is not None:
        codec.default_refine(quality).with_overrides(**refine)
    from codec.images import IMAGE_SUFFIXES

    jobs = folder_jobs(args.input, output, IMAGE_SUFFIXES, ".dpc")
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
        effort=args.effort,
    )
    return run(jobs, task, codec, args.jobs, folder=args.input.is_dir(), cluster=cluster)


def _decompress(args) -> int:
    output = _output(args, ".png")
    cluster = _cluster(args)
    codec = None if cluster else _load_codec(args)
    refine = _refine_overrides(args)
    if args.fidelity and refine:
        raise InvalidOptionError(
            f"--fidelity decodes without refinement; drop --{' --'.join(refine).replace('_', '-')}"
        )
    check_tile(args.tile)
    jobs = folder_jobs(args.input, output, {".dpc"}, ".png")
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
    return run(jobs, task, codec, args.jobs, folder=args.input.is_dir(), cluster=cluster)


def _info(args) -> int:
    from bitstream import bits_per_pixel, read_container

    data = read_bytes(args.input)
    container = read_container(data)
    h = container.header
    _check_shipped_model(h)
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
    print(f"bpp:             {bits_per_pixel(len(data), pixels):.4f}")
    r = h.refine
    if r.steps:
        extra = f", start {r.start:g}, early exit {r.early_exit:g}" if r.start != 1 or r.early_exit else ""
        refine = f"{r.steps} steps, {r.sampler}, guidance {r.guidance:g}, seed {r.seed}{extra}"
    else:
        refine = "none (the decoder draws the coarse latent)"
    print(f"refinement:      {refine}")
    return 0


# -- helpers -----------------------------------------------------------------------------
def _check_shipped_model(header) -> None:
    """What decompress would refuse of a header made by a shipped model (a quality it has no level
    for, a format version its coding does not write), refused as decompress does; without torch."""
    from bitstream import TWO_PASS_VERSION
    from codec.errors import BitstreamError
    from codec.rate import RateScale
    from codec.shipped import coding_config, shipped_weights

    path = shipped_weights(header.model_id)
    if path is None:
        return  # other weights: only they can tell
    try:
        config = coding_config(path)
    except (OSError, ValueError, KeyError, TypeError):
        return  # decompress explains what is wrong with the weights
    RateScale(config.levels).check(header.rate, BitstreamError)
    if (header.version >= TWO_PASS_VERSION) != config.two_pass:
        raise BitstreamError(f"corrupt header: format version {header.version} does not fit the weights it names")


def _output(args, new_suffix: str) -> Path | None:
    """-o as a Path, refused early (before the models load) where it cannot mean what it says.

    With one input file, -o names the output file: "-o newdir/" (a trailing slash, no such folder)
    would otherwise become a file named newdir, and decompress writes PNG only, so "-o out.jpg"
    would hold PNG bytes under a JPEG name. What even --force must not replace (the input itself,
    a folder, a FIFO) is refused first, as it would be later (dpc/files.py)."""
    if args.output is None:
        return None
    output = Path(args.output)
    if not args.input.exists() or args.input.is_dir():  # a missing input is refused next; a folder's -o is a folder
        return output
    check_output(output, (args.input,), force=True)
    if args.output.endswith((os.sep, os.altsep or os.sep)):
        raise InvalidOptionError(
            f"-o {args.output} names a folder, but {args.input} is one file: "
            f"name the output file (such as {output / (args.input.stem + new_suffix)}) in a folder that exists"
        )
    if new_suffix == ".png" and output.suffix and output.suffix.lower() != ".png":
        raise InvalidOptionError(f"decompress writes PNG files only: -o must end in .png, got {args.output}")
    return output


def _cluster(args):
    """--ray's Cluster (dpc/scale_out.py), or None for a run on this machine."""
    if args.ray is None:
        if args.ray_gpus:
            raise InvalidOptionError("--ray-gpus needs --ray")
        return None
    if args.ray_gpus < 0 or (args.ray_gpus and not args.device.startswith("cuda")):
        raise InvalidOptionError("--ray-gpus G needs G >= 0 and --device cuda")
    from .scale_out import Cluster

    cluster = Cluster(address=args.ray or None, gpus=args.ray_gpus)
    cluster.check()  # an unreachable head fails now, before any file is touched
    return cluster


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


if __name__ == "__main__":
    sys.exit(main())
