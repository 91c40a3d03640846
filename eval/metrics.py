"""Image quality metrics on 8-bit RGB images (PIL), as compression papers report them.

Weight-free metrics live here (PSNR, MS-SSIM, spectral gap); the learned ones live in
`eval.perceptual` (LPIPS, DISTS) and `eval.distribution` (FID/KID on patches). The runner
asks `available_metrics(names, weights_dir)` for all of them at once: every name maps to a
usable metric or to an `Unavailable` carrying a one-line reason -- never to a metric on
random or downloaded weights.
"""

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pytorch_msssim import ms_ssim, ssim

import bitstream

MS_SSIM_MIN_SIDE = 161  # 5 scales of an 11-px window need (11 - 1) * 2**4 + 1 pixels
WEIGHTS_ENV = "DPC_METRIC_WEIGHTS"
METRIC_NAMES = ("psnr", "msssim", "lpips", "dists", "fid", "kid", "spectral_gap")


def _tensor(im: Image.Image) -> torch.Tensor:
    arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)[None]


def psnr(a: Image.Image, b: Image.Image) -> float:
    """PSNR in dB over all RGB values (8-bit, peak 255); inf for identical images."""
    x = np.asarray(a.convert("RGB"), dtype=np.float64)
    y = np.asarray(b.convert("RGB"), dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"image sizes differ: {a.size} vs {b.size}")
    mse = np.mean((x - y) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def msssim(a: Image.Image, b: Image.Image) -> float:
    """MS-SSIM (pytorch-msssim, data range 1) on RGB.

    Fallback: images with a side under 161 px are too small for 5 scales; for
    them this returns single-scale SSIM (window shrunk to fit, odd, >= 3).
    """
    x, y = _tensor(a), _tensor(b)
    if x.shape != y.shape:
        raise ValueError(f"image sizes differ: {a.size} vs {b.size}")
    side = min(x.shape[-2:])
    if side >= MS_SSIM_MIN_SIDE:
        return float(ms_ssim(x, y, data_range=1.0))
    win = max(3, min(11, side if side % 2 else side - 1))
    if side < 3:
        return 1.0 - float(torch.mean((x - y) ** 2))  # too small for any window
    return float(ssim(x, y, data_range=1.0, win_size=win))


def bits_per_pixel(num_bytes: int, image: Image.Image) -> float:
    """The rate of a file of `num_bytes` (all of it, header included) for `image`."""
    return bitstream.bits_per_pixel(num_bytes, image.width * image.height)


# --- spectral gap ---------------------------------------------------------------------------

SPECTRAL_MIN_SIDE = 8
SPECTRAL_EPS = 1e-10  # power floor, so log10 of an empty band is finite (luma in [0, 1])


def _luma(im: Image.Image) -> np.ndarray:
    """BT.601 luma Y = 0.299 R + 0.587 G + 0.114 B, in [0, 1], float64."""
    rgb = np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0
    return rgb @ np.array([0.299, 0.587, 0.114])


def radial_power_spectrum(image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of the luma: (bin centres in cycles/pixel, mean power).

    Y minus its mean, times a 2-D Hann window (np.hanning per axis, against border
    leakage), is Fourier transformed; power = |FFT|^2 / (H * W). Each frequency (fy, fx)
    from np.fft.fftfreq has radius r = sqrt(fx^2 + fy^2); n = min(H, W) // 2 equal bins
    span r in [0, 0.5] (the last bin includes 0.5; corners with r > 0.5 are left out), and
    a bin's value is the mean power of the frequencies in it (0 for an empty bin).
    """
    y = _luma(image)
    h, w = y.shape
    if min(h, w) < SPECTRAL_MIN_SIDE:
        raise ValueError(f"image too small for a spectrum: {image.size} (need a side >= {SPECTRAL_MIN_SIDE})")
    windowed = (y - y.mean()) * np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.fft2(windowed)) ** 2 / (h * w)
    radius = np.hypot(*np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij"))
    n_bins = min(h, w) // 2
    edges = np.linspace(0.0, 0.5, n_bins + 1)
    inside = radius <= 0.5
    idx = np.minimum(np.searchsorted(edges, radius[inside], side="right") - 1, n_bins - 1)
    sums = np.bincount(idx, weights=power[inside], minlength=n_bins)
    counts = np.bincount(idx, minlength=n_bins)
    mean_power = np.divide(sums, counts, out=np.zeros(n_bins), where=counts > 0)
    return (edges[:-1] + edges[1:]) / 2, mean_power


def spectral_gap(original: Image.Image, decoded: Image.Image) -> float:
    """Texture loss or gain, weight-free: mean |log10 P_dec(f) - log10 P_orig(f)| over the
    radial bins of `radial_power_spectrum` whose centre f is in [0.25, 0.5] cycles/pixel
    (the high-frequency half), with P floored at 1e-10. In decades of power; 0 for identical
    images; blur (lost texture) and noise/ringing (added texture) both raise it."""
    if original.size != decoded.size:
        raise ValueError(f"image sizes differ: {original.size} vs {decoded.size}")
    f, p_orig = radial_power_spectrum(original)
    _, p_dec = radial_power_spectrum(decoded)
    high = f >= 0.25
    diff = np.log10(p_dec[high] + SPECTRAL_EPS) - np.log10(p_orig[high] + SPECTRAL_EPS)
    return float(np.mean(np.abs(diff)))


# --- the runner's uniform interface ---------------------------------------------------------


class MetricUnavailable(Exception):
    """A metric cannot run here (weights or package missing or rejected); str() is the reason."""


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
                from .perceptual import LPIPSMetric

                out[name] = PerImageMetric(name, LPIPSMetric.load(folder, device), higher_is_better=False)
            elif name == "dists":
                from .perceptual import DISTSMetric

                out[name] = PerImageMetric(name, DISTSMetric.load(folder, device), higher_is_better=False)
            else:  # fid, kid
                from .distribution import PatchFidKid

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
