"""A one-step latent refiner for the codec on TAEF2's latent (dpc-v3): the coarse latent that the
entropy stage decodes, moved towards latents that the pixel decoder draws well.

    coarse latent (B,32,h,w) ---------------------------------------+
    y's scale-table indexes (B,96,h/2,w/2), / 63, nearest x2 -> 1x1 -+-> concat -> conv 3x3
    level (B,) 0-based, continuous -> MLP -> a scale and shift per block      |
                                                                              v
                                       `blocks` x [SiLU, conv, FiLM(level), SiLU, conv] + skip
                                                                              v
                         coarse latent + conv 3x3 (zero at initialisation) -> refined latent (B,32,h,w)

Why these inputs: the coarse latent alone does not say how much was lost where. The hyperprior's
scales do (they are already decoded from the file), and the level says how coarse the whole
picture is. The scales enter as their integer table indexes, exact on every device, never as
the floats they were snapped from. The output conv starts at zero, so an untrained refiner is the
identity and training starts from the plain decode.

All convolutions are local: the receptive field is RECEPTIVE_FIELD latent px, the halo that lets
tiles agree with a whole-latent run. No normalisation layers (tiles must match).
"""

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import conv3x3

SCALE_INDEXES = 64  # entries of the y scale table (codec/entropy/compressor.py SCALE_LEVELS)


@dataclass(frozen=True)
class RefinerConfig:
    latent_channels: int = 32
    side_channels: int = 96  # y's channels, whose scale indexes the refiner sees
    width: int = 96
    blocks: int = 4
    levels: int = 6  # trained levels of the compressor; the level input is divided by levels - 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RefinerConfig":
        return cls(**d)

    @property
    def receptive_field(self) -> int:
        """Latent px each side that one output position depends on (3x3 convs: 1 each)."""
        return 2 + 2 * self.blocks


class FilmBlock(nn.Module):
    """(B,W,h,w), per-sample (B,2W) scale and shift -> (B,W,h,w): x + conv(FiLM(conv(x)))."""

    def __init__(self, width: int):
        super().__init__()
        self.conv1, self.conv2 = conv3x3(width, width), conv3x3(width, width)

    def forward(self, x: Tensor, film: Tensor) -> Tensor:
        scale, shift = film[:, :, None, None].chunk(2, dim=1)
        h = self.conv1(F.silu(x))
        h = h * (1 + scale) + shift
        return x + self.conv2(F.silu(h))


class LatentRefiner(nn.Module):
    """Coarse latent, y's scale indexes and the level -> refined latent (see the module docstring)."""

    def __init__(self, cfg: RefinerConfig = RefinerConfig()):
        super().__init__()
        self.cfg = cfg
        w, side = cfg.width, 16
        self.side = nn.Conv2d(cfg.side_channels, side, 1)
        self.stem = conv3x3(cfg.latent_channels + side, w)
        self.level_mlp = nn.Sequential(nn.Linear(1, 64), nn.SiLU(), nn.Linear(64, 2 * w * cfg.blocks))
        self.blocks = nn.ModuleList(FilmBlock(w) for _ in range(cfg.blocks))
        self.head = conv3x3(w, cfg.latent_channels)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        nn.init.zeros_(self.level_mlp[-1].weight)
        nn.init.zeros_(self.level_mlp[-1].bias)

    def forward(self, coarse: Tensor, scale_indexes: Tensor, level: Tensor) -> Tensor:
        """coarse (B,32,h,w); scale_indexes (B,96,h/2,w/2) integers 0..63 (any dtype) or already
        upsampled to (B,96,h,w); level (B,) float, 0-based on the compressor's scale -> (B,32,h,w)."""
        side = scale_indexes.to(coarse.dtype) / (SCALE_INDEXES - 1)
        if side.shape[-2:] != coarse.shape[-2:]:
            side = F.interpolate(side, size=coarse.shape[-2:], mode="nearest")
        x = self.stem(torch.cat([coarse, self.side(side)], dim=1))
        t = (level.to(coarse.dtype) / max(self.cfg.levels - 1, 1))[:, None]
        films = self.level_mlp(t).chunk(self.cfg.blocks, dim=1)
        for block, film in zip(self.blocks, films, strict=True):
            x = block(x, film)
        return coarse + self.head(F.silu(x))
