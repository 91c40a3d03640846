"""Deployment options (codec/runners.py, codec/quantization.py) and `dpc bench` (eval/bench.py).

Every option must decode every file, and land close to the fp32 decoder: these tests
decode one small photo-like image with each option on the CPU and compare pixels.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import make_textured, psnr
from torch import nn

import dpc.cli as cli_module
from codec import Codec, CodecError, ModelFileError
from codec.options import RunOptions
from codec.placement import on_device
from codec.quantization import DEFAULT_INT8_TABLE, QuantizedLayer, load_table, quantize, save_table
from eval.bench import parse_config
from scripts.calibrate_int8 import calibrate


@pytest.fixture(scope="module")
def photo():
    return make_textured(128, 96)


@pytest.fixture(scope="module")
def photo_file(codec, photo) -> bytes:
    return codec.compress(photo, quality=1)  # records the shipped level-1 refinement (8 steps)


@pytest.fixture(scope="module")
def fp32_outputs(codec, photo_file):
    return {steps: codec.decompress(photo_file, steps=steps) for steps in (None, 0)}


def decoded(photo_file, steps=None, **options):
    return Codec.load(**options).decompress(photo_file, steps=steps)


# -- precision and layout -----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_half_precisions_decode_close_to_fp32(photo_file, fp32_outputs, dtype):
    for steps in (None, 0):
        assert psnr(decoded(photo_file, steps, dtype=dtype), fp32_outputs[steps]) > 40


@pytest.mark.parametrize("options", [{"channels_last": True}, {"attention": "eager"}], ids=["channels_last", "eager"])
def test_layout_and_attention_kernels_change_only_rounding(photo_file, fp32_outputs, options):
    assert psnr(decoded(photo_file, **options), fp32_outputs[None]) > 60


def test_compiled_models_decode_like_eager_ones(photo_file, fp32_outputs):
    # Plain decoder only: compiling the prior as well would take most of a minute on 2 cores.
    assert psnr(decoded(photo_file, 0, compile=True), fp32_outputs[0]) > 60


# -- INT8 ---------------------------------------------------------------------------------------
def test_int8_decodes_close_to_fp32_with_quantized_convolutions(photo_file, fp32_outputs):
    c = Codec.load(int8=True)
    for steps in (None, 0):
        assert psnr(c.decompress(photo_file, steps=steps), fp32_outputs[steps]) > 35
    for name in ("prior", "perceptual", "plain"):
        module = c.stages.runner(name).module
        quantized = [m for m in module.modules() if isinstance(m, torch.ao.nn.quantized.Conv2d)]
        floats = [m for m in module.modules() if type(m) is nn.Conv2d]
        assert len(quantized) > len(floats) >= 1, name  # most convolutions are INT8, a few kept fp32


def test_int8_with_bf16_float_parts(photo_file, fp32_outputs):
    assert psnr(decoded(photo_file, int8=True, dtype="bf16"), fp32_outputs[None]) > 35


def test_the_shipped_int8_table_belongs_to_the_shipped_weights(codec):
    table = load_table(DEFAULT_INT8_TABLE, codec.weights_sha256())
    assert table and all(v.shape == (2,) and v[0] > 0 for v in table.values())


def test_an_int8_table_for_other_weights_is_refused(codec, tmp_path, photo_file):
    from codec.model_files import save_prior
    from codec.models.prior import LatentPrior, PriorConfig

    torch.manual_seed(0)
    other = tmp_path / "other-prior.safetensors"
    save_prior(other, LatentPrior(PriorConfig(widths=(16, 32), norm_groups=8, attention_head_dim=8)), {})
    c = Codec(codec.bundle, prior_weights=other, options=RunOptions(int8=True))
    with pytest.raises(ModelFileError, match="other weights"):
        c.decompress(photo_file)


def test_a_damaged_int8_table_is_refused(codec, tmp_path):
    path = tmp_path / "t.safetensors"
    path.write_bytes(DEFAULT_INT8_TABLE.read_bytes())
    (tmp_path / "t.safetensors.sha256").write_text(
        DEFAULT_INT8_TABLE.with_name(DEFAULT_INT8_TABLE.name + ".sha256").read_text()
    )
    data = bytearray(path.read_bytes())
    data[-3] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="SHA-256"):
        load_table(path, codec.weights_sha256())


def test_calibrate_save_load_quantize(codec, tmp_path):
    table = calibrate(codec, [make_textured(64, 64)], qualities=[1])
    path = tmp_path / "int8.safetensors"
    save_table(path, table, codec.weights_sha256(), {"purpose": "test"})
    loaded = load_table(path, codec.weights_sha256())
    assert set(loaded) == set(table)
    q = quantize("plain", codec.autoencoder.decoder, loaded)
    assert any(isinstance(m, QuantizedLayer) for m in q.modules())
    latent = torch.randn(1, 8, 8, 8) * 0.5
    with torch.inference_mode():
        ref, out = codec.autoencoder.decoder(latent), q(latent)
    assert ((out - ref).abs().mean() / ref.abs().mean()) < 0.1


# -- offload ------------------------------------------------------------------------------------
def test_offload_decodes_identically_on_the_cpu(photo_file, fp32_outputs):
    assert np.array_equal(np.asarray(decoded(photo_file, offload=True)), np.asarray(fp32_outputs[None]))


class MoveSpy(nn.Linear):
    def __init__(self):
        super().__init__(2, 2)
        self.moves = []

    def to(self, *args, **kwargs):
        self.moves.append(str(args[0]) if args else str(kwargs.get("device")))
        return super().to(*args, **kwargs)


def test_offload_moves_a_model_to_the_device_for_its_stage_only():
    spy = MoveSpy()
    opts = RunOptions(device="cpu", offload=True)
    with on_device(spy, opts):
        assert spy.moves == ["cpu"]  # the device
    assert spy.moves == ["cpu", "cpu"]  # and back home (the CPU) afterwards
    spy.moves.clear()
    with on_device(spy, RunOptions(device="cpu")):
        pass
    assert spy.moves == []  # without offload nothing moves


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_offload_on_a_gpu_keeps_models_on_the_cpu_between_stages(photo_file, fp32_outputs):
    c = Codec.load(device="cuda", offload=True)
    assert psnr(c.decompress(photo_file), fp32_outputs[None]) > 35
    assert all(p.device.type == "cpu" for p in c.stages.runner("prior").parameters())


# -- option checks ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options, message",
    [
        ({"device": "cuda", "int8": True}, "CPU only"),
        ({"dtype": "fp8"}, "dtype must be one of"),
        ({"attention": "flash"}, "attention must be one of"),
        ({"device": "toaster"}, "unknown device"),
    ],
)
def test_bad_run_options_are_refused(options, message):
    with pytest.raises(CodecError, match=message):
        RunOptions(**options)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_a_missing_gpu_is_a_one_line_error(tmp_path, photo_file, capsys):
    src = tmp_path / "a.dpc"
    src.write_bytes(photo_file)
    code = cli_module.main(["decompress", str(src), "--device", "cuda"])
    err = capsys.readouterr().err
    assert code != 0 and "no CUDA GPU" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a.png").exists()


def test_cli_decompress_with_int8(tmp_path, photo_file, fp32_outputs):
    src = tmp_path / "a.dpc"
    src.write_bytes(photo_file)
    assert cli_module.main(["decompress", str(src), "--int8", "--channels-last"]) == 0
    from PIL import Image

    assert psnr(Image.open(tmp_path / "a.png"), fp32_outputs[None]) > 35


# -- dpc bench ----------------------------------------------------------------------------------
def test_bench_configurations_parse():
    assert parse_config("naive", "cpu") == {"options": {"device": "cpu", "dtype": "fp32"}, "steps": 50, "tile": 0}
    spec = parse_config("int8+bf16+tile1024+steps4", "cpu")
    assert spec == {"options": {"device": "cpu", "int8": True, "dtype": "bf16"}, "steps": 4, "tile": 1024}
    assert parse_config("fast", "cpu")["options"]["int8"] is True
    with pytest.raises(ValueError, match="unknown configuration token"):
        parse_config("fp32+turbo", "cpu")


@pytest.mark.parametrize(
    "option",
    [["--sizes", "x"], ["--sizes", "32"], ["--configs", "turbo"], ["--repeats", "0"]],
    ids=["sizes not numbers", "sizes too small", "unknown configuration", "no repeats"],
)
def test_a_bad_bench_option_is_a_one_line_usage_error_with_code_2(capsys, option):
    code = cli_module.main(["bench", *option])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("dpc: error: bench: ") and err.count("\n") == 1, (code, err)


def test_bench_times_each_stage_and_compares_quality(tmp_path, capsys):
    out = tmp_path / "bench"
    code = cli_module.main(
        ["bench", "--sizes", "64", "--configs", "fp32,int8", "--repeats", "1", "--warmup", "0", "--out", str(out)]
    )
    assert code == 0
    result = json.loads((out / "bench.json").read_text())
    runs = {r["config"]: r for r in result["runs"]}
    assert set(runs) == {"fp32", "int8"} and all(r["ok"] for r in runs.values())
    for r in runs.values():
        assert r["decode_s"] > 0 and r["peak_mib"] > r["working_mib"] >= 0
        assert set(r["stages"]) == {"entropy", "refine", "pixels"}
        # the files record no refinement (every level's default is 0 steps): the stage is there, untimed steps
        assert len(r["stages"]["refine"]["step_s"]) == r["steps"] == 0
    assert runs["fp32"]["identical_to_fp32"] and runs["fp32"]["psnr_vs_fp32"] is None
    assert not runs["int8"]["identical_to_fp32"] and runs["int8"]["psnr_vs_fp32"] > 30
    assert (out / "bench.png").stat().st_size > 0 and "| int8 | 64 |" in (out / "bench.md").read_text()
    capsys.readouterr()
    assert cli_module.main(["bench", "--from-json", str(out / "bench.json")]) == 0  # re-render, no measuring
    assert "| fp32 | 64 |" in capsys.readouterr().out


def test_bench_refuses_unknown_configurations(capsys):
    assert cli_module.main(["bench", "--configs", "fp32+turbo", "--sizes", "64"]) != 0
    assert "unknown configuration token" in capsys.readouterr().err


def test_the_prior_gives_the_same_bits_with_1_and_2_threads(codec):
    """Refinement feeds each step's output to the next, so its last bits must not depend on the
    thread count (-j 2 workers run 1 thread each, -j 1 runs 2). oneDNN's convolutions differed
    between 1 and 2 threads on a 64 x 96 latent (issue #30); the prior runs on PyTorch's own kernels.
    On an Intel Xeon with AMX those (MKL's GEMM) differed too, until `import codec` set MKL_CBWR."""
    runner = codec.stages.runner("prior")
    generator = torch.Generator().manual_seed(0)
    noisy, condition = (torch.randn(1, 8, 64, 96, generator=generator) for _ in range(2))
    saved = torch.get_num_threads()
    outputs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            with torch.inference_mode():
                outputs.append(runner(noisy, torch.tensor([500]), condition, torch.tensor([3])))
    finally:
        torch.set_num_threads(saved)
    assert torch.equal(*outputs)


@pytest.mark.parametrize("user_setting", [None, "COMPATIBLE"])
def test_import_codec_asks_mkl_for_sums_that_do_not_depend_on_the_thread_count(user_setting):
    """MKL's strict reproducibility mode, read at its first call: set by `import codec`, unless the user chose."""
    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    if user_setting:
        env["MKL_CBWR"] = user_setting
    code = "import os, codec; print(os.environ['MKL_CBWR'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == (user_setting or "AUTO,STRICT")
