"""One file's job: the `Task` a run does to every (input, output) pair, the pairs, and doing one.

- `make_task`: the one place a Task is made (the CLI's commands, scale_out.run_folder); a Task is
  picklable and sent once to every worker (dpc/pool.py, dpc/scale_out.py).
- `folder_jobs`: the (input, output) pairs of a file or a folder, what a folder run leaves out and why.
- `load_codec`: the one way a run loads its Codec (the CLI's process, or a worker once for all its files).
- `refuse_early`: what an input's bytes alone refuse, before any model loads.
- `process`: compress or decompress one file; every output is written by `write_atomic`, complete
  or absent. `process_reply`: the same in a worker, the outcome as a picklable reply.
"""

import io
import os
import select
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from codec.errors import BitstreamError, CodecError, ImageReadError, InvalidOptionError, NoInputsError, OutputWriteError
from codec.options import DEFAULT_TILE
from codec.quality_scale import DEFAULT_QUALITY

from .errors import UnsafeOutputError
from .exit_codes import INTERNAL_ERROR
from .files import check_output, write_atomic
from .signals import raise_if_received


@dataclass(frozen=True)
class Task:
    """What to do with each pair; picklable, sent once to every worker. Made by `make_task`."""

    verb: str  # "compress" or "decompress"
    quality: float  # on the continuous scale (codec/quality_scale.py)
    force: bool
    weights: Path | None
    max_pixels: int
    refine: dict = field(default_factory=dict)  # RefineSettings overrides (None = file's/level's default)
    tile: int = DEFAULT_TILE  # decompress: pixel-decoding tile side (0 = off)
    prior_weights: Path | None = None
    run_options: dict = field(default_factory=dict)  # Codec.load keywords: device, dtype, int8, ...
    bpp: float | None = None  # compress: the level whose file is nearest this rate, per image
    fidelity: bool = False  # decompress: the MSE decoder, no refinement
    decoder_weights: Path | None = None  # decompress: perceptual-decoder weights (None = shipped)
    quiet: bool = False  # no stage progress for a single file on a terminal
    effort: int = 0  # compress: encoder effort 0..9 (codec/effort.py)


def make_task(
    verb: str,
    *,
    max_pixels: int,
    quality: float = DEFAULT_QUALITY,
    force: bool = False,
    weights=None,
    refine: dict | None = None,
    tile: int = DEFAULT_TILE,
    prior_weights=None,
    run_options: dict | None = None,
    bpp: float | None = None,
    fidelity: bool = False,
    decoder_weights=None,
    quiet: bool = False,
    effort: int = 0,
) -> Task:
    """The Task of a `compress` or `decompress` run (the fields: `Task`); `refine` and `run_options` are copied."""
    return Task(
        verb,
        quality,
        force,
        weights,
        max_pixels,
        dict(refine or {}),
        tile=tile,
        prior_weights=prior_weights,
        run_options=dict(run_options or {}),
        bpp=bpp,
        fidelity=fidelity,
        decoder_weights=decoder_weights,
        quiet=quiet,
        effort=effort,
    )


def load_codec(task: Task, threads: int | None = None):
    """The Codec a run loads once for all its files: the CLI's (`threads` None: torch's default),
    or a worker process's, local or on Ray, with `threads` torch threads."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    from codec.pipeline import Codec

    return Codec.load(
        task.weights,
        max_pixels=task.max_pixels,
        prior_weights=task.prior_weights,
        decoder_weights=task.decoder_weights,
        **task.run_options,
    )


def refuse_early(task: Task, src: Path) -> None:
    """CodecError for an input refused from its bytes alone, before any model loads (a 17-byte file
    claiming 8192 x 8192 px then costs no model load): a .dpc file that is no sound container within
    the pixel limit, or that the shipped model it names would refuse (codec/shipped.py). The checks
    and messages are decompress's own; a FIFO is left to the job, which reads it once."""
    if task.verb != "decompress" or not src.is_file():
        return
    from bitstream import BitstreamLimits, read_container
    from codec.shipped import SHIPPED_MODELS
    from codec.shipped import refuse_early as refuse_container

    container = read_container(read_bytes(src), BitstreamLimits(max_pixels=task.max_pixels))
    if task.weights is None or str(task.weights) in SHIPPED_MODELS:  # the shipped family decodes it
        refuse_container(container)


def read_bytes(path: Path) -> bytes:
    fifo = False
    try:
        if path.is_dir():
            raise BitstreamError(f"{path} is a folder, not a .dpc file")
        fifo = path.is_fifo()
        data = _read_fifo(path) if fifo else path.read_bytes()
    except OSError as exc:
        raise BitstreamError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not data:
        if fifo:
            raise BitstreamError(f"{path} is a FIFO with no writer (nothing to read): not a .dpc file")
        raise BitstreamError(f"{path} is empty (0 bytes): not a .dpc file")
    return data


FIFO_GRACE_S = 1.0  # how long a FIFO's writer may take to turn up (one blocked in its open() wakes with ours)


def _read_fifo(path: Path) -> bytes:
    """All a FIFO's writer writes, or b"" when it has none: a plain open() would wait for a writer
    for ever (issue #30). The open does not wait; a writer then gets FIFO_GRACE_S to write, after
    which a non-blocking read tells the cases apart: data, EAGAIN (a writer, silent so far: wait
    for it) or end of file (none)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb", buffering=0) as f:
        select.select([fd], [], [], FIFO_GRACE_S)
        try:
            first = os.read(fd, 1 << 16)
        except BlockingIOError:
            first = None
        if first == b"":
            return b""
        os.set_blocking(fd, True)
        return (first or b"") + f.readall()


def folder_jobs(src: Path, out: Path | None, suffixes, new_suffix: str) -> list[tuple[Path, Path]]:
    """(input, output) pairs for a file or a folder (output folder: `out`, default `src`; created here)."""
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
    created = None if out_dir.is_dir() else out_dir
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputWriteError(f"cannot create {out_dir}: {exc.strerror or exc}") from None
    verb = "compress" if new_suffix == ".dpc" else "decompress"
    for note in skipped:
        print(f"dpc: {verb}: {note}", file=sys.stderr)
    return FolderJobs(((f, out_dir / (f.stem + new_suffix)) for f in files), created)


class FolderJobs(list):
    """folder_jobs' (input, output) pairs, and the output folder if this run created it.

    A run that stops before its first output (a bad option the Ray workers find, Ctrl-C while
    the model loads) removes that folder again: a failed command leaves nothing behind."""

    def __init__(self, pairs, created: Path | None):
        super().__init__(pairs)
        self.created = created

    def remove_created_folder(self) -> None:
        if self.created is not None:
            try:
                self.created.rmdir()  # only if still empty: never anything a worker wrote
            except OSError:
                pass


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


def read_image(task: Task, src: Path):
    """A compress job's image, decoded and checked (codec/images.py, no torch): a bad image is
    refused before any model loads."""
    from codec.images import load_image

    return load_image(src, task.max_pixels)


def process(codec, task: Task, src: Path, dst: Path, progress=None, image=None) -> None:
    """Compress or decompress one file; CodecError on bad input or a failed write.

    `progress(stage, done, total)`: the stages as they advance (the decode's, or the effort search).
    `image`: compress, the input already read by `read_image`."""
    raise_if_received()  # a signal a library swallowed during the imports: stop before any output
    check_output(dst, (src,), task.force)  # before the work, which write_atomic then does not waste
    if task.verb == "compress":
        image = read_image(task, src) if image is None else image
        if task.bpp is not None:
            data = codec.compress_to_bpp(image, task.bpp, effort=task.effort, progress=progress, **task.refine)[0]
        else:
            refine = codec.default_refine(task.quality).with_overrides(**task.refine)
            data = codec.compress(image, task.quality, refine, effort=task.effort, progress=progress)
    else:
        buf = io.BytesIO()
        data = read_bytes(src)
        image = codec.decompress(data, tile=task.tile, fidelity=task.fidelity, progress=progress, **task.refine)
        image.save(buf, "PNG")
        data = buf.getvalue()
    write_atomic(dst, data, task.force)  # checks the output's type again, right before the rename


def process_reply(codec, task: Task, src: Path, dst: Path) -> tuple:
    """One file in a worker: ("ok",) or ("failed", one-line message, exit code); never raises CodecError."""
    try:
        process(codec, task, src, dst)
        return ("ok",)
    except CodecError as exc:
        return ("failed", str(exc), exc.exit_code)
    except Exception as exc:  # a bug: reported for this file, the others go on
        return ("failed", internal_message(exc), INTERNAL_ERROR)


def internal_message(exc: Exception) -> str:
    """A bug's one line ("internal error: ..."), its traceback after it with DPC_DEBUG set."""
    text = f"internal error: {type(exc).__name__}: {exc}"
    return text + "\n" + traceback.format_exc() if os.environ.get("DPC_DEBUG") else text
