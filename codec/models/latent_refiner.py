"""A one-step latent refiner for the codec on TAEF2's latent (dpc-v3): the coarse latent that the
entropy stage decodes, moved towards latents that the pixel decoder draws well.

    coarse latent (B,32,h,w) ---------------------------------------+
    y's scale-table indexes (B,96,h/2,w/2), / 63, nearest x2 -> 1x1 -+-> concat -> conv 3x3
    realism r x noise (B,noise_channels,h,w), N(0,1) ----------------+            |
    level (B,) 0-based, continuous [, realism r (B,) in 0..1] -> MLP -> a scale   |
                                                       and shift per block        |
                                                                                  v
                                       `blocks` x [SiLU, conv, FiLM(level), SiLU, conv] + skip
                                                                              v
                         coarse latent + conv 3x3 (zero at initialisation) -> refined latent (B,32,h,w)

Why these inputs: the coarse latent alone does not say how much was lost where. The hyperprior's
scales do (they are already decoded from the file), and the level says how coarse the whole
picture is. The scales enter as their integer table indexes, exact on every device, never as
the floats they were snapped from. The output conv starts at zero, so an untrained refiner is the
identity and training starts from the plain decode.

The realism input (a config with `realism=True`) is one network for a range of trade-offs, as in
multi-realism compression (Agustsson et al., CVPR 2023): trained with r drawn per crop and the
adversarial term weighted by r, r = 0 asks for the lowest distortion and r = 1 for the most
realistic picture. With `noise_channels` > 0 it also sees Gaussian noise scaled by r, so r = 0 is
deterministic and higher r may draw different texture per seed. `grown` turns a refiner without
these inputs into one with them that computes the same function (the new weights start at zero),
and `deepened` one with more blocks (each new block's last conv starts at zero: an identity).

All convolutions are local: the receptive field is `cfg.receptive_field` latent px, the halo that lets
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
    realism: bool = False  # the MLP also hears a realism r in 0..1 (see the module docstring)
    noise_channels: int = 0  # Gaussian noise x r, concatenated with the inputs
    default_realism: float = 0.0  # the r a decode uses unless told otherwise (chosen on validation)

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
        self.stem = conv3x3(cfg.latent_channels + side + cfg.noise_channels, w)
        self.level_mlp = nn.Sequential(
            nn.Linear(2 if cfg.realism else 1, 64), nn.SiLU(), nn.Linear(64, 2 * w * cfg.blocks)
        )
        self.blocks = nn.ModuleList(FilmBlock(w) for _ in range(cfg.blocks))
        self.head = conv3x3(w, cfg.latent_channels)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        nn.init.zeros_(self.level_mlp[-1].weight)
        nn.init.zeros_(self.level_mlp[-1].bias)

    def forward(
        self, coarse: Tensor, scale_indexes: Tensor, level: Tensor, realism: Tensor | None = None, noise=None
    ) -> Tensor:
        """coarse (B,32,h,w); scale_indexes (B,96,h/2,w/2) integers 0..63 (any dtype) or already
        upsampled to (B,96,h,w); level (B,) float, 0-based on the compressor's scale; with a
        realism input: realism (B,) in 0..1 and noise (B,noise_channels,h,w) standard normal (the
        refiner scales it by realism) -> (B,32,h,w)."""
        cfg = self.cfg
        side = scale_indexes.to(coarse.dtype) / (SCALE_INDEXES - 1)
        if side.shape[-2:] != coarse.shape[-2:]:
            side = F.interpolate(side, size=coarse.shape[-2:], mode="nearest")
        inputs = [coarse, self.side(side)]
        t = (level.to(coarse.dtype) / max(cfg.levels - 1, 1))[:, None]
        if cfg.realism:
            if realism is None:
                raise ValueError("this refiner needs a realism (B,) in 0..1")
            r = realism.to(coarse.dtype)[:, None]
            t = torch.cat([t, r], dim=1)
            if cfg.noise_channels:
                if noise is None or noise.shape[1] != cfg.noise_channels:
                    raise ValueError(f"this refiner needs noise (B,{cfg.noise_channels},h,w)")
                inputs.append(noise.to(coarse.dtype) * r[:, :, None, None])
        x = self.stem(torch.cat(inputs, dim=1))
        films = self.level_mlp(t).chunk(cfg.blocks, dim=1)
        for block, film in zip(self.blocks, films, strict=True):
            x = block(x, film)
        return coarse + self.head(F.silu(x))

    def grown(self, realism: bool = True, noise_channels: int = 0) -> "LatentRefiner":
        """A refiner with a realism input (and noise) that computes this one's function at every
        realism: the stem's noise weights and the MLP's realism column start at zero."""
        cfg = RefinerConfig(**(self.cfg.to_dict() | dict(realism=realism, noise_channels=noise_channels)))
        new = LatentRefiner(cfg)
        state = self.state_dict()
        old_in = self.stem.weight.shape[1]
        stem = torch.zeros_like(new.stem.weight)
        stem[:, :old_in] = state["stem.weight"]
        state["stem.weight"] = stem
        mlp = torch.zeros_like(new.level_mlp[0].weight)
        mlp[:, : self.level_mlp[0].weight.shape[1]] = state["level_mlp.0.weight"]
        state["level_mlp.0.weight"] = mlp
        new.load_state_dict(state)
        return new

    def deepened(self, blocks: int) -> "LatentRefiner":
        """A refiner with `blocks` blocks (at least this one's) that computes this one's function:
        the new blocks come after the old ones, each an identity because its second conv is zero
        (their FiLM rows start at zero too). The receptive field grows by 2 latent px a block."""
        if blocks < self.cfg.blocks:
            raise ValueError(f"cannot deepen a {self.cfg.blocks}-block refiner to {blocks} blocks")
        new = LatentRefiner(RefinerConfig(**(self.cfg.to_dict() | dict(blocks=blocks))))
        state = self.state_dict()
        for i in range(self.cfg.blocks, blocks):
            block = new.blocks[i]
            nn.init.zeros_(block.conv2.weight)
            nn.init.zeros_(block.conv2.bias)
            state |= {f"blocks.{i}.{k}": v for k, v in block.state_dict().items()}
        for k in ("weight", "bias"):  # the MLP's output: a (scale, shift) pair per block, in block order
            rows = torch.zeros_like(getattr(new.level_mlp[-1], k))
            old = state[f"level_mlp.2.{k}"]
            rows[: old.shape[0]] = old
            state[f"level_mlp.2.{k}"] = rows
        new.load_state_dict(state)
        return new
