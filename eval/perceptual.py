"""LPIPS (AlexNet) and DISTS (VGG16) from local weight files only: nothing is downloaded.

Backbones: torchvision IMAGENET1K_V1 `features` state dicts, found in the metric-weights
folder (`--metric-weights DIR` or $DPC_METRIC_WEIGHTS):

    alexnet_features_imagenet1k_v1.pth   features.{0,3,6,8,10}.{weight,bias}
    vgg16_features_imagenet1k_v1.pth     features.{0,2,5,7,10,12,14,17,19,21,24,26,28}.{weight,bias}

Each file must hold exactly those conv tensors (extra `classifier.*` keys of a full
torchvision state dict are ignored), with the right shapes, finite, and the first kernel
row must match torchvision's published values (a fingerprint no random init matches);
after loading, every backbone tensor is compared with the file's. Anything else makes
the metric unavailable with the reason. The calibrated heads ship inside the pip packages:
LPIPS v0.1 linear layers in `lpips/weights/v0.1/alex.pth`, DISTS alpha/beta in
`DISTS_pytorch/weights.pt`.
"""

import os
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from .metrics import WEIGHTS_ENV, MetricUnavailable

ALEXNET_FILE = "alexnet_features_imagenet1k_v1.pth"
VGG16_FILE = "vgg16_features_imagenet1k_v1.pth"
# torchvision IMAGENET1K_V1 features.0.weight[0, 0, 0, :3] (alexnet-owt-7be5be79, vgg16-397923af)
FINGERPRINTS = {ALEXNET_FILE: (0.118640, 0.094069, 0.095435), VGG16_FILE: (-0.553731, 0.142705, 0.528961)}
FINGERPRINT_TOL = 1e-4
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
MIN_SIDE = {"lpips": 31, "dists": 8}  # smallest sides the two networks accept


class MetricWeightsError(MetricUnavailable):
    """A weight file exists but was refused (unreadable, wrong keys/shapes, not the expected weights)."""


def weights_file(folder: Path | None, filename: str, what: str) -> Path:
    """`folder/filename`, or MetricUnavailable saying how to provide it."""
    hint = f"set {WEIGHTS_ENV} or --metric-weights to a folder with {filename}"
    if folder is None:
        raise MetricUnavailable(f"no {what} weights ({hint})")
    path = Path(folder) / filename
    if not path.is_file():
        raise MetricUnavailable(f"no {what} weights: {path} not found ({hint})")
    return path


def _load_state(path: Path) -> dict:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, unsafe pickle, ...
        raise MetricWeightsError(f"{path} rejected: not a readable torch state dict ({type(e).__name__})") from e
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise MetricWeightsError(f"{path} rejected: not a state dict of tensors")
    return sd


def load_checked_state(
    path: Path, expected: dict[str, torch.Size], fingerprint: tuple[float, ...] | None = None, ignore_prefix=None
) -> dict[str, torch.Tensor]:
    """The tensors of `path`, refused (MetricWeightsError) unless its keys, less those starting
    with `ignore_prefix`, are exactly `expected` with those shapes, all finite floats, and
    (if given) `features.0.weight[0, 0, 0, :len(fingerprint)]` matches within 1e-4."""
    sd = _load_state(path)
    keys = {k for k in sd if not (ignore_prefix and k.startswith(ignore_prefix))}
    missing, unexpected = sorted(set(expected) - keys), sorted(keys - set(expected))
    if missing or unexpected:
        raise MetricWeightsError(f"{path} rejected: missing keys {missing[:4]}, unexpected keys {unexpected[:4]}")
    for k, shape in expected.items():
        t = sd[k]
        if t.shape != shape:
            raise MetricWeightsError(f"{path} rejected: {k} has shape {tuple(t.shape)}, expected {tuple(shape)}")
        if not t.is_floating_point() or not torch.isfinite(t).all():
            raise MetricWeightsError(f"{path} rejected: {k} is not a finite float tensor")
    if fingerprint is not None:
        got = sd["features.0.weight"][0, 0, 0, : len(fingerprint)].double()
        if not torch.allclose(got, torch.tensor(fingerprint, dtype=torch.float64), rtol=0, atol=FINGERPRINT_TOL):
            raise MetricWeightsError(
                f"{path} rejected: features.0.weight does not match torchvision IMAGENET1K_V1 "
                f"(got {[round(v, 5) for v in got.tolist()]}, expected {list(fingerprint)})"
            )
    return {k: sd[k].float() for k in expected}


def load_verified(module: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """load_state_dict(strict=True), then check every tensor in `state` is what the module holds."""
    module.load_state_dict(state, strict=True)
    held = module.state_dict()
    bad = [k for k, v in state.items() if not torch.equal(held[k].cpu(), v.cpu())]
    if bad:
        raise MetricWeightsError(f"{source}: tensors {bad[:4]} did not load")


def _rgb_tensor(im: Image.Image, device) -> torch.Tensor:
    arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)[None].to(device)


def _pair(original: Image.Image, decoded: Image.Image, name: str, device) -> tuple[torch.Tensor, torch.Tensor]:
    if original.size != decoded.size:
        raise ValueError(f"image sizes differ: {original.size} vs {decoded.size}")
    if min(original.size) < MIN_SIDE[name]:
        raise ValueError(f"{name}: image {original.size} too small (need a side >= {MIN_SIDE[name]})")
    return _rgb_tensor(original, device), _rgb_tensor(decoded, device)


# --- LPIPS ----------------------------------------------------------------------------------


class LPIPSMetric:
    """LPIPS v0.1, AlexNet trunk (`lpips` package), on RGB scaled to [-1, 1], spatially
    averaged over the full-resolution image. 0 for identical images; lower is better."""

    def __init__(self, model: nn.Module, device):
        self.model, self.device = model, torch.device(device)

    @classmethod
    def load(cls, weights_dir: str | os.PathLike | None, device="cpu") -> "LPIPSMetric":
        import lpips  # heavy: only when LPIPS is asked for

        path = weights_file(None if weights_dir is None else Path(weights_dir), ALEXNET_FILE, "AlexNet")
        with warnings.catch_warnings():  # torchvision's 'pretrained' deprecation, inside lpips
            warnings.simplefilter("ignore")
            model = lpips.LPIPS(net="alex", version="0.1", pretrained=False, pnet_rand=True, verbose=False)
        # trunk: lpips slices keep torchvision's child indices (net.sliceK.{i}.* == features.{i}.*)
        trunk_keys = {k: f"features.{k.split('.', 1)[1]}" for k in model.net.state_dict()}
        expected = {trunk_keys[k]: v.shape for k, v in model.net.state_dict().items()}
        state = load_checked_state(path, expected, FINGERPRINTS[ALEXNET_FILE], ignore_prefix="classifier.")
        load_verified(model.net, {k: state[f] for k, f in trunk_keys.items()}, path)
        # heads: the package's calibrated linear layers
        lin_path = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
        if not lin_path.is_file():
            raise MetricUnavailable(f"the lpips package has no {lin_path}")
        lin_expected = {f"lin{i}.model.1.weight": model.lins[i].model[1].weight.shape for i in range(5)}
        lins = load_checked_state(lin_path, lin_expected)
        for i in range(5):
            load_verified(model.lins[i], {"model.1.weight": lins[f"lin{i}.model.1.weight"]}, lin_path)
        return cls(model.eval().to(device), device)

    @torch.inference_mode()
    def __call__(self, original: Image.Image, decoded: Image.Image) -> float:
        x, y = _pair(original, decoded, "lpips", self.device)
        return float(self.model(x * 2 - 1, y * 2 - 1).item())


# --- DISTS ----------------------------------------------------------------------------------


def vgg16_features() -> nn.Sequential:
    """torchvision's VGG16 `features` layout (same child indices), randomly initialised:
    only the conv stack, to avoid building (and initialising) the 124M-parameter classifier."""
    layers, in_ch = [], 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_ch, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_ch = v
    return nn.Sequential(*layers)


def _dists_class():
    try:
        from DISTS_pytorch.DISTS_pt import DISTS, L2pooling
    except ImportError as e:
        raise MetricUnavailable(f"package dists-pytorch not installed ({e})") from e

    class OfflineDISTS(DISTS):
        """DISTS_pytorch.DISTS with its modules built here instead of in DISTS.__init__
        (which calls torchvision's vgg16(pretrained=True), a download). The stages, buffers and
        parameters are the ones DISTS.__init__ creates, so its forward() is used unchanged."""

        def __init__(self, features: nn.Sequential, alpha: torch.Tensor, beta: torch.Tensor):
            nn.Module.__init__(self)  # deliberately not DISTS.__init__
            pools = {4: 64, 9: 128, 16: 256, 23: 512}  # VGG max-pools replaced by L2 pooling
            bounds = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))
            for s, (lo, hi) in enumerate(bounds, start=1):
                stage = nn.Sequential()
                for i in range(lo, hi):
                    stage.add_module(str(i), L2pooling(channels=pools[i]) if i in pools else features[i])
                setattr(self, f"stage{s}", stage)
            self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, -1, 1, 1))
            self.chns = [3, 64, 128, 256, 512, 512]
            self.alpha = nn.Parameter(alpha.clone())
            self.beta = nn.Parameter(beta.clone())
            for p in self.parameters():
                p.requires_grad = False

    return OfflineDISTS


class DISTSMetric:
    """DISTS (Ding et al. 2020; `dists-pytorch` 0.1's forward) on RGB in [0, 1] at full
    resolution (no resize). About 0 for identical images; lower is better."""

    def __init__(self, model: nn.Module, device):
        self.model, self.device = model, torch.device(device)

    @classmethod
    def load(cls, weights_dir: str | os.PathLike | None, device="cpu") -> "DISTSMetric":
        cls_ = _dists_class()
        path = weights_file(None if weights_dir is None else Path(weights_dir), VGG16_FILE, "VGG16")
        features = vgg16_features()
        expected = {f"features.{k}": v.shape for k, v in features.state_dict().items()}
        state = load_checked_state(path, expected, FINGERPRINTS[VGG16_FILE], ignore_prefix="classifier.")
        load_verified(features, {k.removeprefix("features."): v for k, v in state.items()}, path)
        ab_path = Path(str(resources.files("DISTS_pytorch") / "weights.pt"))
        if not ab_path.is_file():
            raise MetricUnavailable(f"the dists-pytorch package has no {ab_path}")
        shape = torch.Size([1, sum([3, 64, 128, 256, 512, 512]), 1, 1])
        ab = load_checked_state(ab_path, {"alpha": shape, "beta": shape})
        model = cls_(features, ab["alpha"], ab["beta"])
        convs = {
            i: m
            for st in (model.stage1, model.stage2, model.stage3, model.stage4, model.stage5)
            for i, m in st.named_children()
            if isinstance(m, nn.Conv2d)
        }
        if len(convs) != 13 or not all(
            torch.equal(m.weight, state[f"features.{i}.weight"]) and torch.equal(m.bias, state[f"features.{i}.bias"])
            for i, m in convs.items()
        ):
            raise MetricWeightsError(f"{path}: the VGG16 convs did not all reach DISTS")
        return cls(model.eval().to(device), device)

    @torch.inference_mode()
    def __call__(self, original: Image.Image, decoded: Image.Image) -> float:
        x, y = _pair(original, decoded, "dists", self.device)
        return float(self.model(x, y).item())
