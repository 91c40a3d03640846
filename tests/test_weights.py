"""Weight files: safetensors only, checked against their SHA-256 record; tampering is refused."""

import shutil

import pytest
from helpers import make_smooth

from codec import Codec, ModelFileError, ModelMismatchError
from codec.model_files import DEFAULT_WEIGHTS, load_model


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
