"""The refinement stage: the diffusion prior, loaded on first use, and each level's default settings.

    coarse latent (1,C,h,w) --[steps > 0: the prior's few-step sampling, codec/sampling.py]--> latent

The defaults a file records (sampler, steps, guidance per trained level) live in the prior's
weight file; reading them needs only its metadata, so compressing builds no network.
"""

from pathlib import Path

import torch
from torch import Tensor

from bitstream import RefineSettings

from .errors import InvalidOptionError
from .model_files import DEFAULT_PRIOR_WEIGHTS, load_prior, read_prior_config
from .models.prior import LatentPrior, PriorConfig
from .options import RunOptions
from .placement import on_device
from .runners import Runners, set_attention

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
    def refine(self, coarse: Tensor, nearest: int, settings: RefineSettings, tiled: bool, progress=None) -> Tensor:
        """Coarse latent (1,C,h,w) -> refined latent (unchanged if settings.steps is 0).

        `progress("refine", done, steps)` as it starts and after each sampling step;
        `tiled`: the prior runs on tiles beyond PRIOR_TILE latent px.
        """
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


class NoRefiner:
    """The refinement stage of a codec without a diffusion prior for its latent (dpc-v3, for now):
    files record no refinement, and asking for steps is a one-line InvalidOptionError."""

    sha256 = ""
    prior = None

    def default(self, nearest: int) -> RefineSettings:
        return RefineSettings(steps=0)

    def net(self):
        raise InvalidOptionError("these weights have no diffusion prior: refinement is not available")

    def refine(self, coarse: Tensor, nearest: int, settings: RefineSettings, tiled: bool, progress=None) -> Tensor:
        if settings.steps:
            self.net()
        return coarse
