"""Weight files: safetensors only, checked against their SHA-256 record; tampering is refused."""

import hashlib
import shutil

import pytest
import torch
from helpers import make_smooth

from codec import Codec, ModelFileError, ModelMismatchError
from codec.model_files import DEFAULT_WEIGHTS, LEGACY_WEIGHTS, load_model
from codec.weight_bytes import read_weights, write_derivation


def _copy_weights(tmp_path, with_record=True):
    dst = tmp_path / "w.safetensors"
    shutil.copy(DEFAULT_WEIGHTS, dst)
    if with_record:
        shutil.copy(DEFAULT_WEIGHTS.with_name(DEFAULT_WEIGHTS.name + ".sha256"), tmp_path / "w.safetensors.sha256")
    return dst


def _flip_a_weight_byte(path):
    data = bytearray(path.read_bytes())
    data[-1000] ^= 0x10  # inside the tensor data, after the JSON header
    path.write_bytes(bytes(data))


def test_the_shipped_weights_match_their_recorded_sha256():
    bundle = load_model()
    record = DEFAULT_WEIGHTS.with_name(DEFAULT_WEIGHTS.name + ".sha256").read_text().strip()
    assert bundle.sha256 == record
    assert bundle.model_id == int(record[:4], 16)


def test_a_tampered_weight_file_is_refused_with_a_clear_error(tmp_path):
    path = _copy_weights(tmp_path)
    _flip_a_weight_byte(path)
    with pytest.raises(ModelFileError, match="does not match its recorded SHA-256"):
        load_model(path)


def test_tampered_weights_without_a_record_load_but_cannot_decode_the_real_files(tmp_path):
    """The model id is derived from the weights' hash, so other bytes mean another model."""
    path = _copy_weights(tmp_path, with_record=False)
    _flip_a_weight_byte(path)
    data = Codec.load().compress(make_smooth(32, 32), quality=2)
    with pytest.raises(ModelMismatchError):
        Codec.load(path).decompress(data)


def test_a_pickle_or_garbage_file_is_not_accepted_as_weights(tmp_path):
    bogus = tmp_path / "w.safetensors"
    bogus.write_bytes(b"\x80\x04\x95pickle-ish bytes that safetensors must refuse")
    with pytest.raises(ModelFileError, match="unusable weight file"):
        load_model(bogus)


def test_a_damaged_record_is_an_error_not_a_pass(tmp_path):
    path = _copy_weights(tmp_path)
    (tmp_path / "w.safetensors.sha256").write_text("0" * 64 + "\n")
    with pytest.raises(ModelFileError, match="SHA-256"):
        load_model(path)


# -- derived weight files (dpc-v1 ships as a record over dpc-v2's tensors) -------------------------
def _old_and_base(tmp_path):
    """tmp copies: dpc-v1's bytes (rebuilt) as old.safetensors and dpc-v2 as base.safetensors, with records."""
    raw, digest = read_weights(LEGACY_WEIGHTS[0], DEFAULT_WEIGHTS)
    old, base = tmp_path / "old.safetensors", _copy_weights(tmp_path)
    old.write_bytes(raw)
    (tmp_path / "old.safetensors.sha256").write_text(digest + "\n")
    return old, base, raw


def test_the_older_shipped_weights_are_rebuilt_from_the_default_ones_to_their_recorded_sha256():
    legacy = LEGACY_WEIGHTS[0]
    assert not legacy.exists() and legacy.with_name(legacy.name + ".derived.json").exists()
    record = legacy.with_name(legacy.name + ".sha256").read_text().split()[0]
    bundle = load_model(legacy)
    assert bundle.sha256 == record and bundle.model_id == int(record[:4], 16) and bundle.shipped
    assert bundle.compressor.context is None and load_model().compressor.context is not None


def test_a_derived_file_rebuilds_to_the_same_bytes_and_model(tmp_path):
    old, base, raw = _old_and_base(tmp_path)
    before = load_model(old)
    write_derivation(old, base)
    old.unlink()
    after = load_model(old)
    assert after.sha256 == before.sha256 == hashlib.sha256(raw).hexdigest()
    for a, b in zip(before.compressor.state_dict().values(), after.compressor.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_a_derived_file_over_a_tampered_base_is_refused(tmp_path):
    old, base, _ = _old_and_base(tmp_path)
    write_derivation(old, base)
    old.unlink()
    _flip_a_weight_byte(base)
    with pytest.raises(ModelFileError, match="does not match its recorded SHA-256"):
        load_model(old)


def test_a_file_with_tensors_its_base_lacks_cannot_be_derived_from_it(tmp_path):
    old, base, _ = _old_and_base(tmp_path)  # the base has the context's tensors, the old file not
    with pytest.raises(ModelFileError, match="cannot rebuild.*context"):
        write_derivation(base, old)
    assert not (tmp_path / "w.safetensors.derived.json").exists()


def test_a_damaged_derivation_record_is_a_one_line_error(tmp_path):
    old, base, _ = _old_and_base(tmp_path)
    record = write_derivation(old, base)
    old.unlink()
    record.write_text('{"base": "w.safetensors", "header": "{\\"x\\": 1}"}')
    with pytest.raises(ModelFileError, match="cannot rebuild weight file") as err:
        load_model(old)
    assert "\n" not in str(err.value)


def test_a_derivation_whose_base_is_missing_is_refused(tmp_path):
    old, base, _ = _old_and_base(tmp_path)
    write_derivation(old, base)
    old.unlink()
    base.unlink()
    with pytest.raises(ModelFileError, match="base w.safetensors is missing"):
        load_model(old)


def test_shipped_models_load_by_name_and_their_coding_config_is_read_without_torch():
    from codec.shipped import SHIPPED_MODELS, coding_config

    assert load_model("dpc-v1").model_id == load_model(LEGACY_WEIGHTS[0]).model_id
    assert coding_config(SHIPPED_MODELS["dpc-v2"]).two_pass  # the checkerboard context
    v1 = coding_config(SHIPPED_MODELS["dpc-v1"])  # from its derivation record: no file on disk
    assert (v1.levels, v1.two_pass) == (6, False)
