"""Where an image sits in the padded canvas that a file codes.

The autoencoder and the entropy model need sides that are multiples of PAD_MULTIPLE (64 px).
Up to format version 4 the image sat at the canvas's top left and the padding replicated its
right and bottom edges. A convolution sees zero padding at the canvas edge, and what lies on it
decodes much worse than the interior: a 1 x 1 or 1 x N image lies wholly on it and came back in
wrong colours. Version 5 files (layout bit "centred") centre the image, the padding replicating
its edges on every side, in a canvas whose sides are also at least MIN_SIDE.

Sides that are already multiples of 64 get no padding, so their edges stay on the canvas edge
(the outer 8 px of Kodak images: 4-5 dB PSNR under the interior on average). A margin of 8 px would fix that, but it
costs another 64 px per side: on 16 validation photos cropped to 448 x 320 it cost BD-rate LPIPS
+13.9 %, DISTS +19.2 %, PSNR +8.1 % (docs/reliability.md), so files do not keep one.

The offset is floored to a multiple of 8 px (one latent pixel), so the image's own latent is a
plain slice of the canvas's: `latent_box`. Torch is imported only to pad (codec/shipped.py
sizes canvases before any model loads).
"""

from dataclasses import dataclass

from .options import PAD_MULTIPLE

LATENT_STEP = 8  # image px per latent px of every autoencoder we ship
# Centred canvases have sides of at least this: in a 64 px canvas a tiny image (1 x 1, 1 x N) is
# never more than 32 px from the edge, and still decoded worse than a flat image's interior.
MIN_SIDE = 128


@dataclass(frozen=True)
class Canvas:
    """An image of `height` x `width` px in its canvas of multiples of `multiple` px; by default as
    new files place it (centred)."""

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
        m, least = self.multiple, MIN_SIDE if self.centred else 0
        return tuple(max(-(-side // m) * m, least) for side in (self.height, self.width))

    @property
    def offset(self) -> tuple[int, int]:
        """(top, left) of the image in the canvas, px: 0 for top-left files."""
        if not self.centred:
            return 0, 0
        (hp, wp), step = self.padded, LATENT_STEP
        return (hp - self.height) // 2 // step * step, (wp - self.width) // 2 // step * step

    def pad(self, x):
        """(B,C,height,width) tensor -> (B,C,H_pad,W_pad), the image at `offset`, its edges replicated."""
        import torch.nn.functional as F

        (hp, wp), (top, left) = self.padded, self.offset
        return F.pad(x, (left, wp - self.width - left, top, hp - self.height - top), mode="replicate")

    def crop(self, x):
        """(..., H_pad, W_pad) decoded canvas -> (..., height, width) image (a view)."""
        top, left = self.offset
        return x[..., top : top + self.height, left : left + self.width]

    def latent_box(self, factor: int = LATENT_STEP) -> tuple[slice, slice]:
        """(rows, cols) of the canvas's latent (1/`factor`) that cover the image's whole factor-px
        blocks: latent[..., rows, cols] pairs with image[: factor * h, : factor * w]."""
        top, left = (v // factor for v in self.offset)
        return slice(top, top + self.height // factor), slice(left, left + self.width // factor)
