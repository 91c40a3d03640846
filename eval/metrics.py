"""Image quality metrics on 8-bit RGB images (PIL), as compression papers report them.

Weight-free metrics live here (PSNR, MS-SSIM, spectral gap); the learned ones live in
`eval.perceptual` (LPIPS, DISTS) and `eval.distribution` (FID/KID on patches), which import
this module; `eval.metric_set` gathers all of them for the runner.
"""

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


class MetricUnavailable(Exception):
    """A metric cannot run here (weights or package missing or rejected); str() is the reason."""
