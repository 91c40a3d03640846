"""A decode reads the header once: Codec.decompress and the stages parse each file one time."""

import pytest

import bitstream.container
from codec import Codec
from tests.helpers import make_textured


@pytest.fixture(scope="module")
def codec():
    return Codec.load()


@pytest.fixture(scope="module")
def data(codec):
    return codec.compress(make_textured(96, 64), 2)


@pytest.fixture
def parses(monkeypatch):
    """Counts header parses: every read_header, whoever imported it, opens one reader over the bytes."""
    calls = []

    class CountingReader(bitstream.container._Reader):
        def __init__(self, *args):
            calls.append(1)
            super().__init__(*args)

    monkeypatch.setattr(bitstream.container, "_Reader", CountingReader)
    return calls


def test_decompress_parses_the_header_once(codec, data, parses):
    codec.decompress(data)
    assert len(parses) == 1


def test_a_fidelity_decode_parses_the_header_once(codec, data, parses):
    codec.decompress(data, fidelity=True)
    assert len(parses) == 1


@pytest.mark.parametrize("method", ["decode_latent", "decode_symbols", "quantized_latent"])
def test_each_bytes_side_stage_parses_the_header_once(codec, data, parses, method):
    getattr(codec.stages, method)(data)
    assert len(parses) == 1
