"""Where an image sits in the padded canvas that a file codes.

The autoencoder and the entropy model need sides that are multiples of PAD_MULTIPLE (64 px).
Files of format version 5 centre the image in that canvas, with its edges replicated around it;
earlier files put it top-left. A convolution sees zero padding at the canvas edge, and an image
row on that edge decoded much worse than the interior (1 x N images in wrong colours); centred,
the image keeps replicated context on every side wherever the padding allows.

The offset is floored to a multiple of 8 px (one latent pixel), so the image's own latent is a
plain slice of the canvas's: `latent_box`.
"""

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from .options import PAD_MULTIPLE

LATENT_STEP = 8  # image px per latent px of every autoencoder we ship


@dataclass(frozen=True)
class Canvas:
    """An image of `height` x `width` px in its canvas of multiples of `multiple` px."""

    height: int
    width: int
    centred: bool = True
    multiple: int = PAD_MULTIPLE

    @classmethod
    def of_header(cls, header) -> "Canvas":
        """The canvas a .dpc file codes (bitstream.Header: its size and layout)."""
        return cls(header.height, header.width, header.centred)

    @property
    def padded(self) -> tuple[int, int]:
        """(H_pad, W_pad) in px."""
        return -(-self.height // self.multiple) * self.multiple, -(-self.width // self.multiple) * self.multiple

    @property
    def offset(self) -> tuple[int, int]:
        """(top, left) of the image in the canvas, px: 0 for top-left files."""
        if not self.centred:
            return 0, 0
        (hp, wp), step = self.padded, LATENT_STEP
        return (hp - self.height) // 2 // step * step, (wp - self.width) // 2 // step * step

    def pad(self, x: Tensor) -> Tensor:
        """(B,C,height,width) -> (B,C,H_pad,W_pad), the image at `offset`, its edges replicated."""
        (hp, wp), (top, left) = self.padded, self.offset
        return F.pad(x, (left, wp - self.width - left, top, hp - self.height - top), mode="replicate")

    def crop(self, x: Tensor) -> Tensor:
        """(..., H_pad, W_pad) decoded canvas -> (..., height, width) image."""
        top, left = self.offset
        return x[..., top : top + self.height, left : left + self.width]

    def latent_box(self, factor: int = LATENT_STEP) -> tuple[slice, slice]:
        """(rows, cols) of the canvas's latent (1/`factor`) that cover the image's whole factor-px
        blocks: latent[..., rows, cols] pairs with image[: factor * h, : factor * w]."""
        top, left = (v // factor for v in self.offset)
        return slice(top, top + self.height // factor), slice(left, left + self.width // factor)
