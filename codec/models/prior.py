"""The diffusion prior: a conditional latent diffusion model that refines the coarse latent.

At low rates the entropy decoder's latent `coarse` (B,C,H/8,W/8) is a smooth
estimate of the autoencoder latent `latent`; decoding it gives blur. The prior
models the missing part, the residual `latent - coarse`, conditioned on
`coarse` and on the quality level, so sampling it puts back plausible detail:

    coarse ----------------------------------------------+---------------> latent_hat
      | / latent_scale (condition)                       ^
      v                                                  | x residual_scales[level]
    UNet2DModel([noisy residual | condition], t, level)  |
      -> v-prediction -> scheduler step -> ... -> residual (unit variance)

Working on the residual, normalised per level to unit variance, means that
0 steps is exactly the plain decoder, and that the model spends its capacity
on texture rather than on re-learning what the hyperprior already sends.

Class label 0 is "no condition": in training the condition (coarse latent and
level) is dropped with some probability, which classifier-free guidance uses.
"""

from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from bitstream import SAMPLERS

BETA_SCHEDULES = {"cosine": "squaredcos_cap_v2", "linear": "linear"}


# The texture head (decoder layers that shipped inside the prior file for refined latents) was
# retired: the perceptual decoder draws every latent. Its config keys and its `texture.*`
# tensors stay in dpc-prior-v1.safetensors, whose bytes (and SHA-256) do not change; they are
# skipped on load.
RETIRED_KEYS = ("texture_from", "texture_widths")
RETIRED_TENSORS = "texture."


@dataclass(frozen=True)
class PriorConfig:
    latent_channels: int = 8
    levels: int = 6
    widths: tuple[int, ...] = (32, 64, 128)  # UNet channels at H/8, H/16, H/32 (image px)
    layers_per_block: int = 1
    attention_head_dim: int = 32  # attention only in the mid block, at the lowest resolution
    norm_groups: int = 16
    train_timesteps: int = 1000
    schedule: str = "cosine"  # key of BETA_SCHEDULES
    prediction_type: str = "v_prediction"
    latent_scale: float = 1.0  # std of autoencoder latents: the condition is divided by it
    residual_scales: tuple[float, ...] = (1.0,) * 6  # std of latent - coarse, per level
    # Decode defaults per level (written into each file's header by the encoder).
    default_steps: tuple[int, ...] = (4,) * 6
    default_sampler: str = "ddim"
    default_guidance: float = 1.0

    def __post_init__(self):
        if self.schedule not in BETA_SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}")
        if len(self.residual_scales) != self.levels or len(self.default_steps) != self.levels:
            raise ValueError("residual_scales and default_steps need one entry per level")
        if self.default_sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.default_sampler!r}")

    @staticmethod
    def from_dict(d: dict) -> "PriorConfig":
        d = dict(d)
        for key in RETIRED_KEYS:  # the shipped prior file still records its retired texture head
            d.pop(key, None)
        for key in ("widths", "residual_scales", "default_steps"):
            if key in d:
                d[key] = tuple(d[key])
        return PriorConfig(**d)

    def to_dict(self) -> dict:
        return asdict(self)


class LatentPrior(nn.Module):
    """diffusers UNet2DModel on [noisy normalised residual | normalised coarse latent]."""

    def __init__(self, cfg: PriorConfig = PriorConfig()):
        super().__init__()
        # Imported here: diffusers pulls in much of its package at import time, and only
        # decoding with refinement (or training) needs it.
        from diffusers import UNet2DModel

        self.cfg = cfg
        n = len(cfg.widths)
        self.unet = UNet2DModel(
            sample_size=32,
            in_channels=2 * cfg.latent_channels,
            out_channels=cfg.latent_channels,
            block_out_channels=cfg.widths,
            down_block_types=("DownBlock2D",) * n,
            up_block_types=("UpBlock2D",) * n,
            layers_per_block=cfg.layers_per_block,
            add_attention=True,  # mid block only: SDPA over (H/32)*(W/32) tokens
            attention_head_dim=cfg.attention_head_dim,
            norm_num_groups=cfg.norm_groups,
            num_class_embeds=cfg.levels + 1,
        )

    def condition(self, coarse: Tensor) -> Tensor:
        """Coarse latent (B,C,h,w) -> the UNet's condition channels (unit-variance scale)."""
        return coarse / self.cfg.latent_scale

    def residual_scale(self, level: int) -> float:
        return float(self.cfg.residual_scales[level])

    def forward(self, noisy: Tensor, timesteps: Tensor, condition: Tensor, labels: Tensor) -> Tensor:
        """noisy (B,C,h,w), timesteps (B,), condition (B,C,h,w), labels (B,) in 0..levels
        (0 = unconditional, else level + 1) -> v-prediction (B,C,h,w)."""
        x = torch.cat([noisy, condition], dim=1)
        return self.unet(x, timesteps, class_labels=labels).sample


@dataclass
class PriorBundle:
    prior: LatentPrior
    sha256: str
    info: dict = field(default_factory=dict)
