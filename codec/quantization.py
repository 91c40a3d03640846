"""Static INT8 post-training quantization of the decoding models (CPU, torch.ao eager mode).

    float layer x  ->  quantize(x; s_in, z_in)  ->  int8 conv / linear  ->  dequantize  ->  y
                         (calibrated)             (per-channel weight      (output scale
                                                   scales, symmetric)       calibrated)

Every Conv2d (and the prior's Linear layers) is wrapped this way (the perceptual
decoder's level embedding and FiLM layers, a few hundred MACs per image, stay fp32); normalisation,
activations, additions and attention stay fp32. Dynamic quantization would leave the
convolutions (nearly all of the time) untouched, hence static.

Activation scales come from a calibration run over training photos
(`scripts/calibrate_int8.py`): HistogramObserver over everything the prior and the pixel
decoders see while decoding them at every level. They ship as a small safetensors table
(`codec/weights/dpc-int8-v1.safetensors`) tied to the weights it was calibrated with; no
calibration happens at run time, so INT8 decoding is deterministic.

Kept in fp32: each pixel decoder's last convolution (it writes the pixels), the
prior's first and last convolutions, and the convolutions whose input is a
concatenation of skip features (the up blocks' `conv1` and `conv_shortcut`): one
per-tensor activation scale fits those mixed-scale inputs badly, and in a trial they
were where most of the prior's INT8 error came from.
"""

import copy
import json
import warnings
from pathlib import Path

import torch
import torch.ao.quantization as tq
from torch import nn

from .errors import ModelFileError
from .model_files import open_weights, reading
from .weight_bytes import write_weights

DEFAULT_INT8_TABLE = Path(__file__).parent / "weights" / "dpc-int8-v1.safetensors"
INT8_FORMAT_TAG = "dpcodec-int8-1"
MODELS = ("prior", "perceptual", "plain")  # the decoding models the table covers
QUANTIZED_TYPES = (nn.Conv2d, nn.Linear)


class QuantizedLayer(nn.Module):
    """quantize -> layer -> dequantize: one layer in INT8 inside an fp32 network."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.quant = tq.QuantStub()
        self.layer = layer
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        # The float parts around may run in bf16/fp16: quantized kernels take fp32.
        return self.dequant(self.layer(self.quant(x.float()))).to(x.dtype)


def keep_float(model: str, name: str) -> bool:
    """Layers left in fp32 (see the module docstring)."""
    if model != "prior":
        return False
    last = name.rsplit(".", 1)[-1]
    return last in ("conv_in", "conv_out") or (".up_blocks." in f".{name}" and last in ("conv1", "conv_shortcut"))


def quantizable_layers(model: str, module: nn.Module) -> list[str]:
    """Names of the layers of `module` that INT8 replaces."""
    names = [
        name
        for name, m in module.named_modules()
        if isinstance(m, QUANTIZED_TYPES) and name and not keep_float(model, name)
    ]
    if model == "prior":  # its forward is the UNet
        names = [name for name in names if name.startswith("unet.")]
    if model == "perceptual":  # convolutions only: the level embedding and FiLM see one vector per image
        names = [name for name in names if isinstance(module.get_submodule(name), nn.Conv2d)]
    # A pixel decoder's last convolution writes the image: its output on a 7-bit grid
    # (reduce_range) would show as banding, so it stays fp32.
    return names if model == "prior" else names[:-1]


def _wrap(module: nn.Module, names: list[str]) -> nn.Module:
    for name in names:
        parent, _, child = name.rpartition(".")
        owner = module.get_submodule(parent) if parent else module
        setattr(owner, child, QuantizedLayer(getattr(owner, child)))
    return module


def _weight_observer():
    return tq.PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric)


# -- calibration (offline) -------------------------------------------------------------
def observing(model: str, module: nn.Module) -> nn.Module:
    """A copy of a float module whose quantized layers record their activation ranges."""
    observed = _wrap(copy.deepcopy(module).float().eval(), quantizable_layers(model, module))
    # 7-bit activations (0..127) keep the x86 kernels' 16-bit accumulators from saturating.
    activation = tq.HistogramObserver.with_args(quant_min=0, quant_max=127)
    qconfig = tq.QConfig(activation=activation, weight=_weight_observer())
    for m in observed.modules():
        if isinstance(m, QuantizedLayer):
            m.qconfig = qconfig
    return tq.prepare(observed)


def activation_table(model: str, observed: nn.Module) -> dict[str, torch.Tensor]:
    """Calibrated (scale, zero point) of each quantized layer's input and output, by name."""
    table = {}
    for name, m in observed.named_modules():
        if isinstance(m, QuantizedLayer):
            for side, obs in (("in", m.quant.activation_post_process), ("out", m.layer.activation_post_process)):
                scale, zero_point = obs.calculate_qparams()
                table[f"{model}.{name}.{side}"] = torch.tensor([float(scale), float(zero_point)], dtype=torch.float64)
    return table


def save_table(path: Path, table: dict[str, torch.Tensor], weights_sha256: dict[str, str], info: dict) -> str:
    """Write a calibration table (atomically, with its SHA-256 record) tied to the weights; return its sha256."""
    metadata = {"format": INT8_FORMAT_TAG, "weights": json.dumps(weights_sha256), "info": json.dumps(info)}
    return write_weights(Path(path), {k: v.contiguous() for k, v in table.items()}, metadata)


# -- run time ----------------------------------------------------------------------------
def load_table(path: Path | None, weights_sha256: dict[str, str]) -> dict[str, torch.Tensor]:
    """Read a calibration table; ModelFileError unless it was made for exactly these weights."""
    path = Path(path) if path is not None else DEFAULT_INT8_TABLE
    table, metadata, _ = open_weights(path, DEFAULT_INT8_TABLE, INT8_FORMAT_TAG, "INT8 calibration table")
    with reading(path):
        made_for = json.loads(metadata["weights"])
    if made_for != weights_sha256:
        raise ModelFileError(
            f"INT8 calibration table {path} was made for other weights; calibrate these with "
            "scripts/calibrate_int8.py and pass the table as Codec.load(int8_table=...)"
        )
    return table


def quantize(model: str, module: nn.Module, table: dict[str, torch.Tensor]) -> nn.Module:
    """A float module -> its INT8 version with the table's activation scales (deterministic)."""
    names = quantizable_layers(model, module)
    missing = [n for n in names for side in ("in", "out") if f"{model}.{n}.{side}" not in table]
    if missing:
        raise ModelFileError(f"INT8 calibration table lacks {model} layer {missing[0]}; recalibrate")
    quantized = _wrap(copy.deepcopy(module).float().eval(), names)
    for name in names:
        wrapper = quantized.get_submodule(name)
        wrapper.quant.qconfig = tq.QConfig(activation=_fixed(table[f"{model}.{name}.in"]), weight=_weight_observer())
        wrapper.layer.qconfig = tq.QConfig(activation=_fixed(table[f"{model}.{name}.out"]), weight=_weight_observer())
        wrapper.dequant.qconfig = wrapper.layer.qconfig  # so that convert() makes it a real dequantize
    with warnings.catch_warnings():
        # prepare() warns about modules without a qconfig: that is every fp32 part, on purpose.
        warnings.simplefilter("ignore")
        return tq.convert(tq.prepare(quantized)).eval()


def _fixed(scale_zero_point: torch.Tensor):
    scale, zero_point = (float(v) for v in scale_zero_point)
    return tq.FixedQParamsObserver.with_args(scale=scale, zero_point=int(zero_point), quant_min=0, quant_max=255)
