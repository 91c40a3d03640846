"""The entropy stage (latent <-> symbols <-> bytes): hyperprior.py is the stage, compressor.py its
networks and coding state, training.py the same networks with CompressAI's likelihood models."""

from .compressor import CompressorConfig, HyperParams, HyperpriorCompressor
from .hyperprior import HyperpriorCodec, Sections, Symbols

__all__ = ["CompressorConfig", "HyperParams", "HyperpriorCodec", "HyperpriorCompressor", "Sections", "Symbols"]
