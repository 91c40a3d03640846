"""What several scripts share, in one place.

- data: the BSDS500 split (bsds500_splits.tsv), finding, downscaling and packing training photos
- caches: the coarse latents of every training photo at every quality (the decoders', the
  context's and the encoder's training), the prior's latent pairs, the context's y
- crops: random windows, random levels on the continuous scale, the batch makers of the
  decoders', the context's and the encoder's training
- rate maths of the context and encoder training: Gaussian bits over unit bins, the coder's z
  and hyperprior parameters for a batch of crops, likelihoods to bits
- the training loop: --seed and --threads, warm-up + cosine learning rate, EMA of the weights,
  resuming from a checkpoint, the CSV log, the record of a run and the command line in weight files
- results tables: CSVs that a rerun continues, the columns every decode is scored by

Checkpoints (tensors in safetensors, state in its JSON metadata) are scripts/checkpoints.py.
"""

import argparse
import csv
import io
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from codec import Codec
from codec.canvas import Canvas
from codec.entropy.compressor import MEAN_GRID, HyperpriorCompressor, medians
from codec.images import IMAGE_SUFFIXES
from eval.metrics import bits_per_pixel, msssim, psnr

# -- data -------------------------------------------------------------------------------------------------
BSDS_SPLITS = "bsds500_splits.tsv"  # beside the training folder: ../shared/data/{train/, bsds500_splits.tsv}


def split_names(splits: Path, split: str) -> set[str]:
    """File names in one split ("train", "val", "test") of a splits table: a header line, then `name<TAB>split`."""
    rows = (line.split("\t") for line in Path(splits).read_text().splitlines()[1:] if line.strip())
    return {row[0] for row in rows if row[-1].strip() == split}


def validation_names(train_dir: Path) -> set[str]:
    """File names of the validation split: BSDS500's `val` images, which no model is trained on
    (bsds500_splits.tsv beside train_dir)."""
    return split_names(Path(train_dir).parent / BSDS_SPLITS, "val")


def validation_photos(train_dir: Path, count: int = 0) -> list[Path]:
    """The validation photos under train_dir (searched recursively), sorted; the first `count` (0 = all)."""
    names = validation_names(train_dir)
    paths = sorted(p for p in Path(train_dir).rglob("*") if p.name in names)
    return paths[:count] if count else paths


def folder_photos(folder: Path, split: str | None = None) -> list[Path]:
    """The images directly in `folder`, sorted; with `split`, only that BSDS500 split's
    (bsds500_splits.tsv two folders up: ../shared/data/train/bsds500 -> ../shared/data)."""
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if split:
        wanted = split_names(Path(folder).parent.parent / BSDS_SPLITS, split)
        paths = [p for p in paths if p.name in wanted]
    return paths


def find_images(root: Path) -> list[Path]:
    """Every image under root (searched recursively), sorted."""
    return sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def load_downscaled(path: Path, short: int) -> Image.Image:
    """A photo upright (EXIF) in RGB, downscaled (never up) so its short side is at most `short` px."""
    im = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    scale = short / min(im.size)
    if scale < 1:
        im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
    return im


def pack_images(pack: Path) -> Iterator[Image.Image]:
    """The photos of a data pack (scripts/pack_data.py: JPEG bytes and their offsets in one .npz), in order, RGB."""
    data = np.load(pack)
    blob, offsets = data["blob"], data["offsets"]
    for a, b in zip(offsets[:-1], offsets[1:], strict=True):
        yield Image.open(io.BytesIO(blob[a:b].tobytes())).convert("RGB")


def mosaic(photos: list[Path], size: int) -> Image.Image:
    """SIZE x SIZE image tiled from the photos at their native scale (no upscaling blur)."""
    canvas = Image.new("RGB", (size, size))
    k, y = 0, 0
    while y < size:
        x, row_h = 0, 0
        while x < size:
            im = Image.open(photos[k % len(photos)]).convert("RGB")
            k += 1
            canvas.paste(im, (x, y))
            x += im.width
            row_h = max(row_h, im.height)
        y += row_h
    return canvas


# -- caches -----------------------------------------------------------------------------------------------
QUALITIES = (-3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8)  # build_cache's qualities: every integer of the scale


def build_cache(train_dir: Path, cache: Path, qualities, seed: int = 0) -> dict:
    """{"names", "photos" [(h,w,3) uint8], "qualities" [(Q,)], "coarse" [(Q,C,h/8,w/8) fp16]} for every photo.

    Every training photo (downscaled to a short side of 288 px, as for every other stage) goes
    through the shipped codec once (Codec.stages.latent_pairs): the coarse latents the decoder would
    reconstruct at `qualities`, plus one random quality on the continuous scale (so a level
    embedding sees values between the trained levels). Cached in `cache` with the photos.
    """
    if cache.exists():
        d = np.load(cache, allow_pickle=False)
        n = int(d["count"])
        return {
            "names": [str(x) for x in d["names"]],
            "photos": [d[f"p{i}"] for i in range(n)],
            "qualities": [d[f"q{i}"] for i in range(n)],
            "coarse": [d[f"c{i}"] for i in range(n)],
        }
    codec = Codec.load()
    rng = np.random.default_rng(seed)
    low, high = codec.rates.span
    names, photos, qs, coarse = [], [], [], []
    t0 = time.time()
    paths = find_images(train_dir)
    for i, path in enumerate(paths):
        im = load_downscaled(path, 288)
        if min(im.size) < 128:
            continue
        extra = round(float(rng.uniform(low, high)) * 32) / 32
        wanted = [*qualities, extra]
        _, by_quality = codec.stages.latent_pairs(im, wanted)
        rows, cols = Canvas(im.height, im.width).latent_box()  # the photo's own latent px
        names.append(path.name)
        photos.append(np.asarray(im)[: 8 * (rows.stop - rows.start), : 8 * (cols.stop - cols.start)])
        qs.append(np.array(wanted, dtype=np.float32))
        coarse.append(np.stack([by_quality[q][0, :, rows, cols].numpy() for q in wanted]).astype(np.float16))
        if i % 50 == 0:
            print(f"cache: {i}/{len(paths)} photos, {time.time() - t0:.0f} s", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"p{i}": a for i, a in enumerate(photos)}
    arrays |= {f"q{i}": a for i, a in enumerate(qs)} | {f"c{i}": a for i, a in enumerate(coarse)}
    tmp = cache.with_name(cache.name + ".tmp.npz")
    np.savez(tmp, count=len(names), names=np.array(names), **arrays)
    tmp.replace(cache)
    return {"names": names, "photos": photos, "qualities": qs, "coarse": coarse}


def latent_cache(pack: Path, cache: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """[latent (C,h,w)], [coarse (L,C,h,w)] per photo of a data pack, float16, cropped to the photo:
    its autoencoder latent and the coarse latent of every quality level (Codec.stages.latent_pairs)."""
    if cache.exists():
        d = np.load(cache)
        n = int(d["count"])
        return [d[f"x{i}"] for i in range(n)], [d[f"c{i}"] for i in range(n)]
    codec = Codec.load()
    latents, coarses = [], []
    t0 = time.time()
    for i, im in enumerate(pack_images(pack)):
        latent, coarse = codec.stages.latent_pairs(im)
        rows, cols = Canvas(im.height, im.width).latent_box()  # the photo's own latent px
        latents.append(latent[0, :, rows, cols].numpy().astype(np.float16))
        coarses.append(torch.cat([coarse[q] for q in codec.qualities])[:, :, rows, cols].numpy().astype(np.float16))
        if i % 100 == 0:
            print(f"latents: {i} images, {time.time() - t0:.0f} s", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"x{i}": a for i, a in enumerate(latents)} | {f"c{i}": a for i, a in enumerate(coarses)}
    np.savez(cache, count=len(latents), **arrays)
    return latents, coarses


def cached_photos(train_dir: Path, cache: Path, validation: bool = False) -> list[np.ndarray]:
    """build_cache's photos (h, w, 3) of the training split, or (validation=True) of the validation split."""
    data = build_cache(train_dir, cache, QUALITIES)
    val = validation_names(train_dir)
    return [p for n, p in zip(data["names"], data["photos"], strict=True) if (n in val) == validation]


def centre_crop(photo: np.ndarray) -> np.ndarray:
    """(h, w, 3) -> its centre, each side cut down to a multiple of 64 px."""
    h, w = (photo.shape[0] // 64) * 64, (photo.shape[1] // 64) * 64
    top, left = (photo.shape[0] - h) // 2, (photo.shape[1] - w) // 2
    return photo[top : top + h, left : left + w]


def build_y_cache(train_dir: Path, cache: Path, y_cache: Path, base: Path) -> tuple[list[str], list[np.ndarray]]:
    """(names, y (M, h/16, w/16) float32 per photo): build_cache's photos cropped to their centre
    (centre_crop), through the encoder and g_a of the `base` weights; cached in `y_cache`."""
    if y_cache.exists():
        d = np.load(y_cache, allow_pickle=False)
        return [str(x) for x in d["names"]], [d[f"y{i}"] for i in range(int(d["count"]))]
    data = build_cache(train_dir, cache, QUALITIES)
    codec = Codec.load(base)
    names, ys, t0 = [], [], time.time()
    with torch.inference_mode():
        for i, (name, photo) in enumerate(zip(data["names"], data["photos"], strict=True)):
            crop = centre_crop(photo)
            if min(crop.shape[:2]) < 128:
                continue
            latent = codec.encode(Image.fromarray(crop))
            ys.append(codec.entropy.compressor.g_a(latent)[0].numpy().astype(np.float32))
            names.append(name)
            if i % 100 == 0:
                print(f"y cache: {i}/{len(data['names'])} photos, {time.time() - t0:.0f} s", flush=True)
    tmp = y_cache.with_name(y_cache.name + ".tmp.npz")
    np.savez(tmp, count=len(names), names=np.array(names), **{f"y{i}": y for i, y in enumerate(ys)})
    tmp.replace(y_cache)
    return names, ys


# -- crops and levels -------------------------------------------------------------------------------------
def random_box(rng: np.random.Generator, height: int, width: int, size: int, step: int = 1) -> tuple[int, int]:
    """(top, left) of a random size x size window inside height x width, at multiples of `step`."""
    top = step * int(rng.integers((height - size) // step + 1))
    left = step * int(rng.integers((width - size) // step + 1))
    return top, left


def random_level(rng: np.random.Generator, levels: int) -> float:
    """A 0-based level: half the time a trained one, half the time uniform on the continuous
    scale (-4 .. levels + 1, in the quality scale's 1/32 steps)."""
    if rng.random() < 0.5:
        return float(rng.integers(levels))
    return round(float(rng.uniform(-4, levels + 1)) * 32) / 32


class CoarseCrops:
    """Random (photo crop, coarse latent crop, 0-based level) triples of build_cache's data, with
    horizontal flips: crops of `size` latent px (x8 image px), one random cached level per crop."""

    def __init__(self, data: dict, keep: list[int], size: int, seed: int):
        self.data, self.size = data, size
        self.keep = [i for i in keep if min(data["coarse"][i].shape[2:]) >= size]
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xs, zs, levels = [], [], []
        s = self.size
        for _ in range(n):
            i = self.keep[self.rng.integers(len(self.keep))]
            c, photo, q = self.data["coarse"][i], self.data["photos"][i], self.data["qualities"][i]
            k = int(self.rng.integers(len(q)))
            top, left = random_box(self.rng, c.shape[2], c.shape[3], s)
            z = torch.from_numpy(c[k, :, top : top + s, left : left + s].astype(np.float32))
            x = torch.from_numpy(photo[8 * top : 8 * (top + s), 8 * left : 8 * (left + s)].astype(np.float32) / 255)
            x = x.permute(2, 0, 1)
            if self.rng.random() < 0.5:
                z, x = z.flip(-1), x.flip(-1)
            xs.append(x)
            zs.append(z)
            levels.append(float(q[k]) - 1)
        return torch.stack(xs), torch.stack(zs), torch.tensor(levels)


def training_crops(train_dir: Path, cache: Path, qualities, crop: int, seed: int) -> CoarseCrops:
    """CoarseCrops of build_cache's photos at `qualities` (cached in `cache`), the validation split
    held out; says how many photos it trains on."""
    data = build_cache(train_dir, cache, qualities, seed)
    val = validation_names(train_dir)
    train_idx = [i for i, n in enumerate(data["names"]) if n not in val]
    crops = CoarseCrops(data, train_idx, crop, seed)
    print(f"{len(crops.keep)} training photos ({len(data['names']) - len(train_idx)} validation photos held out)")
    return crops


class LevelCrops:
    """Random square crops (B, C, size, size) of arrays (C, h, w) at multiples of `step` px, flipped
    half the time, each with a random level (random_level). Arrays smaller than a crop are left out."""

    step = 1

    def __init__(self, arrays: list[np.ndarray], size: int, levels: int, seed: int):
        self.arrays = [a for a in arrays if min(self.sides(a)) >= size]
        self.size, self.levels = size, levels
        self.rng = np.random.default_rng(seed)

    def sides(self, a: np.ndarray) -> tuple[int, int]:
        return a.shape[1], a.shape[2]

    def window(self, a: np.ndarray, top: int, left: int) -> torch.Tensor:
        return torch.from_numpy(a[:, top : top + self.size, left : left + self.size])

    def level(self) -> float:
        return random_level(self.rng, self.levels)

    def batch(self, n: int) -> tuple[torch.Tensor, list[float]]:
        out = []
        for _ in range(n):
            a = self.arrays[self.rng.integers(len(self.arrays))]
            top, left = random_box(self.rng, *self.sides(a), self.size, self.step)
            t = self.window(a, top, left)
            out.append(t.flip(-1) if self.rng.random() < 0.5 else t)
        return torch.stack(out), [self.level() for _ in range(n)]


class YCrops(LevelCrops):
    """Crops of build_y_cache's y (M, h/16, w/16) at multiples of 4 y px, so that z's grid is the coder's."""

    step = 4


class PhotoCrops(LevelCrops):
    """Crops of photos (h, w, 3) uint8 at multiples of 16 px, as (3, size, size) in [0, 1]."""

    step = 16

    def sides(self, a: np.ndarray) -> tuple[int, int]:
        return a.shape[0], a.shape[1]

    def window(self, a: np.ndarray, top: int, left: int) -> torch.Tensor:
        s = self.size
        return torch.from_numpy(a[top : top + s, left : left + s].astype(np.float32) / 255).permute(2, 0, 1)


# -- rate maths -------------------------------------------------------------------------------------------
def likelihood_bits(likelihoods: torch.Tensor) -> torch.Tensor:
    """(B,...) likelihoods of an entropy model -> (B,) bits."""
    return -likelihoods.clamp_min(1e-9).log2().sum((1, 2, 3))


def hyper(comp: HyperpriorCompressor, y: torch.Tensor, levels: list[float]):
    """The coder's z and hyperprior parameters for each crop of y (B,M,h,w) at its level, without
    gradient: (y x gain_y, means (snapped to the coder's grid), scales, gain_y), gained domain."""
    with torch.no_grad():
        gy = torch.cat([comp.gains(v)[0] for v in levels])
        gz = torch.cat([comp.gains(v)[1] for v in levels])
        med = medians(comp.entropy_bottleneck)
        z = comp.z_symbols(y, gz)
        means, scales = comp.raw_params((z + med) / gz, gy)
        means = torch.round(means * MEAN_GRID) / MEAN_GRID
    return y * gy, means, scales, gy


CDF_TABLES = ("_quantized_cdf", "_offset", "_cdf_length")  # coding tables' buffer names (CompressAI's)


def load_compressor_state(comp: torch.nn.Module, state: dict) -> list[str]:
    """Load a compressor's state without its CDF tables (training needs none, and their shapes
    are known only once computed); returns the keys it lacked, tables aside."""
    result = comp.load_state_dict({k: v for k, v in state.items() if not k.endswith(CDF_TABLES)}, strict=False)
    return [k for k in result.missing_keys if not k.endswith(CDF_TABLES)]


# -- the training loop ------------------------------------------------------------------------------------
def parse_training_args(ap: argparse.ArgumentParser) -> argparse.Namespace:
    """Add --seed and --threads (the last options), parse the command line and apply them (seed_and_threads)."""
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    seed_and_threads(args)
    return args


def seed_and_threads(args: argparse.Namespace) -> None:
    """torch's intra-op threads from --threads (0: torch's default), its global seed from --seed."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> float:
    """Set every parameter group's learning rate; returns it."""
    for g in opt.param_groups:
        g["lr"] = lr
    return lr


def warmup_cosine(base: float, step: int, progress: float, warmup: int, floor: float = 0.1) -> float:
    """Learning rate: linear warm-up over the first `warmup` steps, then a cosine decay from `base`
    to `floor` x base over the run (progress 0..1: the share of the budget spent)."""
    return base * min(1.0, (step + 1) / warmup) * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, step: int, decay: float) -> None:
    """One step of the exponential moving average of model's weights in `ema`; the decay ramps up
    over the first steps: min(decay, (1 + step) / (10 + step))."""
    d = min(decay, (1 + step) / (10 + step))
    for pe, p in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(p, 1 - d)


def resume_crops(ckpt, parts: dict, crops, seed: int, budget: float) -> tuple[int, float]:
    """(step, seconds spent) of a run continued from its checkpoint `ckpt` (TimedCheckpoint), `parts`
    loaded from it; the crops' random numbers go on from (seed, step)."""
    meta = ckpt.load(parts)
    step, spent = meta["step"], meta["seconds"]
    crops.rng = np.random.default_rng([seed, step])
    print(f"resumed at step {step} ({spent:.0f} s of {budget:.0f})")
    return step, spent


class CsvLog:
    """A training log: CSV rows, flushed as they are written. With append (a resumed run), rows
    go after those of the log that is there; else (or if there is none) a new log with `header`."""

    def __init__(self, path: Path, header: list[str], append: bool = False):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        append = append and path.exists()
        self.file = open(path, "a" if append else "w", newline="")
        self.writer = csv.writer(self.file)
        if not append:
            self.row(*header)

    def row(self, *values) -> None:
        self.writer.writerow(values)
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def command_line() -> str:
    """This run's command as given from the repository root (`python -m scripts.NAME ARGS`), for
    the training records in weight files."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    program = f"python -m {spec.name}" if spec is not None else sys.argv[0]
    return " ".join([program, *sys.argv[1:]])


def training_record(what: str, steps: int, seconds: float, batch: int, train_photos: int, **settings) -> dict:
    """A CPU training run's record in the weight file it makes: what was trained, steps, seconds,
    batch, the run's own `settings` (in order), then the device, torch's threads, the training
    photos and the command line."""
    return {
        "what": what,
        "steps": steps,
        "seconds": round(seconds),
        "batch": batch,
        **settings,
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "train_photos": train_photos,
        "command": command_line(),
    }


# -- results tables ---------------------------------------------------------------------------------------
class ResultRows:
    """A results CSV that a rerun continues: `done`, the `key` columns (as text) of the rows already
    there; `write(key, **values)` appends a row (after the header, in a new file) and flushes it."""

    def __init__(self, path: Path, fields: list[str], key: list[str]):
        path, self.key, self.done = Path(path), key, set()
        if path.exists():
            with open(path) as f:
                self.done = {tuple(row[k] for k in key) for row in csv.DictReader(f)}
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists()
        self.file = open(path, "a", newline="")
        self.writer = csv.DictWriter(self.file, fields)
        if new:
            self.writer.writeheader()

    def write(self, key: tuple, **values) -> None:
        self.writer.writerow(dict(zip(self.key, key, strict=True), **values))
        self.file.flush()

    def __enter__(self) -> "ResultRows":
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()


def scored_as_written(original: Image.Image, decoded: Image.Image, size: int) -> tuple[Image.Image, dict[str, str]]:
    """(`decoded` as `dpc decompress` writes it: a PNG round trip, the columns every results table
    scores it by: bpp of a `size`-byte file, PSNR and MS-SSIM against `original`, as text)."""
    buf = io.BytesIO()
    decoded.save(buf, "PNG")
    written = Image.open(buf).convert("RGB")
    scores = {
        "bpp": f"{bits_per_pixel(size, original):.5f}",
        "psnr": f"{psnr(original, written):.4f}",
        "msssim": f"{msssim(original, written):.5f}",
    }
    return written, scores
