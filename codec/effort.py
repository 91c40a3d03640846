"""Encoder effort: refine one image's latent y for its rate level's rate-distortion trade-off.

    image x --E, g_a--> y (amortised: one pass, what effort 0 codes)
      repeat `rounds` times:
        z symbols = round(h_a(y) x gain_z - medians)   ->  means, scales (float64 entropy parameters)
        `iterations / rounds` Adam steps on v = y x gain_y (the gained domain: quantiser step 1):
            v_hat = floor(r) + sigmoid((frac(r) - 1/2) / tau) + means,  r = v - means
                    (soft rounding; tau falls from 0.5 to 0.05, to nearly hard rounding)
            J = bits(v_hat | means, scales) / pixels + lambda x 255^2 x MSE(D(g_s(v_hat / gain_y)), x)
        the exact J of the rounded symbols (file bytes, the fidelity decoder's pixels) is measured,
        with the round's z and with z re-derived from the new y; the best set of symbols so far
        is kept (the one-pass symbols included: the search never returns a worse J)

The decoder, the weights and the format do not change: a file written with effort decodes
as any other. lambda is the training trade-off of the level (the weight file's `lambdas`,
log-interpolated between levels like the gains); the distortion counts the image's own
pixels, not the padding. Yang et al. 2020 ("Improving inference for neural image
compression") measure what such per-image search recovers of the amortisation gap; their
annealed stochastic rounding is the idea behind the deterministic soft rounding here.

Large images are searched on tiles of y (TILE, with HALO of fixed context each side), one
after the other, so memory stays flat; images up to TILE x 16 px a side are one tile.
"""

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .canvas import Canvas
from .entropy import HyperpriorCodec, Symbols
from .entropy.compressor import SCALE_MIN, SYMBOL_LIMIT, HyperParams, medians, scale_table
from .entropy.context import anchor_mask
from .errors import InvalidOptionError
from .image_tensors import image_to_tensor
from .options import check_effort
from .pixels import PLAIN_HALO
from .placement import on_device
from .tiling import tile_map

# Adam steps per effort level: each costs one pass of g_s and the fidelity decoder, forward and
# backward, over the image (docs/effort.md has the time per Kodak image and what each level saves).
ITERATIONS = (0, 6, 10, 16, 24, 32, 40, 46, 52, 56)
ROUNDS = (0, 1, 1, 2, 2, 2, 2, 3, 3, 3)  # z (and with it y's entropy parameters) re-derived per round
TILE, HALO = 48, 8  # y px (x16 image px); the halo about covers g_s and the decoder's receptive field
Z_STEP = 4  # y px per z px
EXACT_TILE = 1024  # image px: the exact measurement decodes on tiles, as decompress does
MSSSIM_TO_MSE = 0.02  # (1 - MS-SSIM) -> MSE units (scripts/train.py's mix)
MSSSIM_MIN_SIDE = 161  # px: 5 scales of the 11-px window


def level_lambda(log_lambdas: list[float], level: float) -> float:
    """A 0-based level's rate-distortion trade-off from the trained levels' log lambdas:
    log-linear between them (like the gains), the end segments extended beyond."""
    last = len(log_lambdas) - 1
    i = min(max(math.floor(level), 0), last - 1)
    return math.exp(log_lambdas[i] + (level - i) * (log_lambdas[i + 1] - log_lambdas[i]))


@dataclass(frozen=True)
class SearchSettings:
    """How the search steps (chosen on the BSDS500 validation photos: docs/effort.md)."""

    learning_rate: float = 0.05  # Adam, in quantiser steps; cosine decay to a tenth within a round
    tau_start: float = 0.5  # soft-rounding temperature, annealed geometrically within a round ...
    tau_end: float = 0.05  # ... to nearly hard rounding
    msssim_weight: float = 0.1  # share of MS-SSIM in the distortion (0 = MSE only, what the weights were trained on)
    # search z too (soft-rounded like y): y's means and scales then follow z through h_s (and the
    # context) within a round, and z's own bits (its coding tables) count in J
    joint_z: bool = False
    iterations: tuple[int, ...] = ITERATIONS
    rounds: tuple[int, ...] = ROUNDS


@dataclass(frozen=True)
class _Target:
    """What J measures against: the padded image (1,3,H,W), its real-pixel mask (1,1,H,W), the trade-off."""

    x: Tensor
    mask: Tensor
    gain_y: Tensor  # (1,M,1,1)
    lam: float
    pixels: int  # real pixels (J is per pixel of the image, not of the padding)

    def crop(self, rows: slice, cols: slice) -> "_Target":
        """The part under y rows/cols (x16 image px)."""
        px = (slice(16 * rows.start, 16 * rows.stop), slice(16 * cols.start, 16 * cols.stop))
        return _Target(self.x[..., px[0], px[1]], self.mask[..., px[0], px[1]], self.gain_y, self.lam, self.pixels)


@dataclass(frozen=True)
class SearchResult:
    """One set of symbols and its exact J (bits per pixel + lambda x 255^2 x distortion)."""

    symbols: Symbols
    params: HyperParams
    cost: float


class EffortSearch:
    """Per-image search of y for `HyperpriorCodec` (see the module docstring)."""

    def __init__(self, entropy: HyperpriorCodec, decoder: torch.nn.Module, lambdas: list[float], settings=None):
        self.entropy, self.decoder = entropy, decoder
        self.settings = settings or SearchSettings()
        self.compressor = entropy.compressor
        self.log_lambdas = [math.log(v) for v in lambdas]
        self._z_bit_table = None  # built on first use (joint_z)

    @classmethod
    def for_weights(cls, entropy: HyperpriorCodec, decoder: torch.nn.Module, lambdas) -> "EffortSearch":
        """The search for weights that record their trade-offs (`lambdas`); InvalidOptionError if they do not."""
        if not lambdas:
            raise InvalidOptionError("these weights record no rate-distortion trade-offs (lambdas): effort needs them")
        return cls(entropy, decoder, lambdas)

    def lam(self, level: float) -> float:
        return level_lambda(self.log_lambdas, level)

    def run_on_image(self, image, latent: Tensor, level: float, effort: int, options, progress=None) -> SearchResult:
        """`run` for a PIL image and its latent, on the device `options` (RunOptions) name, with the
        decoder and compressor placed there for the search; `progress("effort", done, total)`."""
        canvas = Canvas(image.height, image.width)  # as Codec.encode placed the image for `latent`
        x = canvas.pad(image_to_tensor(image).to(options.device))
        hook = (lambda done, total: progress("effort", done, total)) if progress else None
        with on_device(self.decoder, options), on_device(self.compressor, options):
            return self.run(x, latent, level, effort, canvas, hook)

    def run(
        self,
        x: Tensor,
        latent: Tensor,
        level: float,
        effort: int,
        canvas: Canvas,
        progress: Callable[[int, int], None] | None = None,
    ) -> SearchResult:
        """x (1,3,H_pad,W_pad) in [0,1], its latent (1,C,H_pad/8,W_pad/8); `canvas`: where the
        real image sits in x.

        `progress(done, total)` after every step (total: the level's iterations x tiles).
        """
        effort = check_effort(effort)
        # the caller may be in inference mode (Codec.compress); the search needs autograd
        with torch.inference_mode(False):
            iterations, rounds = self.settings.iterations[effort], self.settings.rounds[effort]
            comp = self.compressor
            with torch.no_grad():
                x, latent = x.clone(), latent.clone()  # normal tensors: autograd may see them
                mask = torch.zeros_like(x[:, :1])
                canvas.crop(mask).fill_(1)  # a view: the image's own pixels count
                pixels = canvas.height * canvas.width
                target = _Target(x, mask, comp.gains(level)[0].float(), self.lam(level), pixels)

                v = comp.g_a(latent) * target.gain_y
            best = self._exact(v, target, level)  # the one-pass symbols: never returned worse
            synthesis = _StepSynthesis(comp.g_s, self.decoder)
            h, w = v.shape[2:]
            tiles = [(r, c) for r in range(0, h, TILE) for c in range(0, w, TILE)]
            total, done = iterations * len(tiles), 0
            for r in range(rounds):
                if r:  # start each round from the best symbols so far, dequantised
                    v = torch.from_numpy(best.symbols.y).to(v) + best.params.means.to(v)
                means = best.params.means.to(v)
                scales = torch.tensor(scale_table(), device=v.device)[best.params.indexes.to(v.device).long()]
                state = _State(v, torch.from_numpy(best.symbols.z).to(v), means, scales)
                n = iterations * (r + 1) // rounds - iterations * r // rounds
                for r0, c0 in tiles:
                    rows, cols = slice(r0, min(h, r0 + TILE)), slice(c0, min(w, c0 + TILE))
                    state = self._search_tile(state, target, level, rows, cols, n, done, total, progress, synthesis)
                    done += n
                v = state.v
                # the round's z (the parameters it searched under), or z re-derived from the new y
                z_round = best.symbols.z
                if self.settings.joint_z:  # the searched z, rounded as the coder rounds it
                    z_round = state.z.round().clamp(-SYMBOL_LIMIT, SYMBOL_LIMIT).to(torch.int32).cpu().numpy()
                candidates = (self._exact(v, target, level, z_round), self._exact(v, target, level))
                best = min((best, *candidates), key=lambda c: c.cost)
            return best

    def _search_tile(self, state: "_State", target, level, rows, cols, n, done, total, progress, synthesis) -> "_State":
        """n Adam steps on v[rows, cols] (y px) with HALO px of fixed context each side (and, with
        joint_z, on z under them); returns the whole state. `synthesis`: y_hat -> pixels."""
        v = state.v
        h, w = v.shape[2:]
        box = (slice(max(0, rows.start - HALO), min(h, rows.stop + HALO)),
               slice(max(0, cols.start - HALO), min(w, cols.stop + HALO)))  # fmt: skip
        keep = torch.zeros_like(v[..., box[0], box[1]], dtype=torch.bool)
        keep[
            ...,
            rows.start - box[0].start : rows.stop - box[0].start,
            cols.start - box[1].start : cols.stop - box[1].start,
        ] = True
        part = target.crop(*box)
        pixel_keep = keep[:, :1].repeat_interleave(16, 2).repeat_interleave(16, 3) & (part.mask > 0)
        means, scales = state.means[..., box[0], box[1]], state.scales[..., box[0], box[1]]
        cfg = self.settings
        # z under the box: y px / Z_STEP (the box's edges are multiples of it: TILE, HALO and the
        # padded size are)
        zbox = (slice(box[0].start // Z_STEP, -(-box[0].stop // Z_STEP)),
                slice(box[1].start // Z_STEP, -(-box[1].stop // Z_STEP)))  # fmt: skip
        keep_z = keep[:, :1, ::Z_STEP, ::Z_STEP].expand(-1, state.z.shape[1], -1, -1)
        with torch.enable_grad():
            u = v[..., box[0], box[1]].detach().clone().requires_grad_(True)
            zs = state.z[..., zbox[0], zbox[1]].detach().clone().requires_grad_(cfg.joint_z)
            opt = torch.optim.Adam([u, zs] if cfg.joint_z else [u], lr=cfg.learning_rate)
            for k in range(n):
                for g in opt.param_groups:  # cosine decay to a tenth
                    g["lr"] = cfg.learning_rate * (0.1 + 0.45 * (1 + math.cos(math.pi * k / n)))
                # soft rounding: the residual's fraction through a sigmoid that sharpens as tau
                # falls, so early steps see how close each symbol is to flipping (plain
                # straight-through rounding moved bits and distortion the wrong way here)
                tau = cfg.tau_start * (cfg.tau_end / cfg.tau_start) ** (k / max(1, n - 1))
                z_bits = 0.0
                if cfg.joint_z:
                    z_soft = _soft_round(zs, tau)
                    z_bits = self._z_bits(z_soft)[keep_z].sum()
                    q, bits = self._soft_y_from_z(u, z_soft, part.gain_y, level, tau, keep)
                else:
                    q = _soft_round(u - means, tau) + means
                    bits = gaussian_bits(q - means, scales)[keep].sum()
                x_hat = synthesis(q / part.gain_y)
                err = _distortion(x_hat, part.x, pixel_keep, cfg.msssim_weight)
                cost = (bits + z_bits + part.lam * 255**2 * err) / part.pixels
                grads = torch.autograd.grad(cost, [u, zs] if cfg.joint_z else [u])
                u.grad = grads[0] * keep  # the halo is context only (Adam leaves zero-gradient entries alone)
                if cfg.joint_z:
                    zs.grad = grads[1] * keep_z
                opt.step()
                if progress:
                    progress(done + k + 1, total)
        out = v.clone()
        out[..., box[0], box[1]] = torch.where(keep, u.detach(), out[..., box[0], box[1]])
        z = state.z.clone()
        z[..., zbox[0], zbox[1]] = torch.where(keep_z, zs.detach(), z[..., zbox[0], zbox[1]])
        return _State(out, z, state.means, state.scales)

    def _soft_y_from_z(self, u, z_soft, gain_y, level, tau, keep) -> tuple[Tensor, Tensor]:
        """joint_z: soft-rounded y_hat (gained) and its bits, with means and scales from the soft z
        through h_s (and the checkerboard context: the non-anchors about the soft anchors)."""
        comp = self.compressor
        gain_z = comp.gains(level)[1].float()
        means, scales = comp.raw_params((z_soft + medians(comp.entropy_bottleneck)) / gain_z, gain_y)
        q = _soft_round(u - means, tau) + means
        if comp.context is not None:
            mask = anchor_mask(*u.shape[2:], device=u.device)
            c_means, c_scales = comp.context(torch.where(mask, q, 0.0), means, scales, gain_y)
            q = torch.where(mask, q, _soft_round(u - c_means, tau) + c_means)
            means, scales = torch.where(mask, means, c_means), torch.where(mask, scales, c_scales)
        bits = gaussian_bits(q - means, scales.clamp_min(SCALE_MIN))[keep].sum()
        return q, bits

    def _z_bits(self, z_soft: Tensor) -> Tensor:
        """-log2 P of soft z symbols (1,Z,h,w) under z's coding tables, linear between the
        integers around each (escapes cost the escape bin's bits)."""
        if self._z_bit_table is None:
            self._z_bit_table = _bit_table(self.entropy.z_tables)
        table, offset = self._z_bit_table
        table, offset = table.to(z_soft), offset.to(z_soft.device)
        low = torch.floor(z_soft).detach()
        frac = z_soft - low
        chans = table.shape[0]
        flat = table.reshape(-1)
        row = (torch.arange(chans, device=z_soft.device) * table.shape[1])[None, :, None, None]

        def bits_at(symbol):
            b = (symbol.long() - offset[None, :, None, None]).clamp(0, table.shape[1] - 1)
            return flat[row + b]

        return (1 - frac) * bits_at(low) + frac * bits_at(low + 1)

    def _tiled_distortion(self, x_hat: Tensor, target: _Target) -> float:
        """The summed distortion of the whole image, on the search's tiles (MS-SSIM per tile, as searched)."""
        size, total = 16 * TILE, 0.0
        for r in range(0, x_hat.shape[2], size):
            for c in range(0, x_hat.shape[3], size):
                box = (..., slice(r, r + size), slice(c, c + size))
                keep = target.mask[box] > 0
                total += float(_distortion(x_hat[box], target.x[box], keep, self.settings.msssim_weight))
        return total

    def _exact(self, v: Tensor, target: _Target, level: float, z_symbols: np.ndarray | None = None) -> SearchResult:
        """Round v as the coder does and measure J exactly (the entropy-coded bytes, the fidelity
        decoder's pixels): with these z symbols, or (None) with z re-derived from v by h_a."""
        entropy, comp = self.entropy, self.compressor
        with torch.no_grad():
            y = v / target.gain_y
            if z_symbols is None:
                gain_z = comp.gains(level)[1].float()
                z = comp.z_symbols(y, gain_z)
                z_symbols = z.clamp(-SYMBOL_LIMIT, SYMBOL_LIMIT).to(torch.int32).cpu().numpy()
            symbols, params = entropy.quantise(y, z_symbols, level)
            sections = entropy.encode(symbols, params)
            latent = entropy.synthesise(symbols.y, params, level)
            x_hat = tile_map(self.decoder, latent, EXACT_TILE // 8, PLAIN_HALO, PLAIN_HALO, up=8)
            err = self._tiled_distortion(x_hat, target)
        bits = 8 * sections.payload_bytes
        return SearchResult(symbols, params, (bits + target.lam * 255**2 * err) / target.pixels)


class _StepSynthesis:
    """y_hat (1,M,h,w) -> pixels (1,3,16h,16w): g_s then the fidelity decoder, as the search's steps
    run them: on copies in channels-last (NHWC) layout, whose oneDNN convolutions ran faster
    forward and backward on the 2-core CPU (the same results to float rounding; docs/effort.md).
    Copies, because the codec's own modules decode files and must keep their layout and pixels."""

    def __init__(self, g_s: torch.nn.Module, decoder: torch.nn.Module):
        self.g_s = copy.deepcopy(g_s).to(memory_format=torch.channels_last)
        self.decoder = copy.deepcopy(decoder).to(memory_format=torch.channels_last)

    def __call__(self, y_hat: Tensor) -> Tensor:
        return self.decoder(self.g_s(y_hat.contiguous(memory_format=torch.channels_last)))


@dataclass(frozen=True)
class _State:
    """What a round searches: v = y x gain_y (1,M,h,w), z symbols as floats (1,Z,h/4,w/4), and
    the round's fixed entropy parameters of y (used without joint_z)."""

    v: Tensor
    z: Tensor
    means: Tensor
    scales: Tensor


def _soft_round(r: Tensor, tau: float) -> Tensor:
    """floor(r) + sigmoid((frac(r) - 1/2) / tau): rounding, smoothed by tau (-> 0: hard).

    This maps an integer k to k + sigmoid(-1/(2 tau)) and jumps there (by 0.54 at tau = 0.5).
    The continuous rescaling (Agustsson & Theis 2020: integers stay put) searched far worse
    in a probe on 4 validation photos (not kept: a scratch option, removed again)."""
    floor = torch.floor(r).detach()
    return floor + torch.sigmoid((r - floor - 0.5) / tau)


def _bit_table(tables) -> tuple[Tensor, Tensor]:
    """CDF tables -> ((T, L) -log2 p: column 0 for symbols below the table, then one per bin,
    then the escape bin's bits repeated past each row's end; (T,) the symbol of bin 0, less 1).
    Symbols outside a table cost its escape bin's bits (not the escape payload: a relaxation)."""
    width = int(tables.cdf_length.max())
    out = np.zeros((tables.num_tables, width))
    for t in range(tables.num_tables):
        freq = np.diff(tables.cdf[t, : tables.cdf_length[t]]).astype(np.float64)
        bits = -np.log2(np.maximum(freq, 1) / freq.sum())
        out[t, 0] = out[t, len(bits) + 1 :] = bits[-1]  # the last bin is the escape
        out[t, 1 : len(bits) + 1] = bits
    return torch.from_numpy(out).float(), torch.from_numpy(tables.offset.astype(np.int64) - 1)


def _distortion(x_hat: Tensor, x: Tensor, keep: Tensor, msssim_weight: float) -> Tensor:
    """Summed distortion over the kept pixels (1,1,H,W bool) in MSE units: per pixel (1 - w) x MSE
    + w x MSSSIM_TO_MSE x (1 - MS-SSIM of the kept box), as scripts/train.py's --msssim-weight.
    A box under MSSSIM_MIN_SIDE px a side (too small for 5 scales) counts MSE only."""
    count = keep.sum()
    mse_sum = ((x_hat - x) ** 2 * keep).sum() / 3
    if not msssim_weight or count == 0:
        return mse_sum
    rows, cols = keep[0, 0].any(1).nonzero(), keep[0, 0].any(0).nonzero()
    box = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
    if min(box[0].stop - box[0].start, box[1].stop - box[1].start) < MSSSIM_MIN_SIDE:
        return mse_sum
    from pytorch_msssim import ms_ssim  # only here: most encodes never need it

    sim = ms_ssim(x_hat[..., box[0], box[1]].clamp(0, 1), x[..., box[0], box[1]], data_range=1.0)
    return (1 - msssim_weight) * mse_sum + msssim_weight * MSSSIM_TO_MSE * (1 - sim) * count


def gaussian_bits(residual: Tensor, scales: Tensor) -> Tensor:
    """-log2 P(integer residual) under N(0, scale) over unit bins (CompressAI's GaussianConditional
    likelihood: on the negative side of the curve, where the normal CDF keeps its precision)."""
    r = residual.abs()
    p = torch.special.ndtr((0.5 - r) / scales) - torch.special.ndtr((-0.5 - r) / scales)
    return -torch.log2(p.clamp_min(1e-9))
