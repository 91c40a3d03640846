"""Entropy coding of integer symbols (bitstream/entropy_coding.py) against the shipped CDF tables.

Specification: decode_symbols(encode_symbols(s, i, T), i, T) == s exactly, for any
symbols |s| < 2**30 (values outside a table's support travel as escapes), any
shape, including empty; corrupt data raises BitstreamError and nothing else.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitstream import decode_symbols, encode_symbols, symbol_check
from codec.errors import BitstreamError

LIMIT = (1 << 30) - 1  # encode_symbols documents |s| < 2**30

# Mostly symbols inside the tables' support, some escapes near it, some far away.
symbol_values = st.one_of(
    st.integers(-12, 12),
    st.integers(-300, 300),
    st.sampled_from([-100000, 100000, -LIMIT, LIMIT]),
    st.integers(-LIMIT, LIMIT),
)

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def tables_of(codec, which):
    return codec.entropy.compressor.y_tables() if which == "y" else codec.entropy.compressor.z_tables()


@pytest.fixture(scope="module")
def y_tables(codec):
    return codec.entropy.compressor.y_tables()


@pytest.fixture(scope="module")
def z_tables(codec):
    return codec.entropy.compressor.z_tables()


def _round_trip(symbols, indexes, tables):
    data = encode_symbols(symbols, indexes, tables)
    assert isinstance(data, bytes)
    decoded = decode_symbols(data, indexes, tables)
    assert decoded.shape == np.shape(symbols)
    np.testing.assert_array_equal(decoded, symbols)
    return data


@SETTINGS
@given(data=st.data())
def test_random_symbols_round_trip_exactly_with_the_latent_y_tables(y_tables, data):
    """Any symbols with any table indexes decode to exactly the symbols that were encoded."""
    n = data.draw(st.integers(1, 300))  # the empty array has its own test
    indexes = np.array(data.draw(st.lists(st.integers(0, y_tables.num_tables - 1), min_size=n, max_size=n)))
    symbols = np.array(data.draw(st.lists(symbol_values, min_size=n, max_size=n)), dtype=np.int64)
    _round_trip(symbols, indexes.astype(np.int64), y_tables)


@SETTINGS
@given(data=st.data())
def test_random_symbols_round_trip_exactly_with_the_hyper_latent_z_tables(z_tables, data):
    """Same property for the EntropyBottleneck's per-channel tables used for z."""
    n = data.draw(st.integers(1, 300))  # the empty array has its own test
    indexes = np.array(data.draw(st.lists(st.integers(0, z_tables.num_tables - 1), min_size=n, max_size=n)))
    symbols = np.array(data.draw(st.lists(symbol_values, min_size=n, max_size=n)), dtype=np.int64)
    _round_trip(symbols, indexes.astype(np.int64), z_tables)


@pytest.mark.parametrize("which", ["y", "z"])
def test_values_at_and_beyond_every_tables_support_edges_round_trip(codec, which):
    """For each table: the first and last regular bins, the escape bin's own value, one past
    either edge, and values far outside the support (+-100000, +-(2**30 - 1)) are all exact."""
    tables = tables_of(codec, which)
    symbols, indexes = [], []
    for t in range(tables.num_tables):
        lo = int(tables.offset[t])
        escape_value = lo + int(tables.cdf_length[t]) - 2  # first value that no longer has its own bin
        for s in (lo, lo - 1, escape_value - 1, escape_value, escape_value + 1, 0, -100000, 100000, -LIMIT, LIMIT):
            symbols.append(s)
            indexes.append(t)
    _round_trip(np.array(symbols, dtype=np.int64), np.array(indexes, dtype=np.int64), tables)


def test_escapes_only_stream_round_trips(y_tables):
    """A stream made only of escapes (nothing inside any support) still decodes exactly."""
    symbols = np.array([100000, -100000, 5000, -5000, 1 << 29, -(1 << 29)], dtype=np.int64)
    _round_trip(symbols, np.zeros(len(symbols), dtype=np.int64), y_tables)


@pytest.mark.parametrize("shape", [(0,), (1, 0, 4, 4), (1, 64, 0, 0)])
def test_an_empty_array_round_trips_and_keeps_its_shape(y_tables, shape):
    symbols = np.zeros(shape, dtype=np.int64)
    data = encode_symbols(symbols, np.zeros(shape, dtype=np.int64), y_tables)
    decoded = decode_symbols(data, np.zeros(shape, dtype=np.int64), y_tables)
    assert decoded.shape == shape


def test_multidimensional_symbols_keep_shape_and_raster_order(z_tables):
    """Symbols shaped like a latent (1, C, H, W) come back in the same shape and order."""
    rng = np.random.default_rng(1)
    shape = (1, z_tables.num_tables, 3, 5)
    indexes = np.broadcast_to(np.arange(shape[1])[None, :, None, None], shape)
    symbols = rng.integers(-6, 7, size=shape)
    _round_trip(symbols, indexes, z_tables)


def test_real_latents_round_trip_through_the_entropy_coder(codec, textured_image):
    """The symbols Codec.stages.analyse produces for a photo, with the indexes the decoder derives."""
    import torch

    symbols = codec.stages.analyse(textured_image, 6)
    params = codec.entropy.compressor.hyper_params(torch.from_numpy(symbols.z), 5)
    _round_trip(symbols.y, params.indexes.numpy(), codec.entropy.compressor.y_tables())


def test_symbol_count_mismatch_is_refused_at_encode_time(y_tables):
    with pytest.raises(ValueError):
        encode_symbols(np.zeros(3, dtype=np.int64), np.zeros(4, dtype=np.int64), y_tables)


@pytest.mark.parametrize("bad_index", [-1, 10**6])
def test_a_table_index_out_of_range_is_a_bitstream_error_when_decoding(y_tables, bad_index):
    with pytest.raises(BitstreamError):
        decode_symbols(b"\x01\x02\x03\x04", np.array([0, bad_index]), y_tables)


@SETTINGS
@given(data=st.binary(max_size=64), n=st.integers(0, 50))
def test_arbitrary_bytes_decode_to_symbols_or_raise_bitstream_error(y_tables, data, n):
    """Garbage never escapes as another exception type, and what decodes has the right shape."""
    indexes = np.arange(n) % y_tables.num_tables
    try:
        decoded = decode_symbols(data, indexes, y_tables)
    except BitstreamError:
        return
    assert decoded.shape == (n,)


def test_appended_bytes_are_detected_as_unused_data(y_tables):
    """A coded section must be used up exactly: a stray extra word is refused."""
    symbols = np.arange(-5, 5, dtype=np.int64)
    indexes = np.full(10, 20, dtype=np.int64)
    data = encode_symbols(symbols, indexes, y_tables)
    with pytest.raises(BitstreamError):
        decode_symbols(data + b"\x01\x00\x00\x00", indexes, y_tables)


def test_symbol_check_changes_when_one_symbol_changes():
    """The 16-bit symbol check covers every symbol of both arrays (and their split)."""
    z = np.arange(32, dtype=np.int32).reshape(1, 32, 1, 1)
    y = np.zeros((1, 64, 2, 2), dtype=np.int32)
    reference = symbol_check(z, y)
    assert 0 <= reference < 1 << 16
    y2 = y.copy()
    y2[0, 63, 1, 1] = 1
    z2 = z.copy()
    z2[0, 0, 0, 0] = -1
    assert symbol_check(z, y2) != reference
    assert symbol_check(z2, y) != reference
    assert symbol_check(z, y) == reference
