"""The entropy stage: the autoencoder's latent <-> the byte sections of a `.dpc` file.

    compress:    latent (1,C,H/8,W/8) --g_a, h_a, round--> z symbols (1,Z,H/64,W/64) --z tables--> z bytes
                     |                                         |
                     |                  entropy parameters (float64, CPU): h_s(z) -> means, table indexes
                     v                                         v
                 y (1,M,H/16,W/16) --x gain, - means, round--> y symbols --y tables by index--> y bytes
                                                                symbol check (z, y, indexes, means)
    decompress:  z bytes -> z symbols -> entropy parameters -> y bytes -> y symbols (checked)
                 -> + means, / gain --g_s--> coarse latent (1,C,H/8,W/8)
    forward:     latent -> coarse latent, the same numbers without the (lossless) bytes in between

`HyperpriorCodec` owns the compressor's networks (on the run options' device), its integer
CDF tables and its entropy parameters: a float64 CPU copy of the compressor, because
the table indexes decide how every y symbol is decoded, and a GPU's convolutions (TF32
by default) round differently from a CPU's and would make files undecodable elsewhere.
The container's symbol check turns any remaining disagreement into an error.
"""

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from bitstream import decode_symbols, encode_symbols, symbol_check
from bitstream.entropy_coding import check_capacity

from ..errors import DecoderDesyncError
from ..options import RunOptions
from ..placement import on_device
from .compressor import HyperParams, HyperpriorCompressor
from .context import anchor_mask

HYPER_FACTOR = 8  # z is 1/8 of the latent's side (compressor 2 x hyperprior 4)


@dataclass(frozen=True)
class Symbols:
    """Everything the entropy coder carries for one image (all int32 arrays)."""

    z: np.ndarray  # (1, Z, H/64, W/64) hyper-latent symbols
    y: np.ndarray  # (1, M, H/16, W/16) latent symbols


@dataclass(frozen=True)
class Sections:
    """The entropy-coded parts of a file, as the container stores them."""

    z_data: bytes
    y_data: bytes  # all of y; with a checkerboard context, the anchors (first pass)
    symbol_check: int
    y_rest_data: bytes | None = None  # with a checkerboard context: the non-anchors (second pass)

    @property
    def payload_bytes(self) -> int:
        """Bytes of entropy-coded data (what the rate counts besides the container's few)."""
        return len(self.z_data) + len(self.y_data) + len(self.y_rest_data or b"")


class HyperpriorCodec:
    """Latent <-> symbols <-> bytes with one compressor (see the module docstring); `level` is 0-based."""

    def __init__(self, compressor: HyperpriorCompressor, options: RunOptions):
        self.options = options
        self.compressor = compressor.to(options.home)
        self.entropy_parameters = copy.deepcopy(compressor).to("cpu", torch.float64)
        self.z_tables = compressor.z_tables()
        self.y_tables = compressor.y_tables()

    @property
    def has_context(self) -> bool:
        """Whether y is coded in two checkerboard passes (codec/entropy/context.py)."""
        return self.compressor.cfg.has_context

    @property
    def levels(self) -> int:
        """Trained rate levels (gain vectors)."""
        return self.compressor.cfg.levels

    def z_shape(self, latent_height: int, latent_width: int) -> tuple[int, int, int, int]:
        """Shape of z for a padded latent of that size."""
        return (1, self.compressor.cfg.z_channels, latent_height // HYPER_FACTOR, latent_width // HYPER_FACTOR)

    # -- encoder side ---------------------------------------------------------------------
    def analyse(self, latent: Tensor, level: float) -> tuple[Symbols, HyperParams]:
        """Latent (1,C,h,w) -> the integer symbols at `level`, and y's entropy parameters."""
        with on_device(self.compressor, self.options):
            y, z_symbols = self.compressor.analyse(latent, level)
            return self.quantise(y, z_symbols.cpu().numpy(), level)

    def quantise(self, y: Tensor, z_symbols: np.ndarray, level: float) -> tuple[Symbols, HyperParams]:
        """y (1,M,h,w) and its z symbols -> y's symbols and entropy parameters, as the decoder derives them.

        With a checkerboard context: the anchors are rounded about the hyperprior's means, then
        the non-anchors about the means the context derives from those anchors."""
        params = self.hyper_params(z_symbols, level)
        y_symbols = self.compressor.y_symbols(y, params, level)
        if self.has_context:
            params = self.entropy_parameters.context_params(params, y_symbols.cpu(), level)
            y_symbols = self.compressor.y_symbols(y, params, level)  # the anchors' means are unchanged
        return Symbols(z=z_symbols, y=y_symbols.cpu().numpy()), params

    def encode(self, symbols: Symbols, params: HyperParams) -> Sections:
        """Symbols -> entropy-coded sections (the inverse of `decode`)."""
        indexes = params.indexes.cpu().numpy()
        z_data = encode_symbols(symbols.z, self._z_indexes(symbols.z.shape), self.z_tables)
        check = symbol_check(symbols.z, symbols.y, *params.check_arrays())
        if not self.has_context:
            return Sections(z_data, encode_symbols(symbols.y, indexes, self.y_tables), check)
        anchors = _anchors(indexes.shape)
        return Sections(
            z_data=z_data,
            y_data=encode_symbols(symbols.y[anchors], indexes[anchors], self.y_tables),
            symbol_check=check,
            y_rest_data=encode_symbols(symbols.y[~anchors], indexes[~anchors], self.y_tables),
        )

    def compress(self, latent: Tensor, level: float) -> Sections:
        """Latent (1,C,h,w) -> the file's entropy-coded sections at `level`."""
        return self.encode(*self.analyse(latent, level))

    # -- both sides ----------------------------------------------------------------------
    def hyper_params(self, z_symbols: np.ndarray, level: float) -> HyperParams:
        """z symbols -> y's entropy parameters, from the float64 CPU copy (bit-identical everywhere)."""
        return self.entropy_parameters.hyper_params(torch.from_numpy(z_symbols), level)

    def parameters(self, symbols: Symbols, level: float) -> HyperParams:
        """All of y's entropy parameters for known symbols, as the decoder derives them (with a
        checkerboard context, the non-anchors' from the anchors' symbols)."""
        params = self.hyper_params(symbols.z, level)
        if self.has_context:
            params = self.entropy_parameters.context_params(params, torch.from_numpy(symbols.y), level)
        return params

    def synthesise(self, y_symbols: np.ndarray, params: HyperParams, level: float) -> Tensor:
        """y symbols -> coarse latent (1,C,2h,2w) on the device."""
        y = torch.from_numpy(y_symbols).to(self.options.device)
        with on_device(self.compressor, self.options):
            return self.compressor.synthesise(y, params, level)

    def forward(self, latent: Tensor, levels) -> dict:
        """Latent -> {level: coarse latent}: what compress + decompress give, without the bytes."""
        out = {}
        for level in levels:
            symbols, params = self.analyse(latent, level)
            out[level] = self.synthesise(symbols.y, params, level)
        return out

    # -- decoder side --------------------------------------------------------------------
    def decode(self, sections: Sections, z_shape: tuple, level: float) -> tuple[Symbols, HyperParams]:
        """Entropy-coded sections -> symbols and y's entropy parameters; DecoderDesyncError if unchecked."""
        y_count = self.compressor.cfg.y_channels * 16 * z_shape[2] * z_shape[3]  # y is 4x z's side
        check_capacity(sections.z_data, math.prod(z_shape), self.z_tables, "z section")
        check_capacity(sections.y_data + (sections.y_rest_data or b""), y_count, self.y_tables, "y section")
        z = decode_symbols(sections.z_data, self._z_indexes(z_shape), self.z_tables).astype(np.int32)
        params = self.hyper_params(z, level)
        indexes = params.indexes.cpu().numpy()
        if not self.has_context:
            y = decode_symbols(sections.y_data, indexes, self.y_tables).astype(np.int32)
        else:
            anchors = _anchors(indexes.shape)
            y = np.zeros(indexes.shape, dtype=np.int32)
            y[anchors] = decode_symbols(sections.y_data, indexes[anchors], self.y_tables)
            params = self.entropy_parameters.context_params(params, torch.from_numpy(y), level)
            indexes = params.indexes.cpu().numpy()
            y[~anchors] = decode_symbols(sections.y_rest_data or b"", indexes[~anchors], self.y_tables)
        if symbol_check(z, y, *params.check_arrays()) != sections.symbol_check:
            raise DecoderDesyncError(
                "decoded symbols fail their check: the file is corrupt or was encoded with "
                "entropy parameters this decoder cannot reproduce"
            )
        return Symbols(z=z, y=y), params

    @staticmethod
    def _z_indexes(shape) -> np.ndarray:
        """z uses one CDF table per channel."""
        return np.broadcast_to(np.arange(shape[1])[None, :, None, None], shape)


def _anchors(shape: tuple) -> np.ndarray:
    """A bool array of y's shape (1,M,h,w): True at the checkerboard's anchors (the first pass)."""
    return np.broadcast_to(anchor_mask(*shape[2:]).numpy(), shape)
