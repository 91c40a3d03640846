"""The runner's uniform interface to every metric: `available_metrics(names, weights_dir)` maps
each name to a usable metric or to an `Unavailable` carrying a one-line reason -- never to a
metric on random or downloaded weights.

It sits above `eval.metrics` (weight-free metrics), `eval.perceptual` and `eval.distribution`,
so none of those needs to import another.
"""

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from .distribution import PatchFidKid
from .metrics import METRIC_NAMES, WEIGHTS_ENV, MetricUnavailable, msssim, psnr, spectral_gap
from .perceptual import DISTSMetric, LPIPSMetric


@dataclass(frozen=True)
class Unavailable:
    """Stands in for a metric that cannot run; `reason` is one line for the report."""

    name: str
    reason: str
    kind = "unavailable"

    def __str__(self) -> str:
        return self.reason

    def __call__(self, *args, **kwargs):
        raise MetricUnavailable(self.reason)


@dataclass(frozen=True)
class PerImageMetric:
    """`metric(original, decoded) -> float` on two PIL images of the same size."""

    name: str
    fn: Callable[[Image.Image, Image.Image], float]
    higher_is_better: bool
    kind = "per_image"

    def __call__(self, original: Image.Image, decoded: Image.Image) -> float:
        return float(self.fn(original, decoded))


def resolve_weights_dir(weights_dir: str | os.PathLike | None = None) -> Path | None:
    """The metric-weights folder: `weights_dir` if given (the CLI's --metric-weights), else
    $DPC_METRIC_WEIGHTS if set and non-empty, else None. The folder is not checked here."""
    if weights_dir is not None:
        return Path(weights_dir)
    env = os.environ.get(WEIGHTS_ENV, "").strip()
    return Path(env) if env else None


def available_metrics(
    names: Iterable[str] = METRIC_NAMES,
    weights_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, "PerImageMetric | Unavailable | object"]:
    """Each requested name -> a PerImageMetric (kind "per_image"), an
    `eval.distribution.PatchFidKid` (kind "distribution"; "fid" and "kid" share one object,
    use `.accumulator()` per setting), or an Unavailable with its reason.

    Learned metrics load their weights here (once per call); a missing or rejected file
    makes that metric Unavailable, never a metric on other weights. Unknown names raise.
    """
    names = list(dict.fromkeys(names))
    unknown = [n for n in names if n not in METRIC_NAMES]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {', '.join(METRIC_NAMES)}")
    folder = resolve_weights_dir(weights_dir)
    out: dict = {}
    fidkid = None
    for name in names:
        try:
            if name == "psnr":
                out[name] = PerImageMetric(name, psnr, higher_is_better=True)
            elif name == "msssim":
                out[name] = PerImageMetric(name, msssim, higher_is_better=True)
            elif name == "spectral_gap":
                out[name] = PerImageMetric(name, spectral_gap, higher_is_better=False)
            elif name == "lpips":
                out[name] = PerImageMetric(name, LPIPSMetric.load(folder, device), higher_is_better=False)
            elif name == "dists":
                out[name] = PerImageMetric(name, DISTSMetric.load(folder, device), higher_is_better=False)
            else:  # fid, kid
                if fidkid is None:  # load once for both names; a failure is remembered too
                    try:
                        fidkid = PatchFidKid.load(folder, device)
                    except MetricUnavailable as e:
                        fidkid = e
                if isinstance(fidkid, MetricUnavailable):
                    raise fidkid
                out[name] = fidkid
        except MetricUnavailable as e:
            out[name] = Unavailable(name, f"{name.upper()} unavailable: {e}")
    return out
