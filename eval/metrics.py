"""Image quality metrics on 8-bit RGB images (PIL), as compression papers report them."""

import numpy as np
import torch
from PIL import Image
from pytorch_msssim import ms_ssim, ssim

MS_SSIM_MIN_SIDE = 161  # 5 scales of an 11-px window need (11 - 1) * 2**4 + 1 pixels


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
    return num_bytes * 8.0 / (image.width * image.height)
