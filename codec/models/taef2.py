"""TAEF2: a tiny autoencoder of the FLUX.2 latent space (weights: MIT, Ollin Boer Bohan; see
codec/weights/TAEF2_LICENSE). Written here from the layout of its state dict; the module
indices of the two `nn.Sequential`s are the weight files' key prefixes.

    image (B,3,H,W) in [0,1]
      | Taef2Encoder: conv, block, 3 x [conv stride 2, 3 blocks]   (the last 3 blocks: + pool branch)
      v
    latent (B,32,H/8,W/8), roughly in [-3, 3]
      | Taef2Decoder.head: 3 tanh(x/3), conv, ReLU, 3 blocks with the pool branch  (latent resolution)
      v
    features (B,64,H/8,W/8)
      | Taef2Decoder.tail: 3 x [nearest x2, conv, (3 blocks | 1 block)], conv 64 -> 3
      v
    image (B,3,H,W), about [0,1] (callers clamp)

The pool branch's GroupNorm normalises over the whole feature map, so it couples every
position of the latent: a tile would see other statistics than the whole image. Both sides
therefore split where the GroupNorm blocks start: the part with GroupNorm runs at latent
resolution on the whole map (64 floats per latent position, about a third of the decoded
image's memory), the expensive full-resolution part has none and runs on tiles
(`decode_tiled`, `encode_tiled`), which then match a whole-image run.
"""

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from ..tiling import tile_map

LATENT_CHANNELS, WIDTH, POOL_WIDTH, FACTOR = 32, 64, 256, 8
# Receptive field of the tiled parts, in latent px (decoder tail) and image px (encoder stem),
# rounded up: the halo that makes a tile agree with the whole image.
DECODER_TAIL_HALO = 8  # latent px: 14 convs at growing resolution, about 6 latent px
ENCODER_STEM_HALO = 64  # image px: 10 convs, 3 of stride 2, about 52 image px


def _through(layers: list[nn.Module], x: Tensor) -> Tensor:
    """x through `layers` in order (a slice of a Sequential, without building a new one)."""
    for layer in layers:
        x = layer(x)
    return x


def _conv(c_in: int, c_out: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=bias)


def _pool() -> nn.Sequential:
    """(B,64,h,w) -> (B,64,h,w): 1x1 up to 256, GroupNorm over the whole map, ReLU, 1x1 down."""
    return nn.Sequential(
        nn.Conv2d(WIDTH, POOL_WIDTH, 1, bias=False),
        nn.GroupNorm(4, POOL_WIDTH),
        nn.ReLU(),
        nn.Conv2d(POOL_WIDTH, WIDTH, 1, bias=False),
    )


class Block(nn.Module):
    """(B,64,h,w) -> (B,64,h,w): ReLU(x + 3 convs(x)), with x first moved by the pool branch if any."""

    def __init__(self, pooled: bool = False):
        super().__init__()
        self.conv = nn.Sequential(_conv(WIDTH, WIDTH), nn.ReLU(), _conv(WIDTH, WIDTH), nn.ReLU(), _conv(WIDTH, WIDTH))
        if pooled:
            self.pool = _pool()

    def forward(self, x: Tensor) -> Tensor:
        if hasattr(self, "pool"):
            x = x + self.pool(x)
        return torch.relu(self.conv(x) + x)


class Squash(nn.Module):
    """Latent -> 3 tanh(latent / 3): bounds what a decoder is handed (as the weights expect)."""

    def forward(self, x: Tensor) -> Tensor:
        return 3 * torch.tanh(x / 3)


class Taef2Encoder(nn.Sequential):
    """Image (B,3,H,W) in [0,1], H and W multiples of 8 -> latent (B,32,H/8,W/8)."""

    STEM = 11  # layers before the first GroupNorm block

    def __init__(self):
        layers = [_conv(3, WIDTH), Block()]
        for stage in range(3):
            layers += [_conv(WIDTH, WIDTH, stride=2, bias=False)] + [Block(pooled=stage == 2) for _ in range(3)]
        super().__init__(*layers, _conv(WIDTH, LATENT_CHANNELS))

    def stem(self, x: Tensor) -> Tensor:
        """Image (B,3,H,W) -> features (B,64,H/8,W/8): local, no GroupNorm (tileable)."""
        return _through(list(self)[: self.STEM], x)

    def neck(self, x: Tensor) -> Tensor:
        """Stem features (B,64,h,w) -> latent (B,32,h,w): the GroupNorm blocks, whole map."""
        return _through(list(self)[self.STEM :], x)

    def encode_tiled(self, x: Tensor, tile: int, overlap: int = 64) -> Tensor:
        """As `forward`, with the stem on tiles of `tile` image px (multiples of 8; 0: whole)."""
        feats = tile_map(self.stem, x, tile, overlap, ENCODER_STEM_HALO, down=FACTOR, out_channels=WIDTH)
        return self.neck(feats)


class Taef2Decoder(nn.Sequential):
    """Latent (B,32,h,w) -> image (B,3,8h,8w), about [0,1] (not clamped)."""

    HEAD = 6  # squash, conv, ReLU, 3 GroupNorm blocks

    def __init__(self):
        layers = [Squash(), _conv(LATENT_CHANNELS, WIDTH), nn.ReLU()]
        for stage in range(3):
            layers += [Block(pooled=stage == 0) for _ in range(3)]
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), _conv(WIDTH, WIDTH, bias=False)]
        super().__init__(*layers, Block(), _conv(WIDTH, 3))

    def head(self, latent: Tensor) -> Tensor:
        """Latent (B,32,h,w) -> features (B,64,h,w): the GroupNorm blocks, whole map."""
        return _through(list(self)[: self.HEAD], latent)

    def tail(self, feats: Tensor) -> Tensor:
        """Features (B,64,h,w) -> image (B,3,8h,8w): local, no GroupNorm (tileable)."""
        return _through(list(self)[self.HEAD :], feats)

    def decode_tiled(self, latent: Tensor, tile: int, overlap: int = 8, progress=None) -> Tensor:
        """As `forward`, with the tail on tiles of `tile` latent px (0: whole); `progress(done, total)`."""
        return tile_map(self.tail, self.head(latent), tile, overlap, DECODER_TAIL_HALO, up=FACTOR, progress=progress)


@dataclass(frozen=True)
class Taef2Config:
    """Fixed by the pretrained weights; recorded in the weight file so that a file is self-describing."""

    latent_channels: int = LATENT_CHANNELS
    factor: int = FACTOR

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Taef2Config":
        cfg = cls(**d)
        if cfg != cls():
            raise ValueError(f"TAEF2 has a {LATENT_CHANNELS}-channel latent at 1/{FACTOR}, not {d}")
        return cfg


class Taef2(nn.Module):
    """Both halves, as one weight file holds them (keys `encoder.*`, `decoder.*`)."""

    def __init__(self, cfg: Taef2Config = Taef2Config()):
        super().__init__()
        self.cfg = cfg
        self.encoder = Taef2Encoder()
        self.decoder = Taef2Decoder()
        # A codec file may carry a copy of the decoder fine-tuned on its coarse latents (set by
        # codec.model_files.load_model); `decoder` stays TAEF2's own.
        self.tuned: Taef2Decoder | None = None

    def encode_tiled(self, x: Tensor, tile: int) -> Tensor:
        """Image (1,3,H,W) in [0,1] -> latent (1,32,H/8,W/8), the stem on tiles of `tile` image px."""
        return self.encoder.encode_tiled(x, tile)
