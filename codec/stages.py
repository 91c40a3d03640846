"""The codec's stages one at a time, for scripts, tests and evaluation (`Codec.stages`).

    s = codec.stages
    symbols = s.analyse(image, quality)             # image -> the integers compress() codes
    header, latent = s.decode_latent(data)          # bytes -> coarse latent (1,C,H_pad/8,W_pad/8)
    latent = s.refine_latent(latent, header.quality, header.refine)
    x = s.decode_pixels(latent, level=header.level) # latent -> (1,3,H_pad,W_pad) in [0,1]

Each bytes-side method reads the header once and decodes with the weights the file names (the
loaded ones, or an older shipped model's), exactly as `Codec.decompress` does.
"""

import torch

from bitstream import Header, RatePoint, RefineSettings

from .entropy import Symbols
from .errors import CodecError
from .options import DEFAULT_TILE, check_tile
from .quality_scale import DEFAULT_QUALITY
from .refinement import refiner_side


class Stages:
    """Tool-side access to one `Codec`'s stages; holds nothing but the codec."""

    def __init__(self, codec):
        self.codec = codec

    def runner(self, name: str):
        """A decoding model ("prior", "perceptual", "plain") as it runs under the codec's options."""
        c = self.codec
        return c.refiner.net() if name == "prior" else c.pixels.net(name)

    @torch.inference_mode()
    def analyse(self, image, quality: float = DEFAULT_QUALITY) -> Symbols:
        """Image -> the integer symbols compress() entropy-codes."""
        c = self.codec
        return c.entropy.analyse(c.encode(image), c.rates.point(quality).level)[0]

    def write_symbols(self, header: Header, symbols: Symbols) -> bytes:
        """Symbols -> a .dpc file, as compress() writes them (the inverse of decode_symbols; fuzzing, tests),
        with the weights the header's model id names (these, or an older shipped model's)."""
        codec = self.codec._for_model(header.model_id)
        params = codec.entropy.parameters(symbols, header.level)
        return codec.format.write(header, codec.entropy.encode(symbols, params))

    @torch.inference_mode()
    def latent_pairs(self, image, qualities=None) -> tuple[torch.Tensor, dict]:
        """Image -> (autoencoder latent, {quality: the coarse latent decompress() reconstructs}),
        both (1,C,H_pad/8,W_pad/8), without the (lossless) bytes in between (training, evaluation)."""
        c = self.codec
        latent = c.encode(image)
        points = {q: c.rates.point(q).level for q in qualities or c.qualities}
        coarse = c.entropy.forward(latent, sorted(set(points.values())))
        return latent, {q: coarse[level] for q, level in points.items()}

    @torch.inference_mode()
    def decode_latent(self, data: bytes, progress=None) -> tuple[Header, torch.Tensor]:
        """Bytes -> (header, coarse latent (1, C, H_pad/8, W_pad/8))."""
        codec, header, symbols, params = self.codec._open(data, progress)
        latent = codec.entropy.synthesise(symbols.y, params, header.level)
        if progress:
            progress("entropy", 1, 1)
        return header, latent

    @torch.inference_mode()
    def decode_symbols(self, data: bytes) -> tuple[Header, Symbols]:
        """Bytes -> (header, symbols), checked against the container's symbol check."""
        _, header, symbols, _ = self.codec._open(data)
        return header, symbols

    @torch.inference_mode()
    def quantized_latent(self, data: bytes) -> torch.Tensor:
        """Bytes -> y_hat = symbols + means (1, M, H/16, W/16), float64, in the gained domain:
        bit-identical on every device, or an error."""
        codec, _, symbols, params = self.codec._open(data)
        return codec.entropy.compressor.quantized_latent(torch.from_numpy(symbols.y), params)

    @torch.inference_mode()
    def refine_latent(
        self, coarse, quality: int, settings: RefineSettings, tile: int = DEFAULT_TILE, progress=None, **side
    ):
        """Coarse latent (1,C,h,w) -> refined latent with the diffusion prior, or a dpc-v3 codec's
        latent refiner, which also needs `side` (`refinement_side(data)`); unchanged if steps 0."""
        c = self.codec
        c.rates.check(RatePoint(quality), CodecError)
        return c.refiner.refine(coarse, quality, settings, bool(check_tile(tile)), progress, **side)

    @torch.inference_mode()
    def refinement_side(self, data: bytes) -> dict:
        """Bytes -> what a latent refiner sees besides the coarse latent: y's scale-table indexes
        (1,M,h/2,w/2) int32 and the header's 0-based level."""
        _, header, _, params = self.codec._open(data)
        return refiner_side(header, params)

    @torch.inference_mode()
    def decode_pixels(self, latent, tile: int = DEFAULT_TILE, level: float | None = None, progress=None):
        """Latent (1,C,h,w) -> image tensor (1,3,8h,8w), on overlapping tiles of `tile` px.

        level None: the fidelity (autoencoder) decoder. A 0-based rate level (a file's
        `header.level`, between and beyond the trained levels too): the perceptual decoder
        conditioned on it.
        """
        return self.codec.pixels.decode(latent, check_tile(tile), level, progress)
