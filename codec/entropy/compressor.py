"""Variable-rate hyperprior compressor for the autoencoder's latent.

    latent (B,C,H/8,W/8)
      | g_a                                    z (B,Z,H/64,W/64)
      v                                        | x z_gain[q], round about the medians
    y (B,M,H/16,W/16) --------- h_a ---------> z_symbols --(EntropyBottleneck tables)--> bits
      | x y_gain[q]                             |
      v                                         v h_s(z_hat)
    y_g - mu_g --round--> y_symbols <--- mu_g, sigma_g --snap--> table index
      |                     |                                     (GaussianConditional tables)
      | + mu_g, / y_gain[q] +------------------------------------------------------> bits
      v
    g_s --> latent_hat (B,C,H/8,W/8)

One set of weights serves every quality level: a learned per-channel gain
vector per level scales y (and z) before quantisation, and its inverse scales
the result back (gain units, as in Cui et al. 2021). Lower gain = coarser
quantisation = fewer bits.

The entropy coder never sees a float: z is coded with the EntropyBottleneck's
integer CDF tables (one per channel), y with the GaussianConditional's integer
CDF tables, picked by an index into a fixed scale table. Only that index is
derived from floats, by the same function on the encoder and the decoder; the
container's symbol check turns any disagreement into an error.

This module is the coding side only and imports no CompressAI (whose import costs
seconds): the two entropy models hold just what coding needs, the integer tables,
z's medians and y's scale grid, under CompressAI's state-dict names, so a weight
file trained with CompressAI's models (codec/entropy/training.py) loads as it is.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bitstream.entropy_coding import CdfTables

from ..models.layers import ResBlock, Upsample2x, conv3x3
from .context import CheckerboardContext, ContextConfig, anchor_mask

# CompressAI's default: 64 scales from 0.11 to 256, log-spaced.
SCALE_MIN, SCALE_MAX, SCALE_LEVELS = 0.11, 256.0, 64
# Symbols beyond this magnitude are clipped; real latents stay orders of magnitude below.
SYMBOL_LIMIT = 1 << 20
# Means of y are multiples of 1/MEAN_GRID (y's quantisation step is 1 in the gained domain).
MEAN_GRID = 64


@dataclass(frozen=True)
class CompressorConfig:
    latent_channels: int = 8
    channels: int = 96  # N: transform width
    y_channels: int = 64  # M: coded latent channels at H/16
    hyper_channels: int = 64
    z_channels: int = 32  # Z: hyper-latent channels at H/64
    levels: int = 6  # quality levels (gain vectors)
    context_features: int = 0  # > 0: a checkerboard context (codec/entropy/context.py) of that width
    context_hidden: int = 192

    @property
    def has_context(self) -> bool:
        return self.context_features > 0


def scale_table() -> list[float]:
    """The fixed grid entropy scales snap to (GaussianConditional's table)."""
    return torch.exp(torch.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), SCALE_LEVELS)).tolist()


@dataclass
class HyperParams:
    """Entropy parameters of y for one image, all (1, M, h, w) in the gained domain."""

    means: Tensor  # multiples of 1 / MEAN_GRID
    scales: Tensor
    indexes: Tensor  # int32 index into the GaussianConditional's CDF tables

    def check_arrays(self) -> tuple:
        """The derived parameters as integers, for the container's symbol check."""
        grid = torch.round(self.means * MEAN_GRID).to(torch.int64).clamp(-(2**31), 2**31 - 1)
        return self.indexes.cpu().numpy(), grid.to(torch.int32).cpu().numpy()


class TableBuffers(nn.Module):
    """The integer CDF tables of one entropy model, under CompressAI's buffer names."""

    def __init__(self):
        super().__init__()
        for name in ("_quantized_cdf", "_offset", "_cdf_length"):
            self.register_buffer(name, torch.zeros(0, dtype=torch.int32))


class ZModel(TableBuffers):
    """z's factorized model, as coding uses it: tables and quantiles (CompressAI's EntropyBottleneck)."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("quantiles", torch.zeros(channels, 1, 3))


class LowerBound(nn.Module):
    def __init__(self, bound: float):
        super().__init__()
        self.register_buffer("bound", torch.Tensor([float(bound)]))


class YModel(TableBuffers):
    """y's Gaussian model, as coding uses it: tables and the scale grid (CompressAI's GaussianConditional)."""

    def __init__(self, scales: list[float]):
        super().__init__()
        self.register_buffer("scale_table", torch.Tensor(scales))
        self.lower_bound_scale = LowerBound(scales[0])

    def build_indexes(self, scales: Tensor) -> Tensor:
        """Scales -> int32 index of the first grid scale >= them (GaussianConditional.build_indexes)."""
        scales = torch.max(scales, self.lower_bound_scale.bound)
        indexes = scales.new_full(scales.size(), len(self.scale_table) - 1).int()
        for s in self.scale_table[:-1]:
            indexes -= (scales <= s).int()
        return indexes


def medians(entropy_bottleneck: nn.Module) -> Tensor:
    """z's per-channel medians (Z,1,1), the centre z symbols are rounded about."""
    return entropy_bottleneck.quantiles[:, :, 1:2]


class HyperpriorCompressor(nn.Module):
    """The compressor's networks and gains plus the entropy models' coding state (no training losses)."""

    def __init__(self, cfg: CompressorConfig = CompressorConfig()):
        super().__init__()
        self.cfg = cfg
        n, m, nh, z = cfg.channels, cfg.y_channels, cfg.hyper_channels, cfg.z_channels
        self.g_a = nn.Sequential(
            conv3x3(cfg.latent_channels, n), ResBlock(n), conv3x3(n, n, stride=2), ResBlock(n), conv3x3(n, m)
        )
        self.g_s = nn.Sequential(
            conv3x3(m, n), ResBlock(n), Upsample2x(n, n), ResBlock(n), conv3x3(n, cfg.latent_channels)
        )
        self.h_a = nn.Sequential(
            conv3x3(m, nh), nn.SiLU(), conv3x3(nh, nh, stride=2), nn.SiLU(), conv3x3(nh, z, stride=2)
        )
        self.h_s = nn.Sequential(
            conv3x3(z, nh),
            nn.SiLU(),
            Upsample2x(nh, nh),
            nn.SiLU(),
            Upsample2x(nh, n),
            nn.SiLU(),
            nn.Conv2d(n, 2 * m, 1),
        )
        # Level 0 (quality 1) starts with the smallest gain: the coarsest quantiser.
        steps = torch.arange(cfg.levels, dtype=torch.float32) - (cfg.levels - 1)
        self.log_gain_y = nn.Parameter((steps * 0.45)[:, None].repeat(1, m))
        self.log_gain_z = nn.Parameter((steps * 0.2)[:, None].repeat(1, z))
        self.entropy_bottleneck = ZModel(z)
        self.gaussian_conditional = YModel(scale_table())
        self.context = (
            CheckerboardContext(ContextConfig(m, cfg.context_features, cfg.context_hidden)) if cfg.has_context else None
        )

    def raw_params(self, z_hat: Tensor, gain_y: Tensor) -> tuple[Tensor, Tensor]:
        """z_hat (B,Z,h,w), dequantised -> y's means and scales (B,M,4h,4w), gained, before any
        snapping (differentiable: training, the context's training and the effort search use it)."""
        means, scales = self.h_s(z_hat).chunk(2, dim=1)
        return means * gain_y, F.softplus(scales) * gain_y

    # -- coding (inference) ---------------------------------------------------------
    def gains(self, level: float) -> tuple[Tensor, Tensor]:
        """Gain vectors (1,M,1,1) and (1,Z,1,1) at a 0-based level.

        Integer levels in range use their trained vectors. Between them the log gains are
        interpolated linearly, and beyond the first / last level the end segment is
        extended (untrained rates: measured in docs/rates.md), so one model codes any
        rate on a continuous scale.
        """
        last = self.cfg.levels - 1
        if float(level).is_integer() and 0 <= level <= last:
            ly, lz = self.log_gain_y[int(level)], self.log_gain_z[int(level)]
        else:
            i = min(max(math.floor(level), 0), last - 1)
            f = level - i
            ly = self.log_gain_y[i] + f * (self.log_gain_y[i + 1] - self.log_gain_y[i])
            lz = self.log_gain_z[i] + f * (self.log_gain_z[i + 1] - self.log_gain_z[i])
        return ly.exp()[None, :, None, None], lz.exp()[None, :, None, None]

    def analyse(self, latent: Tensor, level: float) -> tuple[Tensor, Tensor]:
        """Encoder side: latent (1,C,h,w) -> (y (1,M,h/2,w/2), z_symbols (1,Z,h/8,w/8) int32)."""
        y = self.g_a(latent)
        z_symbols = self.z_symbols(y, self.gains(level)[1]).clamp(-SYMBOL_LIMIT, SYMBOL_LIMIT)
        return y, z_symbols.to(torch.int32)

    def z_symbols(self, y: Tensor, gain_z: Tensor) -> Tensor:
        """y (B,M,h,w), gain_z (B,Z,1,1) -> z's symbols (B,Z,h/4,w/4) as floats, unclamped:
        round(h_a(y) x gain_z - medians) (the effort search and training scripts use it too)."""
        return torch.round(self.h_a(y) * gain_z - medians(self.entropy_bottleneck))

    def hyper_params(self, z_symbols: Tensor, level: float) -> HyperParams:
        """Both sides: z_symbols (1,Z,h,w) int32 -> y's entropy parameters and table indexes."""
        gain_y, gain_z = self.gains(level)
        medians_z = medians(self.entropy_bottleneck)
        z_hat = (z_symbols.to(medians_z.dtype) + medians_z) / gain_z
        return self._snapped(*self.raw_params(z_hat, gain_y))

    def context_params(self, params: HyperParams, y_symbols: Tensor, level: float) -> HyperParams:
        """Both sides, second pass of a checkerboard context: the anchors' symbols (1,M,h,w) int32
        (what is at the non-anchors is ignored) and the hyperprior's `params` -> the parameters of
        every position, the non-anchors' refined from the anchors around them."""
        gain_y = self.gains(level)[0]
        mask = anchor_mask(*y_symbols.shape[2:], device=params.means.device)
        y_hat = y_symbols.to(params.means.dtype) + params.means
        means, scales = self.context(torch.where(mask, y_hat, 0.0), params.means, params.scales, gain_y)
        refined = self._snapped(means, scales)
        return HyperParams(
            means=torch.where(mask, params.means, refined.means),
            scales=torch.where(mask, params.scales, refined.scales),
            indexes=torch.where(mask, params.indexes, refined.indexes),
        )

    def _snapped(self, means: Tensor, scales: Tensor) -> HyperParams:
        """Raw means and scales -> finite means on the 1/MEAN_GRID grid and scale-table indexes."""
        # A crafted file can push h_s to inf/nan; keep the arithmetic finite.
        means = torch.nan_to_num(means, nan=0.0, posinf=0.0, neginf=0.0).clamp(-SYMBOL_LIMIT, SYMBOL_LIMIT)
        # Snap the means to a grid too: then y_hat = symbol + mean is an exact dyadic
        # number that another device reproduces bit for bit (or, at a grid boundary,
        # visibly fails the container's check, which covers indexes and means).
        means = torch.round(means * MEAN_GRID) / MEAN_GRID
        scales = torch.nan_to_num(scales, nan=SCALE_MAX, posinf=SCALE_MAX, neginf=SCALE_MIN)
        indexes = self.gaussian_conditional.build_indexes(scales)
        return HyperParams(means=means, scales=scales, indexes=indexes)

    def y_symbols(self, y: Tensor, params: HyperParams, level: float) -> Tensor:
        """Encoder side: y (1,M,h,w) -> integer symbols round(y * gain - mean), int32."""
        gain_y = self.gains(level)[0]
        means = params.means.to(y.device, y.dtype)
        symbols = torch.round(y * gain_y - means).clamp(-SYMBOL_LIMIT, SYMBOL_LIMIT)
        return symbols.to(torch.int32)

    def synthesise(self, y_symbols: Tensor, params: HyperParams, level: float) -> Tensor:
        """Both sides: y_symbols (1,M,h,w) int32 -> latent_hat (1,C,2h,2w)."""
        gain_y = self.gains(level)[0]
        y_hat = self.quantized_latent(y_symbols, params).to(gain_y.device, gain_y.dtype) / gain_y
        return self.g_s(y_hat)

    @staticmethod
    def quantized_latent(y_symbols: Tensor, params: HyperParams) -> Tensor:
        """y_symbols + snapped means, float64 (1,M,h,w): exact, the same on every device."""
        return y_symbols.to(torch.float64).cpu() + params.means.to(torch.float64).cpu()

    def z_tables(self) -> CdfTables:
        return CdfTables.from_buffers(
            self.entropy_bottleneck._quantized_cdf, self.entropy_bottleneck._cdf_length, self.entropy_bottleneck._offset
        )

    def y_tables(self) -> CdfTables:
        gc = self.gaussian_conditional
        return CdfTables.from_buffers(gc._quantized_cdf, gc._cdf_length, gc._offset)
