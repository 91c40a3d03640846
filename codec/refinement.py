"""The refinement stage: the diffusion prior, loaded on first use, and each level's default settings.

    coarse latent (1,C,h,w) --[steps > 0: the prior's few-step sampling, codec/sampling.py]--> latent
    dpc-v3: coarse latent + y's scales + level --[steps 1: the one-step latent refiner]--> latent

The defaults a file records (sampler, steps, guidance per trained level) live in the prior's
weight file; reading them needs only its metadata, so compressing builds no network.
"""

from pathlib import Path

import torch
from torch import Tensor

from bitstream import RefineSettings

from .errors import InvalidOptionError
from .model_files import DEFAULT_PRIOR_WEIGHTS, load_prior, read_prior_config
from .models.latent_refiner import LatentRefiner
from .models.prior import LatentPrior, PriorConfig
from .options import RunOptions
from .placement import on_device
from .runners import Runners, set_attention
from .tiling import tile_map

# The prior sees a wide context (mid-block attention), so it is tiled only beyond
# 2048 px; its tiles overlap by 32 latent px and carry 32 px of halo.
PRIOR_TILE, PRIOR_HALO, PRIOR_OVERLAP = 256, 32, 32  # latent px


class Refiner:
    """The diffusion prior of one weight file, run under `options` through `runners`."""

    def __init__(self, weights: Path | None, options: RunOptions, runners: Runners):
        self.weights = Path(weights) if weights is not None else DEFAULT_PRIOR_WEIGHTS
        self.options, self.runners = options, runners
        self._prior: LatentPrior | None = None
        self._config: PriorConfig | None = None
        self.sha256 = ""  # of the weight file, once loaded

    @property
    def prior(self) -> LatentPrior:
        """The prior as loaded (fp32, at the options' home device)."""
        if self._prior is None:
            bundle = load_prior(self.weights)
            self._prior, self.sha256 = bundle.prior.to(self.options.home), bundle.sha256
        return self._prior

    @property
    def config(self) -> PriorConfig:
        if self._config is None:
            self._config = self._prior.cfg if self._prior is not None else read_prior_config(self.weights)
        return self._config

    def default(self, nearest: int) -> RefineSettings:
        """The settings measured best for trained quality `nearest` (docs/refinement.md)."""
        cfg = self.config
        return RefineSettings(
            steps=cfg.default_steps[nearest - 1], sampler=cfg.default_sampler, guidance=cfg.default_guidance
        )

    def net(self):
        """The prior's network as it runs (attention kernel, dtype, INT8 as the options say)."""

        def build():
            set_attention(self.prior.unet, self.options.attention)
            return self.prior

        return self.runners.get("prior", build)

    @torch.inference_mode()
    def refine(
        self, coarse: Tensor, nearest: int, settings: RefineSettings, tiled: bool, progress=None, **side
    ) -> Tensor:
        """Coarse latent (1,C,h,w) -> refined latent (unchanged if settings.steps is 0).

        `progress("refine", done, steps)` as it starts and after each sampling step;
        `tiled`: the prior runs on tiles beyond PRIOR_TILE latent px. `side` (the file's scale
        indexes and level, for a latent refiner) is not used: the prior is conditioned on `nearest`.
        """
        if side.get("realism") is not None:
            raise InvalidOptionError("these weights have no realism setting (their prior has none)")
        if settings.steps == 0:
            return coarse
        from .sampling import refine

        if progress is not None:
            progress("refine", 0, settings.steps)
        net = self.net()
        with on_device(net, self.options):
            return refine(
                self.prior,
                coarse,
                nearest - 1,
                settings,
                PRIOR_TILE if tiled else 0,
                PRIOR_HALO,
                PRIOR_OVERLAP,
                None if progress is None else lambda i: progress("refine", i + 1, settings.steps),
                net=net,
            )


def refiner_side(header, params) -> dict:
    """What a latent refiner sees besides the coarse latent, from a file's header and hyper
    parameters: y's scale-table indexes (1,M,h/2,w/2) int32 and the 0-based level."""
    return dict(scale_indexes=params.indexes, level=header.level)


class NoRefiner:
    """The refinement stage of a codec without a refiner for its latent (dpc-v3 weights that have
    none): files record no refinement, and asking for steps is a one-line InvalidOptionError."""

    sha256 = ""
    prior = None

    def default(self, nearest: int) -> RefineSettings:
        return RefineSettings(steps=0)

    def net(self):
        raise InvalidOptionError("these weights have no diffusion prior: refinement is not available")

    def refine(self, coarse: Tensor, nearest: int, settings: RefineSettings, tiled: bool, progress=None, **side):
        if side.get("realism") is not None:
            raise InvalidOptionError("these weights have no realism setting (they have no latent refiner)")
        if settings.steps:
            self.net()
        return coarse


class OneStepRefiner:
    """The refinement stage of a dpc-v3 codec file with a latent refiner (codec/models/latent_refiner.py):

        coarse latent, y's scale-table indexes, the file's 0-based level --one step--> latent

    A file records steps 1 (refine) or 0 (the plain decode of the coarse latent); the refiner is
    deterministic, so the sampler, guidance, seed and start a header carries do not change it.
    Its weights are part of the codec file (covered by its digest), not a file of their own.
    """

    sha256 = ""
    prior = None

    def __init__(self, refiner: LatentRefiner, options: RunOptions, runners: Runners):
        self.refiner, self.options, self.runners = refiner.to(options.home), options, runners

    def default(self, nearest: int) -> RefineSettings:
        return RefineSettings(steps=1)

    def net(self):
        return self.runners.get("refiner", lambda: self.refiner)

    @torch.inference_mode()
    def refine(
        self,
        coarse: Tensor,
        nearest: int,
        settings: RefineSettings,
        tiled: bool,
        progress=None,
        *,
        scale_indexes: Tensor | None = None,
        level: float | None = None,
        realism: float | None = None,
    ) -> Tensor:
        """Coarse latent (1,32,h,w) -> refined latent; `scale_indexes` (1,96,h/2,w/2) and `level`
        (the header's 0-based level) come from the file; `realism` (0..1, None: the weights'
        default) for a refiner with a realism input. Its noise comes from settings.seed, drawn on
        the CPU for the whole latent, so tiles and devices agree. Unchanged with steps 0; tiles
        beyond PRIOR_TILE latent px when `tiled` (local convolutions: the tiles match a whole run)."""
        cfg = self.refiner.cfg
        r = realism_of(cfg, realism)
        if settings.steps == 0:
            return coarse
        if settings.steps != 1:
            raise InvalidOptionError(f"these weights refine in one step: steps must be 0 or 1, got {settings.steps}")
        if scale_indexes is None or level is None:
            raise InvalidOptionError("the latent refiner needs the file's scale indexes and level")
        if progress is not None:
            progress("refine", 0, 1)
        net, c, m = self.net(), coarse.shape[1], scale_indexes.shape[1]
        side = torch.nn.functional.interpolate(scale_indexes.to(coarse.dtype), size=coarse.shape[-2:], mode="nearest")
        inputs = [coarse, side.to(coarse.device)]
        if cfg.noise_channels:
            gen = torch.Generator().manual_seed(settings.seed)
            inputs.append(torch.randn((1, cfg.noise_channels, *coarse.shape[-2:]), generator=gen).to(coarse))
        levels = torch.tensor([float(level)], device=coarse.device)
        realism_in = [torch.tensor([r], device=coarse.device)] if cfg.realism else []
        halo = -(-cfg.receptive_field // 8) * 8  # rounded up to tiling's grid

        def fn(t: Tensor) -> Tensor:  # positional: the runner casts each tensor it is given
            noise = [t[:, c + m :]] if cfg.noise_channels else []
            return net(t[:, :c], t[:, c : c + m], levels, *realism_in, *noise)

        with on_device(net, self.options):
            out = tile_map(fn, torch.cat(inputs, 1), PRIOR_TILE if tiled else 0, 8, halo)
        if progress is not None:
            progress("refine", 1, 1)
        return out


def realism_of(cfg, realism: float | None) -> float:
    """The realism a decode uses: `realism` if given (InvalidOptionError outside 0..1, or for a
    refiner without a realism input), else the weights' default."""
    if realism is None:
        return float(cfg.default_realism)
    if not cfg.realism:
        raise InvalidOptionError("these weights have no realism setting (their refiner has no realism input)")
    if isinstance(realism, bool) or not isinstance(realism, (int, float)) or not 0.0 <= realism <= 1.0:
        raise InvalidOptionError(f"realism must be a number 0..1, got {realism!r}")
    return float(realism)
