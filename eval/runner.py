"""`dpc eval`: rate-distortion evaluation of our codec and classical baselines.

    dpc eval DATASET_DIR --out RESULTS_DIR [--codecs ours,jpeg,webp,avif,jxl] [--quality 1,2,3]
             [--metrics psnr,msssim,lpips,dists,fid,kid,spectral_gap] [--metric-weights DIR]

For every image: our codec at each quality level (rate = size of the .dpc file
written to RESULTS_DIR/files), then each baseline searched over its own
quality parameter to land as close as it can to our file's bpp on that image
("match-qN"). Rows go to results.csv as they finish; a rerun skips finished
image x codec x setting pairs. Then summary.json, RD plots, BD-rates and
report.md (eval/report.py).
"""

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from codec import Codec, CodecError, RatePoint, load_image
from codec.errors import ImageReadError, InvalidOptionError, NoInputsError, OutputWriteError
from codec.images import IMAGE_SUFFIXES

from .baselines import BASELINES, encode_at_bpp, lowest_bpp
from .metrics import METRIC_NAMES, bits_per_pixel
from .results import ResultsTable
from .suite import MetricSuite

ALL_CODECS = ("ours", *BASELINES)
FILE_SUFFIXES = {"jpeg": ".jpg", "webp": ".webp", "avif": ".avif", "jxl": ".jxl"}


@dataclass
class EvalConfig:
    dataset: Path
    out: Path
    codecs: list[str] = field(default_factory=lambda: list(ALL_CODECS))
    qualities: list[int] | None = None  # default: every level of the model
    metrics: list[str] | None = None  # default: all
    metric_weights: Path | None = None
    weights: Path | None = None  # our model weights (default: shipped)
    device: str = "cpu"
    targets: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2, 0.4])  # bpp, when "ours" is not run
    effort: int = 0  # our encoder effort 0..9 (codec/effort.py)
    fidelity: bool = False  # decode ours with the MSE decoder (the fidelity end) instead of the default


def list_images(dataset: Path) -> list[Path]:
    if not dataset.exists():
        raise ImageReadError(f"{dataset} does not exist")
    if not dataset.is_dir():
        raise InvalidOptionError(f"{dataset} is not a folder; dpc eval takes a folder of images")
    images = sorted(p for p in dataset.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise NoInputsError(f"no images in {dataset}")
    return images


def run_eval(cfg: EvalConfig, progress: bool = True) -> dict:
    """Run (or resume) an evaluation; returns the summary also written to summary.json.

    Refusals are CodecErrors with the exit codes of the table in docs/cli.md: bad options before any work
    (InvalidOptionError), no images (NoInputsError), an --out that cannot be made (OutputWriteError)."""
    from .report import write_report

    unknown = [c for c in cfg.codecs if c not in ALL_CODECS]
    if unknown:
        raise InvalidOptionError(f"unknown codec(s) {', '.join(unknown)}; choose from {', '.join(ALL_CODECS)}")
    unknown = [m for m in cfg.metrics or () if m not in METRIC_NAMES]
    if unknown:
        raise InvalidOptionError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRIC_NAMES)}")
    images = list_images(cfg.dataset)
    if cfg.out.exists() and not cfg.out.is_dir():
        raise InvalidOptionError(f"{cfg.out} is a file; --out must name a folder")
    codec = Codec.load(cfg.weights, device=cfg.device)
    qualities = cfg.qualities or list(codec.qualities)
    for q in qualities:  # trained levels only: the table's rows are per level
        codec.rates.check(RatePoint(q), InvalidOptionError)
    try:  # only once every option is known to be good: a refused run leaves nothing behind
        cfg.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputWriteError(f"cannot create {cfg.out}: {exc.strerror or exc}") from None
    suite = MetricSuite(cfg.metrics, cfg.metric_weights, features_dir=cfg.out / "features", device=cfg.device)
    images = _measurable(images, suite)
    baselines, skipped = {}, {}
    for name in cfg.codecs:
        if name == "ours":
            continue
        ok, reason = BASELINES[name].available()
        (baselines.__setitem__(name, BASELINES[name]) if ok else skipped.__setitem__(name, reason))
    table = ResultsTable(cfg.out / "results.csv")
    if "ours" in cfg.codecs:
        _check_identity(cfg, codec, table)
    lowest_path = cfg.out / "lowest_bpp.json"
    lowest = json.loads(lowest_path.read_text()) if lowest_path.exists() else {}

    tasks = [(p, c) for p in images for c in cfg.codecs if c == "ours" or c in baselines]
    bar = tqdm(tasks, desc="eval", unit="run", disable=not progress)
    for path, name in bar:
        bar.set_postfix_str(f"{path.name} {name}")
        image = load_image(path)
        if name == "ours":
            _run_ours(codec, image, path, qualities, table, suite, cfg)
        else:
            _run_baseline(name, baselines[name], image, path, qualities, table, suite, cfg)
            key = f"{name}/{path.name}"
            if key not in lowest:
                lowest[key] = lowest_bpp(baselines[name], image)
                lowest_path.write_text(json.dumps(lowest, indent=1))
    summary = write_report(cfg, table, suite, lowest, skipped, codec)
    return summary


def _measurable(images: list[Path], suite: MetricSuite) -> list[Path]:
    """The images every metric asked for can measure; each one left out is said on stderr.

    A 4 x 4 image has no spectrum for spectral_gap, and LPIPS needs 31 px: measured on the
    rest only, that image would leave its codec's means undefined, and it used to abort the run."""
    kept = []
    for path in images:
        try:
            with Image.open(path) as im:
                size = im.size
        except OSError:  # load_image says why, in its own words, when the image's turn comes
            kept.append(path)
            continue
        reason = suite.too_small(size)
        if reason is None:
            kept.append(path)
        else:
            print(f"dpc eval: skipped {path.name}: {reason}", file=sys.stderr)
    if not kept:
        raise NoInputsError(f"no image in {images[0].parent} is large enough for the metrics asked for")
    return kept


def _check_identity(cfg: EvalConfig, codec: Codec, table: ResultsTable) -> None:
    """A rerun reuses finished rows of ours only if the same weights and format made them:
    otherwise new weights would silently keep the old numbers."""
    from bitstream import LAYOUT_VERSION

    identity = {"model_id": f"{codec.model_id:04x}", "weights": codec.weights_sha256(), "format": LAYOUT_VERSION}
    # recorded only when not the default, so that folders from before these options still resume
    identity |= ({"effort": cfg.effort} if cfg.effort else {}) | ({"decode": "fidelity"} if cfg.fidelity else {})
    path = cfg.out / "ours_identity.json"
    has_ours = any(key[1] == "ours" for key in table.done)
    if path.exists():
        recorded = json.loads(path.read_text())
        if recorded != identity:
            raise CodecError(
                f"{cfg.out} holds results of other weights or format (model {recorded.get('model_id')}); "
                "use another --out folder"
            )
    elif has_ours:
        raise CodecError(f"{cfg.out} holds results of ours from unrecorded weights; use another --out folder")
    path.write_text(json.dumps(identity, indent=1))


def _file_path(cfg: EvalConfig, codec: str, setting: str, image_path: Path, suffix: str) -> Path:
    path = cfg.out / "files" / codec / setting / (image_path.stem + suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _measure(image: Image.Image, decoded: Image.Image, suite: MetricSuite, codec: str, setting: str, name: str) -> dict:
    suite.store_patch_features(codec, setting, name, decoded, reference=image)
    return suite.per_image(image, decoded)


def _run_ours(codec, image, path, qualities, table, suite, cfg) -> None:
    for q in qualities:
        setting = f"q{q}"
        if (path.name, "ours", setting) in table.done:
            continue
        t0 = time.perf_counter()
        data = codec.compress(image, q, effort=cfg.effort)
        encode_s = time.perf_counter() - t0
        file = _file_path(cfg, "ours", setting, path, ".dpc")
        file.write_bytes(data)
        size = file.stat().st_size  # the rate is what is on disk
        t0 = time.perf_counter()
        decoded = codec.decompress(file.read_bytes(), fidelity=cfg.fidelity)
        decode_s = time.perf_counter() - t0
        row = dict(image=path.name, codec="ours", setting=setting, param=q, target_bpp=None, bytes=size)
        row.update(bpp=bits_per_pixel(size, image), encode_s=encode_s, decode_s=decode_s)
        row.update(device=str(codec.device), **_measure(image, decoded, suite, "ours", setting, path.stem))
        table.add(row)


def _targets(table: ResultsTable, path: Path, qualities, cfg) -> list[tuple[str, float]]:
    """Baseline targets for one image: our bpp at each level, else the fixed bpp list."""
    targets = []
    for q in qualities:
        ours = table.find(path.name, "ours", f"q{q}")
        if ours is not None:
            targets.append((f"match-q{q}", ours["bpp"]))
    return targets or [(f"bpp-{t:g}", t) for t in cfg.targets]


def _run_baseline(name, baseline, image, path, qualities, table, suite, cfg) -> None:
    for setting, target in _targets(table, path, qualities, cfg):
        if (path.name, name, setting) in table.done:
            continue
        found = encode_at_bpp(baseline, image, target)
        same = _row_with_param(table, path.name, name, found.quality)
        if same is not None:  # e.g. several low targets all below JPEG's floor: same file, same numbers
            src = _file_path(cfg, name, same["setting"], path, FILE_SUFFIXES[name])
            _file_path(cfg, name, setting, path, FILE_SUFFIXES[name]).write_bytes(src.read_bytes())
            table.add({**same, "setting": setting, "target_bpp": target})
            suite.copy_patch_features(name, same["setting"], setting, path.stem)
            continue
        t0 = time.perf_counter()
        data = baseline.encode(image, found.quality)  # timed once more, outside the search
        encode_s = time.perf_counter() - t0
        file = _file_path(cfg, name, setting, path, FILE_SUFFIXES[name])
        file.write_bytes(data)
        size = file.stat().st_size
        t0 = time.perf_counter()
        decoded = baseline.decode(file.read_bytes())
        decode_s = time.perf_counter() - t0
        row = dict(image=path.name, codec=name, setting=setting, param=found.quality, target_bpp=target, bytes=size)
        row.update(bpp=bits_per_pixel(size, image), encode_s=encode_s, decode_s=decode_s, device="cpu")
        row.update(_measure(image, decoded, suite, name, setting, path.stem))
        table.add(row)


def _row_with_param(table: ResultsTable, image: str, codec: str, param: int) -> dict | None:
    for r in table.rows:
        if (r["image"], r["codec"]) == (image, codec) and r["param"] == param:
            return r
    return None
