"""The pixel stage: latent (1,C,h,w) -> image tensor (1,3,8h,8w) on overlapping tiles.

    level None  -> the autoencoder's own MSE decoder ("plain": the fidelity end)
    level float -> the perceptual decoder, conditioned on the file's 0-based rate level
                   (codec/models/perceptual_decoder.py), loaded from its weight file on first use

Tiles (codec/tiling.py) carry each decoder's receptive field as halo, so they agree with an
untiled run: under 8 latent px for the MSE decoder, `cfg.receptive_field` for the other.
A codec on TAEF2's latent (dpc-v3) has its own pixel stage, `Taef2Pixels`.
"""

from pathlib import Path

import torch
from torch import Tensor, nn

from .model_files import DEFAULT_DECODER_WEIGHTS, load_decoder
from .models.perceptual_decoder import PerceptualDecoder
from .models.taef2 import DECODER_TAIL_HALO, FACTOR, Taef2Decoder
from .options import RunOptions
from .placement import on_device
from .runners import Runners
from .tiling import tile_map

PLAIN_HALO, OVERLAP = 8, 8  # latent px


class PixelDecoders:
    """The two pixel decoders of a Codec, run under `options` through `runners`."""

    def __init__(self, plain: nn.Module, factor: int, weights: Path | None, options: RunOptions, runners: Runners):
        self.plain, self.factor = plain, factor
        self.weights = Path(weights) if weights is not None else DEFAULT_DECODER_WEIGHTS
        self.options, self.runners = options, runners
        self._perceptual: PerceptualDecoder | None = None
        self.sha256 = ""  # of the perceptual decoder's weight file, once loaded

    @property
    def perceptual(self) -> PerceptualDecoder:
        """The perceptual decoder as loaded (fp32, at the options' home device)."""
        if self._perceptual is None:
            bundle = load_decoder(self.weights)
            self._perceptual, self.sha256 = bundle.decoder.to(self.options.home), bundle.sha256
        return self._perceptual

    def net(self, name: str):
        """ "plain" or "perceptual" as it runs (dtype, layout, INT8 as the options say)."""
        return self.runners.get(name, (lambda: self.plain) if name == "plain" else (lambda: self.perceptual))

    @torch.inference_mode()
    def decode(self, latent: Tensor, tile: int, level: float | None = None, progress=None) -> Tensor:
        """Latent (1,C,h,w) -> image (1,3,8h,8w) on tiles of `tile` image px (0: one piece);
        `progress("pixels", done, tiles)` as it starts and after each tile."""
        if progress is not None:
            progress("pixels", 0, 1)
        if level is None:
            net, halo = self.net("plain"), PLAIN_HALO
            fn = net
        else:
            net, halo = self.net("perceptual"), self.perceptual.cfg.receptive_field
            levels = torch.tensor([float(level)], device=latent.device)
            fn = lambda z: net(z, levels)  # noqa: E731
        f = self.factor
        tiles = None if progress is None else lambda done, total: progress("pixels", done, total)
        with on_device(net, self.options):
            return tile_map(fn, latent, tile // f, OVERLAP, halo, up=f, progress=tiles)


class Taef2Pixels:
    """The pixel stage of a codec on TAEF2's latent.

        level None  -> TAEF2's own decoder ("plain": the fidelity end)
        level float -> the codec file's fine-tuned copy of it ("perceptual"), or TAEF2's own if the
                       file has none

    The GroupNorm blocks run at latent resolution on the whole latent, the upsampling tail on
    tiles with a halo (codec/models/taef2.py), so tiled output matches the whole-image decode.
    """

    def __init__(self, plain: Taef2Decoder, tuned: Taef2Decoder | None, options: RunOptions, runners: Runners):
        self.decoders = {"plain": plain, "perceptual": tuned if tuned is not None else plain}
        self.options, self.runners = options, runners
        self.factor = FACTOR
        self.sha256 = ""  # no separate decoder file: both are covered by the codec file's digest
        self.perceptual = None  # no separate perceptual-decoder file either

    def net(self, name: str, part: str = "tail"):
        """Decoder `name` ("plain" or "perceptual"), its "head" or "tail", as it runs (dtype, layout as
        the options say)."""
        module = _Part(self.decoders[name], part)
        return self.runners.get(f"taef2_{name}_{part}", lambda: module)

    @torch.inference_mode()
    def decode(self, latent: Tensor, tile: int, level: float | None = None, progress=None) -> Tensor:
        """Latent (1,32,h,w) -> image (1,3,8h,8w) on tiles of `tile` image px (0: one piece), by the
        fidelity decoder (level None) or the default one; `progress("pixels", done, tiles)`."""
        if progress is not None:
            progress("pixels", 0, 1)
        name = "plain" if level is None else "perceptual"
        head, tail = self.net(name, "head"), self.net(name, "tail")
        tiles = None if progress is None else lambda done, total: progress("pixels", done, total)
        with on_device(self.decoders[name], self.options):
            feats = head(latent)
            return tile_map(tail, feats, tile // FACTOR, OVERLAP, DECODER_TAIL_HALO, up=FACTOR, progress=tiles)


class _Part(nn.Module):
    """One part ("head" or "tail") of a Taef2Decoder as a module of its own (for a Runner)."""

    def __init__(self, decoder: Taef2Decoder, name: str):
        super().__init__()
        self.decoder, self.name = decoder, name

    def forward(self, x: Tensor) -> Tensor:
        return getattr(self.decoder, self.name)(x)
