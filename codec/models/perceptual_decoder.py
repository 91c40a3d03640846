"""The perceptual pixel decoder: draws a decoded latent as a sharp, plausible image.

The autoencoder's own decoder (the "fidelity" decoder) was trained for MSE: given the
coarse latent of a low rate it draws the mean of every image that latent could stand for,
which is blur. This decoder gets the same latent and the rate level it was coded at, and
was trained (MSE + LPIPS, then a patch discriminator; scripts/train_perceptual_decoder.py)
to draw detail that is plausible for that level instead:

    latent (B,C,h,w) ---------------------------> conv3x3 -> C8 -----------+
    level (B,) 0-based, continuous                                          |
      | LevelEmbedding (MLP)                                                v
      v                                            ResBlocks at h     (B,C8,h,w)     FiLM
    embedding (B,E) ------ per block (scale, shift) -> Upsample2x -> ResBlocks at 2h  FiLM
                                                    -> Upsample2x -> conv at 4h       FiLM
                                                    -> conv -> PixelShuffle -> (B,3,8h,8w)

Every block is the autoencoder decoder's block, at the same index, with a FiLM
modulation of its hidden activations; extra blocks start as the identity and the
modulations start at zero, so before training this is exactly the fidelity decoder.
No normalisation layers (tiles must match an untiled run); the level enters as a
per-image constant, so tiling stays exact given a halo of `receptive_field` latent px.
"""

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from .autoencoder import AutoencoderConfig, Decoder
from .layers import conv3x3


@dataclass(frozen=True)
class PerceptualDecoderConfig:
    latent_channels: int = 8
    widths: tuple[int, int, int] = (64, 96, 128)  # channels at H/2, H/4, H/8 (the autoencoder's)
    blocks: tuple[int, int] = (4, 2)  # ResBlocks at H/8 and at H/4 (the autoencoder decoder has 2 and 1)
    embed_dim: int = 64
    level_scale: float = 4.0  # levels are divided by this before the embedding
    # 0-based levels the training covered (the rate scale: qualities -3..8).
    trained_levels: tuple[float, float] = (-4.0, 7.0)

    @staticmethod
    def from_dict(d: dict) -> "PerceptualDecoderConfig":
        d = dict(d)
        for key in ("widths", "blocks", "trained_levels"):
            if key in d:
                d[key] = tuple(d[key])
        return PerceptualDecoderConfig(**d)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def receptive_field(self) -> int:
        """Latent px of context each output pixel depends on (the tiling halo must cover it)."""
        n8, n4 = self.blocks
        convs_h8 = 1 + 2 * n8 + 1  # in-conv, blocks, the first upsampling conv
        convs_h4 = 2 * n4 + 1
        convs_h2 = 2
        return math.ceil(convs_h8 + convs_h4 / 2 + convs_h2 / 4)


class LevelEmbedding(nn.Module):
    """(B,) 0-based rate levels (float) -> (B, E) features."""

    def __init__(self, dim: int, scale: float):
        super().__init__()
        self.scale = scale
        self.net = nn.Sequential(nn.Linear(1, dim), nn.SiLU(), nn.Linear(dim, dim), nn.SiLU())

    def forward(self, level: Tensor) -> Tensor:
        return self.net(level.reshape(-1, 1) / self.scale)


class ModulatedResBlock(nn.Module):
    """(B,C,H,W) -> (B,C,H,W): x + conv(SiLU(FiLM(conv(SiLU(x))))), FiLM from the level embedding."""

    def __init__(self, channels: int, embed_dim: int):
        super().__init__()
        self.conv1 = conv3x3(channels, channels)
        self.conv2 = conv3x3(channels, channels)
        self.film = nn.Linear(embed_dim, 2 * channels)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.conv1(nn.functional.silu(x)) * (1 + scale) + shift
        return x + self.conv2(nn.functional.silu(h))


class PerceptualDecoder(nn.Module):
    """(B, C, h, w) latent + (B,) level -> (B, 3, 8h, 8w) image, roughly in [0, 1] (not clamped)."""

    def __init__(self, cfg: PerceptualDecoderConfig = PerceptualDecoderConfig()):
        super().__init__()
        self.cfg = cfg
        w2, w4, w8 = cfg.widths
        n8, n4 = cfg.blocks
        e = cfg.embed_dim
        self.embed = LevelEmbedding(e, cfg.level_scale)
        self.conv_in = conv3x3(cfg.latent_channels, w8)
        self.blocks8 = nn.ModuleList(ModulatedResBlock(w8, e) for _ in range(n8))
        self.up4 = nn.Sequential(conv3x3(w8, 4 * w4), nn.PixelShuffle(2))
        self.blocks4 = nn.ModuleList(ModulatedResBlock(w4, e) for _ in range(n4))
        self.up2 = nn.Sequential(conv3x3(w4, 4 * w2), nn.PixelShuffle(2))
        self.conv2 = conv3x3(w2, w2)
        self.film2 = nn.Linear(e, 2 * w2)
        nn.init.zeros_(self.film2.weight)
        nn.init.zeros_(self.film2.bias)
        self.conv_out = conv3x3(w2, 12)
        self.out = nn.PixelShuffle(2)

    def forward(self, latent: Tensor, level: Tensor | float) -> Tensor:
        if not torch.is_tensor(level):
            level = torch.tensor([float(level)])
        level = level.to(latent.device, latent.dtype).reshape(-1).expand(latent.shape[0])
        emb = self.embed(level)
        h = self.conv_in(latent)
        for block in self.blocks8:
            h = block(h, emb)
        h = self.up4(h)
        for block in self.blocks4:
            h = block(h, emb)
        h = self.conv2(nn.functional.silu(self.up2(h)))
        scale, shift = self.film2(emb)[:, :, None, None].chunk(2, dim=1)
        h = h * (1 + scale) + shift
        x = self.out(self.conv_out(nn.functional.silu(h)))
        return (x + 1) / 2

    @staticmethod
    def from_fidelity_decoder(decoder: Decoder, cfg: PerceptualDecoderConfig) -> "PerceptualDecoder":
        """A perceptual decoder that computes exactly what `decoder` does (before any training).

        The autoencoder decoder's blocks are copied to the same places; the extra blocks get
        a zero second convolution (identity) and every FiLM starts at zero.
        """
        ae: AutoencoderConfig = decoder.cfg if hasattr(decoder, "cfg") else None
        net = decoder.net
        model = PerceptualDecoder(cfg)
        if ae is not None and (ae.widths != cfg.widths or ae.latent_channels != cfg.latent_channels):
            raise ValueError("the perceptual decoder's widths must be the autoencoder's")
        with torch.no_grad():
            model.conv_in.load_state_dict(net[0].state_dict())
            donors8, donors4 = [net[1], net[2]], [net[4]]
            for blocks, donors in ((model.blocks8, donors8), (model.blocks4, donors4)):
                for i, block in enumerate(blocks):
                    if i < len(donors):
                        body = donors[i].body  # SiLU, conv, SiLU, conv
                        block.conv1.load_state_dict(body[1].state_dict())
                        block.conv2.load_state_dict(body[3].state_dict())
                    else:
                        nn.init.zeros_(block.conv2.weight)
                        nn.init.zeros_(block.conv2.bias)
            model.up4[0].load_state_dict(net[3].conv.state_dict())
            model.up2[0].load_state_dict(net[5].conv.state_dict())
            model.conv2.load_state_dict(net[7].state_dict())
            model.conv_out.load_state_dict(net[9].state_dict())
        return model
