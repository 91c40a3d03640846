"""The checkerboard context (codec/entropy/context.py), format version 4, and old files.

Files written with the older shipped weights (dpc-v1, one y pass) keep decoding with the
default codec, to the same symbols, latent and pixels as with those weights loaded directly.
"""

import copy
import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import decodes_exactly_or_is_refused, make_textured, with_crc

from bitstream import (
    LAYOUT_CENTRED,
    LAYOUT_TWO_PASS,
    LAYOUT_VERSION,
    TWO_PASS_VERSION,
    Container,
    Header,
    read_container,
    write_container,
)
from codec import BitstreamError, Codec, CodecError
from codec.entropy.compressor import HyperpriorCompressor
from codec.entropy.context import anchor_mask
from codec.model_files import LEGACY_WEIGHTS

DATA = Path(__file__).parent / "data"
# SHA-256 (first 16 hex) of the float64 quantized latent of each committed dpc-v1 file, as dpc-v1
# decoded it when the file was written: the latent is exact by design, the same on every machine.
OLD_FILES = {"dpc-v1-q1.5.dpc": "be6bb77a51a5e90d", "dpc-v1-q4.dpc": "54711d3933481928"}


@pytest.fixture(scope="module")
def v1() -> Codec:
    return Codec.load(LEGACY_WEIGHTS[0])


@pytest.mark.parametrize("name", sorted(OLD_FILES))
def test_old_files_decode_to_the_same_latent_and_pixels_as_with_their_own_weights(codec, v1, name):
    data = (DATA / name).read_bytes()
    latent = codec.stages.quantized_latent(data)
    assert hashlib.sha256(latent.numpy().tobytes()).hexdigest()[:16] == OLD_FILES[name]
    assert torch.equal(latent, v1.stages.quantized_latent(data))
    for fidelity in (True, False):
        got = np.asarray(codec.decompress(data, fidelity=fidelity))
        assert np.array_equal(got, np.asarray(v1.decompress(data, fidelity=fidelity)))


def test_an_untrained_context_reproduces_the_hyperprior_exactly(v1):
    base = v1.bundle.compressor
    cfg = replace(base.cfg, context_features=16, context_hidden=8)
    with_context = HyperpriorCompressor(cfg)
    tables = ("_quantized_cdf", "_offset", "_cdf_length")  # coding only; parameters need none of them
    with_context.load_state_dict({k: v for k, v in base.state_dict().items() if not k.endswith(tables)}, strict=False)
    with_context = with_context.to(torch.float64)
    symbols = v1.stages.analyse(make_textured(128, 96), 3)
    params = with_context.hyper_params(torch.from_numpy(symbols.z), 2)
    refined = with_context.context_params(params, torch.from_numpy(symbols.y), 2)
    assert torch.equal(refined.means, params.means) and torch.equal(refined.indexes, params.indexes)


def test_the_anchors_are_a_checkerboard():
    mask = anchor_mask(3, 4)[0, 0]
    assert mask.tolist() == [[True, False, True, False], [False, True, False, True], [True, False, True, False]]


def test_a_two_pass_container_round_trips_and_needs_its_second_section():
    header = Header(width=40, height=24, quality=2, model_id=7, version=TWO_PASS_VERSION, rate_offset=-3)
    c = Container(header, b"zz", b"anchors", 1234, b"rest")
    assert read_container(write_container(c)) == c
    empty = Container(header, b"zz", b"", 1, b"")
    assert read_container(write_container(empty)) == empty
    with pytest.raises(ValueError):
        write_container(Container(header, b"zz", b"y", 1))
    with pytest.raises(ValueError):
        write_container(Container(replace(header, version=3), b"zz", b"y", 1, b"rest"))


@pytest.mark.parametrize("layout", [0, LAYOUT_TWO_PASS, LAYOUT_CENTRED, LAYOUT_TWO_PASS | LAYOUT_CENTRED])
def test_a_version_5_container_round_trips_its_layout(layout):
    header = Header(width=40, height=24, quality=2, model_id=7, version=LAYOUT_VERSION, rate_offset=5, layout=layout)
    two_pass = bool(layout & LAYOUT_TWO_PASS)
    c = Container(header, b"zz", b"anchors", 1234, b"rest" if two_pass else None)
    back = read_container(write_container(c))
    assert back == c and (back.header.two_pass, back.header.centred) == (two_pass, bool(layout & LAYOUT_CENTRED))


def test_unknown_layout_bits_are_refused():
    header = Header(width=40, height=24, quality=2, model_id=7, version=LAYOUT_VERSION)
    data = bytearray(write_container(Container(header, b"zz", b"y", 1)))
    data[9] = 0x04  # magic 2, version, model id 2, width, height, flags, rate offset, layout
    with pytest.raises(BitstreamError, match="layout bits"):
        read_container(with_crc(bytes(data)))


def test_a_file_whose_version_does_not_fit_the_weights_is_refused_in_one_line(codec, v1):
    for made_by in (codec, v1):
        data = made_by.compress(make_textured(64, 64), 2)
        c = read_container(data)
        two_pass = c.header.two_pass
        flipped = replace(c.header, layout=c.header.layout ^ LAYOUT_TWO_PASS)  # the pass count the weights do not code
        forged = write_container(Container(flipped, c.z_data, c.y_data, c.symbol_check, None if two_pass else b""))
        with pytest.raises(CodecError) as err:
            made_by.decompress(with_crc(forged))
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("ulps", [1, 4])
def test_perturbing_the_context_by_a_few_ulp_never_gives_silently_wrong_symbols(codec, ulps):
    if not codec.entropy.has_context:
        pytest.skip("the shipped weights have no context")
    perturbed = Codec(codec.bundle)
    model = perturbed.entropy.entropy_parameters
    real = model.context.params

    class Nudged(torch.nn.Module):
        def forward(self, x):
            out = real(x)
            return out + out.abs() * (ulps * torch.finfo(out.dtype).eps) * torch.sign(torch.randn_like(out))

    model.context.params = Nudged()
    images = [make_textured(128, 96), make_textured(96, 160)]
    outcomes = [decodes_exactly_or_is_refused(codec, perturbed, im, q) for im in images for q in codec.qualities]
    assert set(outcomes) <= {"exact", "refused"} and "exact" in outcomes


def test_float32_context_parameters_decode_exactly_or_refuse(codec):
    if not codec.entropy.has_context:
        pytest.skip("the shipped weights have no context")
    float32 = Codec(codec.bundle)
    float32.entropy.entropy_parameters = copy.deepcopy(codec.bundle.compressor).to("cpu", torch.float32)
    images = [make_textured(128, 96), make_textured(96, 160)]
    outcomes = {decodes_exactly_or_is_refused(codec, float32, im, q) for im in images for q in codec.qualities}
    assert outcomes <= {"exact", "refused"}


@pytest.mark.parametrize("quality", [1, 3.5])
def test_symbols_written_again_give_the_same_file_for_the_default_and_the_older_weights(codec, v1, quality):
    image = make_textured(96, 64)
    for made_by in (codec, v1):
        data = made_by.compress(image, quality)
        header, symbols = codec.stages.decode_symbols(data)  # the default codec, whoever made the file
        assert codec.stages.write_symbols(header, symbols) == data
