"""`dpc`: the command line.

    dpc compress IN [-o OUT] [--quality Q | --bpp TARGET] [--effort N] [--force] [--jobs N] [--max-pixels N]
                 [--steps N --sampler S --guidance G --seed K]   (recorded for the decoder)
    dpc decompress IN.dpc [-o OUT.png] [--force] [--jobs N] [--max-pixels N]
                 [--steps N --sampler S --guidance G --seed K --tile T]   (override the file's)
                 [--fidelity]   (the MSE decoder, no refinement: highest PSNR; default: perceptual)
    dpc info IN.dpc
    dpc eval DATASET --out RESULTS       (eval/cli.py)
    dpc bench [IMAGES...] [--sizes ...] [--configs ...] [--json FILE]   (eval/bench.py)

compress and decompress also take the deployment options of codec/runners.py (compress only the
first two: the others change decoding alone, and compress refuses them):
    --device D --offload --dtype {fp32,fp16,bf16} --int8 --compile --channels-last --attention {sdpa,eager}

IN may be a folder: then -o names an output folder (default: IN itself) and
files keep their stem (a.png -> OUT/a.dpc -> OUT2/a.png), with a progress bar,
--jobs N worker processes, and outputs that already exist skipped unless
--force, so a rerun finishes what an interrupted run left (dpc/batch.py).
Bad input ends in a one-line message on stderr and a non-zero exit code
(CodecError.exit_code; dpc/exit_codes.py has the table `dpc --help` prints).
Folder mode says what it left out ("3 files skipped: not images"); outputs are
checked (an input of the run, a FIFO or a device, an unwritable folder) before
any image is encoded (dpc/files.py).

The arguments are dpc/arguments.py's; here: `main` and the commands.
"""

import logging
import os
import signal
import sys
import threading
from pathlib import Path

from codec.errors import CodecError, InvalidOptionError
from codec.options import check_fidelity, check_tile

# Only light modules here (no numpy, torch or PIL): `dpc` (dpc/entry.py, or main() here) sets
# its signal handling before anything slow is imported, so Ctrl-C in the first seconds ends as later.
from .arguments import parser, refine_overrides, run_option_values
from .batch import run
from .exit_codes import INTERNAL_ERROR
from .files import check_output
from .jobs import Task, folder_jobs, load_codec, make_task, read_bytes
from .signals import Terminated, on_signal, received, stopped


def main(argv: list[str] | None = None) -> int:
    """Run `dpc ARGS`; returns the exit code (dpc/exit_codes.py). Ctrl-C and SIGTERM end in one
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
        return stopped(isinstance(exc, Terminated))
    except BrokenPipeError:  # `dpc info x.dpc | head -3`: the reader has what it wanted
        _quiet_stdout()
        return 0
    except Exception as exc:  # a bug, not bad input: still one line unless asked
        if received:  # what a signal swallowed mid-import left half-done (a module without its names)
            return stopped(signal.SIGTERM in received)
        if os.environ.get("DPC_DEBUG"):
            raise
        print(f"dpc: internal error: {type(exc).__name__}: {exc} (set DPC_DEBUG=1 for a traceback)", file=sys.stderr)
        return INTERNAL_ERROR
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, old_sigterm)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit after the reader closed the pipe does
    not raise again (Python's advice for SIGPIPE-less programs)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout replaced (the tests capture it): nothing to flush
        pass


def _parser():
    return parser(compress=_compress, decompress=_decompress, info=_info)


# -- commands ----------------------------------------------------------------------------
def _compress(args) -> int:
    output = _output(args, ".dpc")
    cluster = _cluster(args)
    from codec.quality_scale import DEFAULT_QUALITY

    quality = DEFAULT_QUALITY if args.quality is None else args.quality
    refine = refine_overrides(args)

    def checked_codec():  # bad options fail before any file is written
        codec = _load_codec(args)
        codec.default_refine(quality).with_overrides(**refine)
        return codec

    # the codec loads once an input needs it (a bad image is refused first); with --ray the
    # workers load it and check the options
    codec = None if cluster else checked_codec
    from codec.images import IMAGE_SUFFIXES

    jobs = folder_jobs(args.input, output, IMAGE_SUFFIXES, ".dpc")
    task = _task(args, quality=quality, refine=refine, bpp=args.bpp, effort=args.effort)
    return run(jobs, task, codec, args.jobs, folder=args.input.is_dir(), cluster=cluster)


def _decompress(args) -> int:
    output = _output(args, ".png")
    cluster = _cluster(args)
    refine = refine_overrides(args)
    if args.realism is not None:
        refine["realism"] = args.realism
    check_fidelity(args.fidelity, refine)  # the library's own checks, before any file is touched
    check_tile(args.tile)
    jobs = folder_jobs(args.input, output, {".dpc"}, ".png")
    task = _task(args, quality=0, refine=refine, tile=args.tile, fidelity=args.fidelity)
    # A file refused from its bytes alone (dpc/jobs.py: refuse_early) costs no model load: the codec
    # loads once some file needs it; with --ray the workers load it and check the options.
    codec = None if cluster else lambda: _load_codec(args)
    return run(jobs, task, codec, args.jobs, folder=args.input.is_dir(), cluster=cluster)


def _info(args) -> int:
    from bitstream import bits_per_pixel, read_container
    from codec.canvas import Canvas
    from codec.shipped import refuse_early, shipped_coding_config

    data = read_bytes(args.input)
    container = read_container(data)
    h = container.header
    refuse_early(container)  # what decompress would refuse of a shipped model's file
    pixels = h.width * h.height
    print(f"file:            {args.input}")
    print(f"format version:  {h.version}")
    print(f"model id:        {h.model_id:04x}")
    print(f"size:            {h.width}x{h.height}")
    canvas = Canvas.of_header(h)
    (hp, wp), (top, left) = canvas.padded, canvas.offset
    place = f"the image at ({left}, {top})" if canvas.centred else "the image top-left"
    print(f"canvas:          {wp}x{hp}, {place}")
    if h.rate_offset:
        print(f"quality:         {h.level + 1:g} (nearest trained level {h.quality}, offset {h.rate_offset}/32)")
    else:
        print(f"quality:         {h.quality}")
    print(f"bytes:           {len(data)} (header and trailer {container.overhead_bytes})")
    print(f"bpp:             {bits_per_pixel(len(data), pixels):.4f}")
    r = h.refine
    config = shipped_coding_config(h.model_id)
    if r.steps and config is not None and config.default_realism is not None:
        # dpc-v3's one-step latent refiner: no sampler or guidance; the realism is the decode's choice
        refine = f"the one-step latent refiner, seed {r.seed} (realism {config.default_realism:g} unless --realism)"
    elif r.steps:
        extra = f", start {r.start:g}, early exit {r.early_exit:g}" if r.start != 1 or r.early_exit else ""
        refine = f"{r.steps} step{'s' * (r.steps > 1)}, {r.sampler}, guidance {r.guidance:g}, seed {r.seed}{extra}"
    else:
        refine = "none (the decoder draws the coarse latent)"
    print(f"refinement:      {refine}")
    return 0


# -- helpers -----------------------------------------------------------------------------
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


def _task(args, **fields) -> Task:
    """The run's Task (dpc/jobs.py's make_task) from the options compress and decompress share, and `fields`."""
    return make_task(
        args.command,
        force=args.force,
        weights=args.weights,
        max_pixels=args.max_pixels,
        prior_weights=args.prior_weights,
        decoder_weights=getattr(args, "decoder_weights", None),  # decompress only
        run_options=run_option_values(args),
        quiet=args.quiet,
        **fields,
    )


def _load_codec(args):
    """This process's Codec (dpc/jobs.py's load_codec), the INT8 tables checked."""
    codec = load_codec(_task(args))
    if codec.options.int8:
        codec.warm_up()  # a missing or mismatched INT8 table fails now, before any file is touched
    return codec


if __name__ == "__main__":
    sys.exit(main())
