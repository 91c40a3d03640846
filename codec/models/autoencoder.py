"""The VAE-style autoencoder whose latent space everything else works in.

    image (B,3,H,W) in [0,1]
        |  Encoder: f = 8 downsampling
        v
    posterior mean/log-variance (B,2C,H/8,W/8)  ->  latent = mean (B,C,H/8,W/8)
        |  Decoder (trained on mean + sigma * noise, so it tolerates small
        v  latent errors such as quantisation or an imperfect diffusion step)
    image (B,3,H,W)

The KL term keeps the latent near N(0, 1) and smooth, which the latent
compressor and the diffusion prior (next stage) both rely on.
"""

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..tiling import tile_map
from .layers import ResBlock, Upsample2x, conv3x3

ENCODE_HALO, ENCODE_OVERLAP = 64, 64  # image px


@dataclass(frozen=True)
class AutoencoderConfig:
    latent_channels: int = 8
    widths: tuple[int, int, int] = (64, 96, 128)  # channels at H/2, H/4, H/8
    factor: int = 8


class Encoder(nn.Module):
    """(B, 3, H, W) in [0, 1] -> (B, 2C, H/8, W/8): latent mean and log-variance."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        w2, w4, w8 = cfg.widths
        self.net = nn.Sequential(
            nn.PixelUnshuffle(2),  # cheap first 2x: full-res convs dominate CPU time
            conv3x3(12, w2),
            nn.SiLU(),
            conv3x3(w2, w4, stride=2),
            ResBlock(w4),
            conv3x3(w4, w8, stride=2),
            ResBlock(w8),
            ResBlock(w8),
            nn.SiLU(),
            conv3x3(w8, 2 * cfg.latent_channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x * 2 - 1)


class Decoder(nn.Module):
    """(B, C, H/8, W/8) latent -> (B, 3, H, W) image, roughly in [0, 1] (not clamped)."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        w2, w4, w8 = cfg.widths
        self.net = nn.Sequential(
            conv3x3(cfg.latent_channels, w8),
            ResBlock(w8),
            ResBlock(w8),
            Upsample2x(w8, w4),
            ResBlock(w4),
            Upsample2x(w4, w2),
            nn.SiLU(),
            conv3x3(w2, w2),
            nn.SiLU(),
            conv3x3(w2, 12),
            nn.PixelShuffle(2),
        )

    def forward(self, latent: Tensor) -> Tensor:
        return (self.net(latent) + 1) / 2


class LatentAutoencoder(nn.Module):
    """Encoder E and decoder D with a diagonal-Gaussian posterior (KL-regularised)."""

    def __init__(self, cfg: AutoencoderConfig = AutoencoderConfig()):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B,3,H,W) -> mean, log-variance, each (B,C,H/8,W/8)."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 10.0)

    def encode(self, x: Tensor) -> Tensor:
        """(B,3,H,W) in [0,1] -> deterministic latent (B,C,H/8,W/8): the posterior mean."""
        return self.posterior(x)[0]

    def encode_tiled(self, x: Tensor, tile: int) -> Tensor:
        """As `encode`, on tiles of `tile` image px (flat memory; 0: whole). The encoder's receptive
        field is under 64 image px, so with that much halo tiles agree with an untiled run."""
        return tile_map(self.encode, x, tile, ENCODE_OVERLAP, ENCODE_HALO, down=self.cfg.factor)

    def decode(self, latent: Tensor) -> Tensor:
        return self.decoder(latent)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Training pass: (reconstruction from a posterior sample, KL per element)."""
        mean, logvar = self.posterior(x)
        sample = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)
        return self.decoder(sample), kl
