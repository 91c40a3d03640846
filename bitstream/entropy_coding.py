"""Entropy coding of integer symbols with constriction's ANS coder.

Each symbol comes with an index that picks one integer CDF table (CompressAI's
layout: 16-bit CDF, the last bin an escape). The coder turns each table into a
constriction `Categorical` from its integer frequencies, so the model the
decoder rebuilds is bit-identical to the encoder's: it depends only on the
tables (stored with the weights) and the indexes (derived from decoded data).

Order of the ANS stack, as the decoder reads it:
    1. the regular/escape bins, grouped by table index (ascending), in raster
       order within a group;
    2. for every escaped symbol, its bit length (0..32) and then its bits,
       8 at a time, least significant byte first.
The encoder pushes the same things in reverse, since ANS is last-in first-out.
"""

import functools
from dataclasses import dataclass
from hashlib import blake2b

import constriction
import numpy as np

from .capacity import check_bits
from .errors import BitstreamError

PRECISION = 16  # CompressAI's CDF precision (bits)
_MODELS = constriction.stream.model
_UNIFORM_33 = _MODELS.Categorical(np.full(33, 1 / 33), perfect=False)
_UNIFORM_256 = _MODELS.Categorical(np.full(256, 1 / 256), perfect=False)


@dataclass(frozen=True)
class CdfTables:
    """Integer CDF tables in CompressAI's layout.

    cdf: (T, L) int, 16-bit precision; row t is valid up to cdf_length[t]; its
    last bin (index cdf_length[t] - 2) is the escape symbol.
    offset: (T,) int, the symbol value of bin 0 of each row.
    """

    cdf: np.ndarray
    cdf_length: np.ndarray
    offset: np.ndarray

    @classmethod
    def from_buffers(cls, cdf, cdf_length, offset) -> "CdfTables":
        """Build from torch tensors or arrays (CompressAI's registered buffers)."""
        as_np = lambda t: np.asarray(t.detach().cpu() if hasattr(t, "detach") else t, dtype=np.int64)  # noqa: E731
        return cls(cdf=as_np(cdf), cdf_length=as_np(cdf_length), offset=as_np(offset))

    def __post_init__(self):
        object.__setattr__(self, "_models", {})

    def model(self, t: int):
        """constriction model for table t, built once from its integer frequencies."""
        models = self._models
        if t not in models:
            cdf = self.cdf[t, : self.cdf_length[t]]
            frequencies = np.diff(cdf).astype(np.float64)
            # Dividing integers by their integer sum is exact enough to be
            # reproducible: IEEE division is correctly rounded on every platform.
            models[t] = _MODELS.Categorical(frequencies / frequencies.sum(), perfect=False)
        return models[t]

    @property
    def num_tables(self) -> int:
        return len(self.cdf_length)

    @functools.cached_property
    def min_bits(self) -> float:
        """The fewest bits any one symbol can cost under these tables: the information of the most
        probable bin of the most peaked table (what bounds how many symbols a section can hold)."""
        frequencies = np.diff(self.cdf, axis=1).astype(np.float64)
        valid = np.arange(frequencies.shape[1])[None, :] < (self.cdf_length[:, None] - 1)
        frequencies = np.where(valid, frequencies, 0.0)
        peak = frequencies.max(axis=1) / frequencies.sum(axis=1)
        return float(-np.log2(peak.max()))


def check_capacity(data: bytes, count: int, tables: CdfTables, what: str) -> None:
    """BitstreamError if `data` is too short to hold `count` symbols under `tables` (half the least
    they can cost, for margin): a header that claims a huge image over a few bytes is refused
    before the work and the memory that decoding its symbols would take."""
    check_bits(data, count, tables.min_bits, what)


def _bins(symbols: np.ndarray, indexes: np.ndarray, tables: CdfTables) -> tuple[np.ndarray, np.ndarray]:
    """Symbols -> (bin per symbol, escape payload per escaped symbol), CompressAI's rule."""
    escape_bin = tables.cdf_length[indexes] - 2
    values = symbols - tables.offset[indexes]
    below, above = values < 0, values >= escape_bin
    escaped = below | above
    payload = np.where(below, -2 * values - 1, 2 * (values - escape_bin))[escaped]
    return np.where(escaped, escape_bin, values), payload


def _groups(indexes: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(table, positions in raster order) for each table used, by ascending table: the decoding order."""
    order = np.argsort(indexes, kind="stable")
    sorted_indexes = indexes[order]
    starts = np.flatnonzero(np.diff(sorted_indexes, prepend=-1))
    ends = np.append(starts[1:], len(order))
    return [(int(sorted_indexes[a]), order[a:b]) for a, b in zip(starts, ends, strict=True)]


def encode_symbols(symbols: np.ndarray, indexes: np.ndarray, tables: CdfTables) -> bytes:
    """Integer symbols (any shape) with same-shape table indexes -> bytes.

    Symbols must satisfy |s| < 2**30 (escapes carry up to 32 bits).
    """
    symbols = np.asarray(symbols, dtype=np.int64).ravel()
    indexes = np.asarray(indexes, dtype=np.int64).ravel()
    if symbols.shape != indexes.shape:
        raise ValueError("symbols and indexes differ in shape")
    if symbols.size and (indexes.min() < 0 or indexes.max() >= tables.num_tables):
        raise ValueError("table index out of range")
    if not symbols.size:
        return b""
    bins, payload = _bins(symbols, indexes, tables)
    coder = constriction.stream.stack.AnsCoder()
    for value in payload[::-1]:
        value = int(value)
        nbits = value.bit_length()
        chunks = [(value >> (8 * k)) & 0xFF for k in range((nbits + 7) // 8)]
        if chunks:
            coder.encode_reverse(np.array(chunks, dtype=np.int32), _UNIFORM_256)
        coder.encode_reverse(np.array([nbits], dtype=np.int32), _UNIFORM_33)
    for table, positions in reversed(_groups(indexes)):
        coder.encode_reverse(bins[positions].astype(np.int32), tables.model(table))
    return _words_to_bytes(coder.get_compressed())


def decode_symbols(data: bytes, indexes: np.ndarray, tables: CdfTables) -> np.ndarray:
    """bytes + table indexes (shape S) -> int64 symbols of shape S.

    Raises BitstreamError if the data cannot be decoded or is not used up
    exactly; work is bounded by indexes.size (at most 33 escape bits each).
    """
    shape = np.shape(indexes)
    indexes = np.asarray(indexes, dtype=np.int64).ravel()
    if indexes.size and (indexes.min() < 0 or indexes.max() >= tables.num_tables):
        raise BitstreamError("corrupt data: entropy table index out of range")
    if not indexes.size:
        if data:
            raise BitstreamError("corrupt data: entropy-coded section has unused bytes")
        return np.zeros(shape, dtype=np.int64)
    try:
        coder = constriction.stream.stack.AnsCoder(_bytes_to_words(data))
        bins = np.empty(indexes.size, dtype=np.int64)
        for table, positions in _groups(indexes):
            bins[positions] = coder.decode(tables.model(table), len(positions))
        escape_bin = tables.cdf_length[indexes] - 2
        escaped = np.flatnonzero(bins == escape_bin)
        payload = np.empty(len(escaped), dtype=np.int64)
        for k in range(len(escaped)):
            nbits = int(coder.decode(_UNIFORM_33, 1)[0])
            chunks = coder.decode(_UNIFORM_256, (nbits + 7) // 8) if nbits else []
            payload[k] = sum(int(c) << (8 * j) for j, c in enumerate(chunks))
        if not coder.is_empty():
            raise BitstreamError("corrupt data: entropy-coded section has unused bytes")
    except BitstreamError:
        raise
    except Exception as exc:  # constriction reports malformed data as ValueError/AssertionError
        raise BitstreamError(f"corrupt data: entropy decoding failed ({exc})") from None
    values = bins.copy()
    values[escaped] = np.where(payload % 2 == 1, -(payload + 1) // 2, escape_bin[escaped] + payload // 2)
    return (values + tables.offset[indexes]).reshape(shape)


def symbol_check(*symbol_arrays: np.ndarray) -> int:
    """16-bit check of decoded symbols; the container stores the encoder's value.

    A mismatch means the decoder derived other entropy parameters than the
    encoder did (or the data is corrupt): an error, never silently wrong pixels.
    """
    h = blake2b(digest_size=2)
    for arr in symbol_arrays:
        h.update(np.ascontiguousarray(arr, dtype="<i4").tobytes())
    return int.from_bytes(h.digest(), "little")


def _words_to_bytes(words: np.ndarray) -> bytes:
    # The last word's high bytes are often zero: drop them (never more than
    # three, so whole words survive), the reader pads back to a word boundary.
    data = words.astype("<u4").tobytes()
    drop = 0
    while drop < 3 and drop < len(data) and data[-1 - drop] == 0:
        drop += 1
    return data[: len(data) - drop]


def _bytes_to_words(data: bytes) -> np.ndarray:
    padded = data + b"\x00" * (-len(data) % 4)
    return np.frombuffer(padded, dtype="<u4").astype(np.uint32)
