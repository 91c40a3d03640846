"""The shipped models side by side: dpc-v3 (the codec on TAEF2's latent) loads by name, and
whichever shipped model is loaded decodes the files of the others with the weights that made them,
to the same pixels (codec/older_models.py). `dpc info` says what a dpc-v3 file's decode runs."""

import re

import numpy as np
import pytest
from helpers import make_textured

from codec import Codec
from codec.shipped import SHIPPED_MODELS, coding_config, shipped_coding_config, shipped_weights


@pytest.fixture(scope="module")
def v3() -> Codec:
    return Codec.load("dpc-v3")


def test_dpc_v3_loads_by_name_with_its_one_step_latent_refiner(v3, codec):
    assert v3.bundle.shipped and v3.bundle.refiner is not None and v3.model_id != codec.model_id
    assert shipped_weights(v3.model_id) == SHIPPED_MODELS["dpc-v3"]
    config = coding_config(SHIPPED_MODELS["dpc-v3"])  # read without torch, as `dpc info` reads it
    assert config.default_realism == v3.bundle.refiner.cfg.default_realism
    assert config.levels == len(v3.qualities)
    assert shipped_coding_config(codec.model_id).default_realism is None  # dpc-v2 has no such refiner


def test_the_shipped_models_decode_each_others_files_to_the_same_pixels(v3, codec):
    image = make_textured(96, 64)
    for maker, other in ((v3, codec), (codec, v3)):
        data = maker.compress(image, quality=2)
        assert other._for_model(maker.model_id) is not other  # decoded by the weights that made it
        assert np.array_equal(np.asarray(maker.decompress(data)), np.asarray(other.decompress(data)))


def test_dpc_info_names_dpc_v3s_refiner_and_the_realism_its_decode_uses(dpc, tmp_path, v3):
    make_textured(96, 64).save(tmp_path / "x.png")
    assert dpc("compress", tmp_path / "x.png", "--weights", "dpc-v3", "-q", "1", "--seed", "4").code == 0
    r = dpc("info", tmp_path / "x.dpc")
    assert r.code == 0, r.err
    realism = v3.bundle.refiner.cfg.default_realism
    want = rf"^refinement:\s+the one-step latent refiner, seed 4 \(realism {realism:g} unless --realism\)$"
    assert re.search(want, r.out, re.M), r.out
    assert re.search(rf"^model id:\s+{v3.model_id:04x}$", r.out, re.M), r.out
