"""Small building blocks shared by the autoencoder and the compressor.

No normalisation layers anywhere: GroupNorm statistics would depend on the
tile a decoder sees, and tiled decoding (large images) must match untiled.
"""

from torch import Tensor, nn


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)


class ResBlock(nn.Module):
    """(B, C, H, W) -> (B, C, H, W): two 3x3 convs with a SiLU, plus the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.SiLU(), conv3x3(channels, channels), nn.SiLU(), conv3x3(channels, channels))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class Upsample2x(nn.Module):
    """(B, C_in, H, W) -> (B, C_out, 2H, 2W) by a conv and a pixel shuffle (no checkerboard)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = conv3x3(c_in, 4 * c_out)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: Tensor) -> Tensor:
        return self.shuffle(self.conv(x))
