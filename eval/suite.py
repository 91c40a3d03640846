"""The metrics one `dpc eval` run computes, behind one small interface.

Per-image metrics are computed as each decoded image arrives. FID/KID need
whole sets, so each decoded image's Inception patch features are stored under
RESULTS_DIR/features (that is what makes a resumed run complete), and the
distances are computed per codec x setting at the end.
"""

from pathlib import Path

import numpy as np
from PIL import Image

from .metric_set import available_metrics
from .metrics import METRIC_NAMES, SPECTRAL_MIN_SIDE
from .perceptual import MIN_SIDE as PERCEPTUAL_MIN_SIDE

# The smallest image side each per-image metric accepts (the others take any size; MS-SSIM falls back).
MIN_SIDES = {"spectral_gap": SPECTRAL_MIN_SIDE, **PERCEPTUAL_MIN_SIDE}


class MetricSuite:
    def __init__(self, names: list[str] | None, weights_dir: Path | None, features_dir: Path, device: str = "cpu"):
        metrics = available_metrics(tuple(names or METRIC_NAMES), weights_dir, device)
        self.unavailable = {n: str(m) for n, m in metrics.items() if m.kind == "unavailable"}
        self._per_image = {n: m for n, m in metrics.items() if m.kind == "per_image"}
        self._distribution = next((m for n, m in metrics.items() if m.kind == "distribution"), None)
        self.distribution_names = [n for n, m in metrics.items() if m.kind == "distribution"]
        self.features_dir = features_dir

    @property
    def per_image_names(self) -> list[str]:
        return list(self._per_image)

    def too_small(self, size: tuple[int, int]) -> str | None:
        """Why an image of `size` (width, height) is too small for a per-image metric of this run, or None."""
        for name in self._per_image:
            if min(size) < MIN_SIDES.get(name, 1):
                return f"{size[0]}x{size[1]} is too small for {name} (it needs a side of at least {MIN_SIDES[name]} px)"
        return None

    def per_image(self, original: Image.Image, decoded: Image.Image) -> dict[str, float]:
        return {name: float(metric(original, decoded)) for name, metric in self._per_image.items()}

    def store_patch_features(self, codec: str, setting: str, stem: str, decoded: Image.Image, reference) -> None:
        if self._distribution is None:
            return
        ref_path = self.features_dir / "reference" / f"{stem}.npy"
        if not ref_path.exists():
            _save(ref_path, self._distribution.image_features(reference))
        _save(self.features_dir / codec / setting / f"{stem}.npy", self._distribution.image_features(decoded))

    def copy_patch_features(self, codec: str, from_setting: str, to_setting: str, stem: str) -> None:
        src = self.features_dir / codec / from_setting / f"{stem}.npy"
        if self._distribution is not None and src.exists():
            _save(self.features_dir / codec / to_setting / f"{stem}.npy", np.load(src))

    def distribution_metrics(self, codec: str, setting: str, images: list[str]) -> dict[str, float | None]:
        """FID/KID of one codec x setting over the given images' stored patch features."""
        if self._distribution is None:
            return {}
        acc = self._distribution.accumulator()
        for name in images:
            stem = Path(name).stem
            ref = self.features_dir / "reference" / f"{stem}.npy"
            dec = self.features_dir / codec / setting / f"{stem}.npy"
            if ref.exists() and dec.exists():
                acc.add_features(np.load(ref), np.load(dec))
        if acc.n_patches < 2:
            return {n: None for n in self.distribution_names} | {"patches": acc.n_patches}
        results = acc.results()
        return {n: results[n] for n in self.distribution_names} | {"patches": acc.n_patches}


def _save(path: Path, features: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, features)
    tmp.replace(path)
